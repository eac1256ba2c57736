"""The gateway service on the bus: lane events ingested once each, decide requests answered,
sessions and money kept, safety messages and patrol taps handled, all on one worker.

This module only assembles and subscribes; each job has its own module, built with its
collaborators: :mod:`~gateway.runtime.inbox` (queues), :mod:`~gateway.runtime.loop` (the
worker thread), :mod:`~gateway.runtime.batches` (transactions, acks, dead letters),
:mod:`~gateway.runtime.decide` (verdicts), :mod:`~gateway.runtime.ingest` (one event),
:mod:`~gateway.runtime.sessions` (passages) and :mod:`~gateway.runtime.till` (money at the
lanes). See docs/ingestion.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TypeVar

from gateway.lanes.capacity import Capacity
from gateway.lanes.commands import LaneCommander
from gateway.lanes.reconcile import Reconciler
from gateway.lanes.replicas import ReplicaPublisher
from gateway.money.billing import Bill, Billing
from gateway.money.payments import Payment, PendingPayment
from gateway.patrols.desk import PatrolDesk
from gateway.records.audit import AuditLog
from gateway.runtime.batches import BATCH_SIZE, Batches
from gateway.runtime.decide import Decider
from gateway.runtime.effects import AfterCommit
from gateway.runtime.exits import ExitLanes, PayLink, WaitingCar
from gateway.runtime.inbox import Inbox, Job
from gateway.runtime.ingest import Ingester
from gateway.runtime.inside import CarsInside
from gateway.runtime.loop import Worker
from gateway.runtime.sessions import Sessions
from gateway.runtime.tally import Tally
from gateway.runtime.till import Till, TillError
from gateway.safety.alarms import AlarmMonitor
from gateway.safety.alerts import AlertDesk
from gateway.safety.faults import LaneFaults
from gateway.safety.holds import HoldDesk
from gateway.storage.store import GatewayStore
from parkguard.clock import Clock
from parkguard.core.plates import MatchPolicy, OcrRead, PlateError
from parkguard.errors import ContractError, ParkGuardError
from wire.bus import Bus, Delivery
from wire.contract import topics
from wire.contract.messages import LaneEvent, LaneState, PatrolTap, decode
from wire.contract.window import ReceiptWindow

T = TypeVar("T")

__all__ = ["BATCH_SIZE", "Gateway"]


def _counted(name: str) -> property:
    """A count the worker keeps in its :class:`Tally`, read as an attribute of the service."""
    return property(lambda self: getattr(self.tally, name))


class Gateway:
    """The site's authority for sessions and money, on the bus.

    Everything it serves is given to the constructor: the safety desks (``alarms`` with
    ``alerts``) and the patrol desk are optional. Build the ``inbox`` first when a desk
    needs :meth:`Inbox.call` before the service exists (the alert courier does).
    """

    events_stored = _counted("events_stored")
    duplicates = _counted("duplicates")
    dead_letters = _counted("dead_letters")
    batches = _counted("batches")
    decides_answered = _counted("decides_answered")
    late_decisions_ignored = _counted("late_decisions_ignored")
    commit_failures = _counted("commit_failures")

    def __init__(
        self,
        *,
        site: str,
        clock: Clock,
        store: GatewayStore,
        bus: Bus,
        billing: Billing,
        matching: MatchPolicy | None = None,
        capacity: Capacity | None = None,
        replicas: ReplicaPublisher | None = None,
        reconciler: Reconciler | None = None,
        alarms: AlarmMonitor | None = None,
        alerts: AlertDesk | None = None,
        patrols: PatrolDesk | None = None,
        inbox: Inbox | None = None,
        window: ReceiptWindow | None = None,
        commander: LaneCommander | None = None,
        pay_link: PayLink | None = None,
        audit: AuditLog | None = None,
        holds: HoldDesk | None = None,
        faults: LaneFaults | None = None,
    ) -> None:
        """``holds``: plates held at the exit (refused there, the guard called);
        ``faults``: lane faults and offline lanes turned into alerts."""
        if (alarms is None) != (alerts is None):
            raise ValueError("alarms and alerts come together")
        self.site = site
        self._clock = clock
        self.store = store
        self._bus = bus
        self.billing = billing
        self.capacity = capacity
        self.replicas = replicas
        self.alarms = alarms
        self.alerts = alerts
        self.patrols = patrols
        self.holds = holds
        self.faults = faults
        # each lane's state as last heard, and whether it said online (bus thread)
        self._said: dict[str, tuple[bytes, bool]] = {}
        self.tally = Tally()
        self.inbox = inbox or Inbox()
        self.inside = CarsInside(matching or MatchPolicy())
        self.inside.reload(store.open_sessions())  # a restart forgets nobody inside
        effects = AfterCommit()
        self.exits = ExitLanes(commander=commander, pay_link=pay_link)
        self.exits.reload(store.waiting_at_exits())  # nor a car waiting to pay at a barrier
        self.till = Till(store=store, billing=billing, inside=self.inside, clock=clock,
                         audit=audit, exits=self.exits)
        sessions = Sessions(store=store, billing=billing, inside=self.inside, till=self.till,
                            effects=effects, tally=self.tally, capacity=capacity,
                            replicas=replicas, reconciler=reconciler)
        watchers: list[Callable[[LaneEvent], object]] = []
        if holds is not None:
            watchers.append(holds.on_event)
        if faults is not None:
            watchers.append(lambda event: faults.on_event(event, clock.now()))
        self._ingester = Ingester(store=store, sessions=sessions, till=self.till,
                                  effects=effects, alerts=alerts, replicas=replicas,
                                  exits=self.exits, watchers=watchers)

        def held_at(lane: str, plate: str, _hold: object) -> None:
            if holds is not None:
                effects.later(lambda: holds.call_guard(lane, plate))

        decider = Decider(store=store, billing=billing, inside=self.inside,
                          capacity=capacity, alarms=alarms, exits=self.exits,
                          holds=holds.held if holds is not None else None, held_at=held_at)
        self._batches = Batches(site=site, clock=clock, store=store, bus=bus, inbox=self.inbox,
                                ingester=self._ingester, decider=decider, effects=effects,
                                tally=self.tally, forget=self._reload, window=window)
        self._worker = Worker(self.inbox, self._batches)

    # lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and subscribe; call before the bus starts (acks are manual)."""
        self._bus.enable_manual_ack()
        self._worker.start()
        self._bus.subscribe_deliveries(topics.all_lane(self.site, "event"), self._enqueue_event)
        self._bus.subscribe_deliveries(topics.all_lane(self.site, "decide"),
                                       self._enqueue_decide)
        self._bus.subscribe(topics.all_lane(self.site, "state"), self._lane_state)
        self._bus.when_connected(self._said.clear)  # the retained states again: as news
        if self.alarms is not None and self.alerts is not None:
            self._subscribe_safety(self.alarms, self.alerts)
        if self.patrols is not None:
            self._subscribe_patrols(self.patrols)

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Handle what is queued, then end the worker. Whatever the bus can no longer
        acknowledge (it stopped first) is redelivered next time and deduped. False: the
        worker had not finished within its time (see ``Worker.stop``)."""
        return self._worker.stop(timeout_s)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every message received so far has been handled (tests, the simulator)."""
        return self.inbox.wait_idle(timeout)

    def healthy(self, stall_s: float) -> bool:
        """The worker thread runs and went round its loop within ``stall_s`` (an idle one
        goes round every few seconds): what systemd's watchdog pings for."""
        return self._worker.healthy(stall_s)

    def _reload(self) -> None:
        """After a failed commit: what the worker keeps in memory, reread from the file."""
        if self.capacity is not None:
            self.capacity.load(self.store.open_sessions_by_lane())
        self.inside.reload(self.store.open_sessions())

    # subscriptions ---------------------------------------------------------------

    def _subscribe_safety(self, alarms: AlarmMonitor, alerts: AlertDesk) -> None:
        """Fire, flood and supervision (docs/alarms-and-alerts.md): sensor readings, node
        states, the site alarms and staff acknowledgements are handled on the worker ahead of
        lane events and office work still queued (in their own arrival order), so a fire's
        alert never waits behind a burst of lane events."""

        def reading(topic: str, payload: bytes) -> None:
            self._on_worker(topic, payload, lambda: alarms.handle(decode(topic, payload)),
                            urgent=True)

        def ack(topic: str, payload: bytes) -> None:
            self._on_worker(topic, payload, lambda: alerts.handle_ack_message(topic, payload),
                            urgent=True)

        for topic_filter in (topics.all_sensor(self.site, "reading"),
                             topics.all_sensor(self.site, "state"),
                             topics.all_alarms(self.site)):
            self._bus.subscribe(topic_filter, reading)
        self._bus.subscribe(alerts.ack_filter(), ack)
        self._bus.when_connected(lambda: self.inbox.put(Job.of(alerts.republish)))

    def _subscribe_patrols(self, desk: PatrolDesk) -> None:
        """Checkpoint taps (docs/patrols.md), ingested on the worker in arrival order; a bad
        one is dead-lettered."""

        def tap(topic: str, payload: bytes) -> None:
            received = self._clock.now()

            def handle() -> None:
                value = decode(topic, payload)
                if not isinstance(value, PatrolTap):
                    raise ContractError(f"{topic}: not a patrol tap")
                desk.ingest(value, received)

            self._on_worker(topic, payload, handle)

        self._bus.subscribe(topics.all_patrol_taps(self.site), tap)

    def _on_worker(self, topic: str, payload: bytes, handle: Callable[[], object], *,
                   urgent: bool = False) -> None:
        """A safety or patrol message, handled on the worker (``urgent``: before queued lane
        events and office work); a bad one is dead-lettered."""

        def safely() -> None:
            try:
                handle()
            except (ContractError, ParkGuardError) as error:
                self._batches.dead_letter_now(topic, payload, str(error))

        job = Job.of(safely)
        if urgent:
            self.inbox.put_urgent(job)
        else:
            self.inbox.put(job)

    def _lane_state(self, topic: str, payload: bytes) -> None:
        """A lane's mode is noted (a lane held free-open lets its exits go free); a lane
        that comes (back) online gets a fresh replica snapshot (it may have missed deltas
        while it was away), one whose barrier merely moved does not (a snapshot per car
        slowed a soak's every day: docs/scenarios.md). The lane's heartbeat repeats its last
        state byte for byte every few seconds (firmware/lane/status.py): a repeat only tells
        the lane-silent check the lane was heard, no snapshot, no write."""
        try:
            state = decode(topic, payload)
        except ContractError:
            return  # the lane's own retained state: not ours to dead-letter
        if not isinstance(state, LaneState):
            return
        said, was_online = self._said.get(state.lane, (b"", False))
        repeat, came_online = said == payload, state.online and not was_online
        self._said[state.lane] = (payload, state.online)
        if self.faults is not None:
            faults, lane, online = self.faults, state.lane, state.online
            self.inbox.put(Job.of(lambda: faults.state(lane, online, self._clock.now())))
        if repeat:
            return
        self.exits.set_mode(state.lane, state.mode)
        if came_online and self.replicas is not None:
            replicas, lane = self.replicas, topics.parse_topic(topic).node
            if lane in replicas.lanes:
                self.inbox.put(Job.of(lambda: replicas.publish_snapshot(lanes=[lane])))

    def _enqueue_event(self, delivery: Delivery) -> None:
        self.inbox.put(self.inbox.received(delivery, self._clock.now()))

    def _enqueue_decide(self, delivery: Delivery) -> None:
        self.inbox.put_decide(self.inbox.received(delivery, self._clock.now()))

    # office work and the pay page ----------------------------------------------------

    def call(self, work: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``work`` on the worker thread, between messages, and return its result.

        The desks (passes, merchants, payments) write through the worker's connection; an
        office action (issue a pass, refund, override a fee) queues here so it is never
        interleaved with an exit being billed. Exceptions raised by ``work`` reach the caller.
        If it changed passes, lists or coupons, the lanes are told.
        """

        def office() -> T:
            before = self.billing.access.changes
            result = work()
            if self.replicas is not None and self.billing.access.changes != before:
                self.replicas.passes_changed()
            if self.replicas is not None:  # coupons given, claimed or revoked: their plates
                self.replicas.coupons_changed()
            return result

        return self.inbox.call(office, timeout)

    def bill_for(self, plate: str) -> Bill | None:
        """What the car inside with this plate would pay leaving now (the pay page), or None
        if no car with that plate is inside. The driver types or confirms the plate, so it
        is looked up as spelled (normalised), never guessed."""
        return self.call(lambda: self.till.bill_for(plate))

    def suggest_plate(self, plate: str) -> str | None:
        """The pay page's "did you mean": the one car inside the fuzzy matcher takes a typed
        plate (not inside as typed) for, and only if that car owes money now, so it reveals
        no more than typing its plate would (gateway/web/routers/pay.py); else None."""

        def work() -> str | None:
            if self.inside.session_of(plate) is not None:
                return None
            try:
                result, session_id = self.inside.match(OcrRead(plate))
            except PlateError:
                return None
            if result.outcome != "match" or session_id is None or result.plate is None:
                return None
            bill = self.till.bill_for(result.plate)
            return bill.plate if bill is not None and bill.stay_due_fen > 0 else None

        return self.call(work)

    def prepay(self, plate: str) -> PendingPayment | None:
        """Open a provider order for what this stay owes now; None if it owes nothing or
        the car is not inside. The provider's signed callback
        (``billing.payments.handle_callback``) records the payment and starts the grace
        time. Older debts are shown on the bill and collected at the exit."""
        return self.call(lambda: self.till.prepay(plate))

    def payment_callback(self, body: bytes, headers: Mapping[str, str]) -> Payment:
        """The provider's signed "paid" notice, as its HTTP callback delivers it (raw body
        and headers): recorded once however often it comes; a bad signature, a stale or
        replayed notice or an unknown order raises and records nothing."""

        def record() -> Payment:
            payment = self.billing.payments.handle_callback(body, headers)
            if self.replicas is not None and payment.session_id is not None:
                self.replicas.paid(payment.session_id)
            if payment.session_id is not None and payment.state == "paid" \
                    and self.till.owes_nothing(payment.session_id):
                self.exits.open_for(payment.session_id, "paid_online",
                                    actor="gateway:payments",
                                    reason=f"paid online: payment {payment.payment_id}")
            return payment

        return self.call(record)

    # a car waiting at an exit, seen from the dashboard ---------------------------------

    def waiting_exits(self) -> list[WaitingCar]:
        """The cars held at exit lanes for money, with what they owe (the lane cards)."""
        return self.call(self.exits.waiting)

    def take_cash(self, lane: str, *, actor: str, reason: str,
                  expected_fen: int | None = None) -> Payment:
        """A guard took the fee in cash from the car waiting at ``lane``: booked, audited,
        then the lane is ordered open (``settled="cash"``)."""

        def take() -> Payment:
            car = self._waiting_at(lane)
            payment = self.till.take_cash(car, actor=actor, reason=reason,
                                          expected_fen=expected_fen)
            self.exits.open_for(car.session_id, "cash", actor=actor,
                                reason=f"cash taken ({payment.payment_id}): {reason}")
            return payment

        return self.call(take)

    def waive(self, lane: str, *, actor: str, reason: str) -> int:
        """A guard waived the fee of the car waiting at ``lane`` (a fee override to 0, audited),
        then the lane is ordered open (``settled="waived"``); returns the fee waived."""

        def waive() -> int:
            car = self._waiting_at(lane)
            waived = self.till.waive(car, actor=actor, reason=reason)
            self.exits.open_for(car.session_id, "waived", actor=actor,
                                reason=f"fee waived: {reason}")
            return waived

        return self.call(waive)

    def _waiting_at(self, lane: str) -> WaitingCar:
        car = self.exits.at(lane)
        if car is None:
            raise TillError(f"no car waits to pay at lane {lane} / 该车道无待缴费车辆")
        return car

    def ingest(self, event: LaneEvent, received_at: datetime) -> bool:
        """Store one event once by ``event_id`` in a transaction of its own (or a savepoint of
        the caller's); say whether it was new. The worker batches through :class:`Batches`."""
        with self.store.atomic():
            is_new = self._ingester.store_event(event, received_at)
        if is_new:
            self.tally.events_stored += 1
        else:
            self.tally.duplicates += 1
        return is_new
