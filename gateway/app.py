"""Assembles the gateway in order — store, audit, bus, service — and tears it down in reverse."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from broker.provision.bundle import broker_address, load_bundle
from gateway.config import GatewayConfig, SafetySettings
from gateway.fleet_orders import FleetOrders
from gateway.lanes.capacity import Capacity
from gateway.lanes.commands import LaneCommander
from gateway.lanes.otp import OtpDesk, refuse_all
from gateway.lanes.reconcile import Reconciler
from gateway.lanes.replicas import ReplicaPublisher
from gateway.money.billing import Billing
from gateway.money.merchants import MerchantAccounts
from gateway.money.passes import AccessDesk
from gateway.money.payments import PaymentDesk, PaymentProvider
from gateway.money.payments.factory import build_provider
from gateway.money.pricing import SitePricing
from gateway.patrols.desk import PatrolDesk
from gateway.patrols.regime import load_site_regime
from gateway.plans.assembly import SitePlans, build_site_plans
from gateway.records.audit import AuditLog
from gateway.records.audit.anchor import AuditHeadPublisher
from gateway.runtime.availability import Availability, availability_will
from gateway.runtime.discovery import Discovery, discovery_configs
from gateway.runtime.exits import PayLink
from gateway.runtime.inbox import Inbox, Job
from gateway.runtime.liveness import Liveness
from gateway.runtime.service import Gateway
from gateway.safety.alarms import AlarmChange, AlarmMonitor, SensorKind
from gateway.safety.alerts import AlertDesk, AppriseNotifier, Ticker, load_or_create_key
from gateway.safety.complaints import ComplaintDesk
from gateway.safety.faults import LaneFaults
from gateway.safety.handover import HandoverDesk
from gateway.safety.holds import HoldDesk
from gateway.safety.incidents import IncidentDesk
from gateway.storage.store import GatewayStore
from gateway.web import WebServer, WebSettings, load_secret_key
from gateway.web.tickets import TicketSigner
from parkguard.clock import Clock, utc_iso
from parkguard.configfile import load_config, reveal
from parkguard.errors import ConfigError
from parkguard.systemd import Watchdog
from wire.bus import Bus
from wire.contract import topics
from wire.fleet_command import command_filter
from wire.mqtt import MqttBus

log = logging.getLogger(__name__)

TARIFF_ACTION = "tariff.activate"


def audit_tariff_change(audit: AuditLog, pricing: SitePricing) -> bool:
    """Record the tariff in force when it differs from the last one audited; say if it did.

    A tariff change is a money change: whoever edits the file, the trail shows
    when the gateway started charging by it and what it replaced.
    """
    current = pricing.audit_record()
    previous = None
    for entry in audit.entries():
        if entry.action == TARIFF_ACTION:
            previous = entry.after
    if previous == current:
        return False
    audit.record(
        actor="gateway", action=TARIFF_ACTION, subject=f"tariff:{pricing.source}",
        reason="gateway started with this tariff file", before=previous, after=current,
    )
    return True


def gateway_client_id(site: str) -> str:
    """The gateway's one persistent MQTT session at a site."""
    return f"gateway-{site}"


def lane_keys_of(config: GatewayConfig) -> dict[str, bytes]:
    """Every lane's command key: from the gateway's device bundle, else from the config."""
    keys = dict(config.lane_keys)
    if config.broker.bundle is not None:
        keys.update(load_bundle(config.broker.bundle).lane_keys)
    return {lane: bytes.fromhex(key.get_secret_value()) for lane, key in keys.items()}


def sensor_kinds_of(config: GatewayConfig) -> dict[str, SensorKind]:
    """Every sensor node's kind, as the site inventory says: from the gateway's device
    bundle, else from the config. The alarm monitor believes nothing else."""
    kinds = dict(config.sensors)
    if config.broker.bundle is not None:
        kinds.update(load_bundle(config.broker.bundle).sensors)
    return kinds


def pay_link_of(config: GatewayConfig, clock: Clock) -> PayLink | None:
    """How an exit lane's QR code is made: ``{public_url}/pay?plate=…&lane=…&t=<ticket>``,
    the ticket signed with the dashboard's key so the pay page shows this stay; None without
    ``[web] public_url`` (the lane then shows no QR, only 付款码)."""
    web = config.web
    if web is None or web.public_url is None:
        return None
    base, signer = web.public_url, TicketSigner(load_secret_key(web.secret_key_file))

    def link(plate: str, lane: str, session_id: str) -> str:
        token = signer.issue(plate, session_id, now=clock.now())
        return f"{base}/pay?{urlencode({'plate': plate, 'lane': lane, 't': token})}"

    return link


def metrics_token(path: Path | None) -> str | None:
    """The bearer token that may read ``/metrics``, from its file; None without one."""
    if path is None:
        return None
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < 16:
        raise ConfigError(f"web.metrics_token_file: {path} holds fewer than 16 characters")
    return token


class GatewayApp:
    """The running gateway process: one persistent MQTT session, one SQLite file, and the
    dashboard when the config has a ``[web]`` section."""

    def __init__(self, config: GatewayConfig, *, clock: Clock, bus: Bus | None = None,
                 allow_simulated: bool = False, liveness: Liveness | None = None) -> None:
        """``bus``: the site broker connection; by default a persistent manual-ack
        :class:`MqttBus` to ``config.broker`` (tests hand in a :class:`wire.memory.MemoryBus`
        made with ``persistent=True, manual_ack=True``). ``allow_simulated``: only
        ``parkguard demo`` and tests may run the simulated payment provider; without it a
        config naming it is refused (:class:`~parkguard.errors.ConfigError`) before anything
        is opened. ``liveness``: how it tells systemd it is ready and its worker still goes
        round (by default what systemd set in the environment; off systemd, nothing)."""
        payments = config.payments
        provider = build_provider(payments.provider, clock=clock, wechat=payments.wechat,
                                  alipay=payments.alipay, allow_simulated=allow_simulated)
        self.config = config
        self.clock = clock
        self.liveness = liveness if liveness is not None else Liveness.from_environment()
        self.watchdog: Watchdog | None = None
        self.pricing = SitePricing.from_file(config.tariff_file)
        self.store = GatewayStore.open(config.database)
        db, zone = self.store.db, ZoneInfo(config.timezone)
        self.audit = AuditLog(db, clock=clock)
        self.provider: PaymentProvider = provider
        self.billing = Billing(
            pricing=self.pricing,
            merchants=MerchantAccounts(db, clock=clock, audit=self.audit, site_zone=zone),
            access=AccessDesk(db, clock=clock, audit=self.audit),
            payments=PaymentDesk(db, clock=clock, audit=self.audit, provider=self.provider,
                                 grace_minutes=payments.grace_minutes,
                                 notice_window_s=payments.notice_window_s),
        )
        self.incidents = IncidentDesk(db, clock=clock, audit=self.audit)
        self.reconciler = Reconciler(db, clock=clock, audit=self.audit)
        self.bus: Bus = bus if bus is not None else MqttBus(
            broker_address(config.broker),
            client_id=gateway_client_id(config.site),
            persistent=True,
            manual_ack=True,  # lane events are acknowledged once committed
            will=availability_will(config.site, clock),  # lanes stop asking a dead gateway
        )
        self.availability = Availability(self.bus, config.site, clock)
        self.audit_head = AuditHeadPublisher(  # the fleet keeps it: docs/fleet.md
            self.bus, config.site, clock, db, run_on_worker=lambda work: self.inbox.put(
                Job.of(work)))
        keys = lane_keys_of(config)
        self.commander = LaneCommander(self.bus, config.site, keys, clock, self.audit)
        self.replicas = ReplicaPublisher(
            self.bus, config.site, clock, lanes=set(keys) | set(config.replicas.lanes),
            store=self.store, access=self.billing.access, payments=self.billing.payments,
            tariff_file=config.tariff_file, snapshot_every=config.replicas.snapshot_every,
            max_packet_size=self.bus.max_packet_size, merchants=self.billing.merchants)
        self.capacity = None if config.capacity is None else Capacity.from_store(
            config.capacity, self.store, site=config.site, clock=clock,
            publish=self.replicas.publish_capacity)
        self.discovery = self._discovery()
        # The worker's inbox comes first: the alert courier hands its work to the worker.
        self.inbox = Inbox(idle_wake_s=self.liveness.idle_wake_s)
        self.alarms: AlarmMonitor | None = None
        self.alerts: AlertDesk | None = None
        safety = None if config.safety_file is None \
            else load_config(SafetySettings, config.safety_file)
        if safety is not None:
            self.alerts, self.alarms = self._safety_desks(safety)
        self.bus.when_refused(self._refused_for_size)
        # Plates held at the exit reach the lanes with their lists (an offline exit holds too).
        self.holds = HoldDesk(db, clock=clock, audit=self.audit, alerts=self.alerts,
                              on_change=self.replicas.passes_changed)
        self.replicas.holds = self.holds.list_entries
        self.incidents.alerts = self.alerts  # an accident calls the guard and squad leader
        self.faults = None if self.alerts is None or safety is None else LaneFaults(
            self.alerts, stale_after_s=safety.lane_offline_after_s)
        self.complaints = ComplaintDesk(db, clock=clock, audit=self.audit, alerts=self.alerts,
                                        settings=None if safety is None else safety.complaints)
        self.handover = HandoverDesk(db, clock=clock, audit=self.audit, alerts=self.alerts,
                                     roster=None if safety is None else safety.alerts,
                                     settings=None if safety is None else safety.handover)
        self.patrols: PatrolDesk | None = None
        if config.patrol_file is not None:
            self.patrols = PatrolDesk(
                self.store.db, config=load_site_regime(config.patrol_file, config.tariff_file),
                clock=clock,
                raise_alert=self.alerts.raise_alert if self.alerts is not None else None)
        self.service = Gateway(
            site=config.site, clock=clock, store=self.store, bus=self.bus, billing=self.billing,
            matching=config.matching, capacity=self.capacity, replicas=self.replicas,
            reconciler=self.reconciler, alarms=self.alarms, alerts=self.alerts,
            patrols=self.patrols, inbox=self.inbox, window=config.receipt_window,
            commander=self.commander, pay_link=pay_link_of(config, clock), audit=self.audit,
            holds=self.holds, faults=self.faults,
        )
        self._ticker = None if safety is None else Ticker(
            self.clock, lambda now: self.service.call(lambda: self._tick(now)))
        self.otp = None if config.otp is None else OtpDesk(
            self.store, site=config.site, site_name=config.site_name, clock=clock,
            settings=config.otp, notifier=AppriseNotifier(), publisher=self.bus,
            run_on_owner=lambda work: self.inbox.put(Job.of(work)))
        # Owner contacts, fire drills and the flood plan (docs/contacts.md).
        self.site_plans: SitePlans = build_site_plans(
            db, clock=clock, audit=self.audit, contacts=config.contacts,
            plans=None if safety is None else safety.plans, alerts=self.alerts,
            alarms=self.alarms, lanes=self.commander, notifier=AppriseNotifier(),
            otp_sms_url=None if config.otp is None else reveal(config.otp.sms_url),
            run_on_owner=lambda work: self.inbox.put(Job.of(work)), zone=zone,
            capacity=config.capacity)
        if self.patrols is not None and self.site_plans.flood is not None:
            self.patrols.on_accepted_tap(self.site_plans.flood.on_checkpoint_tap)
        if self.patrols is not None and self.site_plans.equipment is not None:
            self.patrols.on_accepted_tap(self.site_plans.equipment.on_checkpoint_tap)
        if self.otp is not None and self.site_plans.contacts is not None:
            self.otp.on_consent = self.site_plans.kiosk_consent  # agreed at the kiosk
        self.fleet_orders = None if config.fleet is None else FleetOrders(  # docs/fleet.md
            site=config.site, settings=config.fleet, db=db, clock=clock, audit=self.audit,
            publisher=self.bus, pricing=self.pricing, tariff_file=config.tariff_file,
            access=self.billing.access, lanes=self.commander,
            on_tariff=self.replicas.publish_snapshot,
            dead_letter=lambda topic, payload, reason: self.store.dead_letter(  # counted
                received_at=utc_iso(clock.now()), topic=topic, payload=payload, reason=reason))
        self.web: WebServer | None = None

    def _safety_desks(self, safety: SafetySettings) -> tuple[AlertDesk, AlarmMonitor]:
        """Alarms and the alerts that reach a person; a fire raises every barrier."""
        settings = safety.alerts
        key = load_or_create_key(settings.ack_key_file) if settings.ack_key_file \
            else secrets.token_bytes(32)
        alerts = AlertDesk(self.store.db, site=self.config.site, clock=self.clock,
                           audit=self.audit, settings=settings, notifier=AppriseNotifier(),
                           ack_key=key, publisher=self.bus, run_on_owner=self.inbox.call)
        sensors = sensor_kinds_of(self.config)
        if not sensors:
            log.warning("alarms: the gateway knows no sensor nodes (no [sensors] in its bundle "
                        "or config): every sensor reading will be refused")
        alarms = AlarmMonitor(site=self.config.site, clock=self.clock, desk=alerts,
                              audit=self.audit, sensors=sensors, settings=safety.alarms,
                              publisher=self.bus, phones_inside=self._phones_inside)
        alarms.add_listener(self._barriers_follow_fire)
        return alerts, alarms

    def _discovery(self) -> Discovery | None:
        """Home Assistant's entities for this site, when ``[homeassistant]`` turns them on:
        every lane the gateway serves, every sensor node of the inventory, and the occupancy
        when it keeps capacity (read from one lane's retained capacity)."""
        settings = self.config.homeassistant
        if not settings.enabled:
            return None
        lanes = sorted(self.replicas.lanes)
        entities = discovery_configs(
            self.config.site, lanes=lanes, sensors=sensor_kinds_of(self.config),
            capacity_lane=lanes[0] if self.capacity is not None and lanes else None)
        return Discovery(self.bus, self.config.site, settings.discovery_prefix, entities)

    def _refused_for_size(self, topic: str, size: int, limit: int) -> None:
        """Something the gateway meant to publish was over the broker's packet limit and never
        left (the bus refuses it rather than be disconnected and resend it forever): staff must
        know. Raised on the worker, from whichever thread published."""
        alerts = self.alerts
        if alerts is None:
            return  # the bus has logged and counted it; there is no roster to tell
        self.inbox.put(Job.of(lambda: alerts.raise_alert(
            f"bus-oversize:{topic}", kind="bus_oversize", severity="warning",
            title_zh="消息过大 未能发送", title_en="Message too large for the broker, not sent",
            detail=f"{size} bytes on {topic}: over the broker's max_packet_size of {limit}")))

    def _tick(self, now: datetime) -> None:
        """Once a second on the worker: escalate alarms and alerts, and about once a minute
        look for overdue patrol rounds."""
        if self.alarms is not None and self.alerts is not None:
            self.alarms.tick(now)
            self.alerts.tick(now)
        if self.faults is not None:
            self.faults.tick(now)
        if now.second < 2:  # about once a minute
            self.complaints.check_overdue(now)
            self.handover.tick(now)  # a shift change with no handover, or none accepted
        self.site_plans.tick(now)
        if self.patrols is not None and now.second < 2:  # about once a minute
            self.patrols.check_overdue(now)
            self.patrols.check_staffing(now)  # a short roster today or tomorrow

    def _barriers_follow_fire(self, change: AlarmChange) -> None:
        """Belt and braces beside the retained alarm the lanes act on themselves: a signed
        hold-open to every lane on fire, a close when it is reset."""
        if change.kind != "fire":
            return
        for lane in self.commander.lanes:
            if change.active:
                self.commander.hold_open(lane, actor="gateway:fire-alarm", reason="fire alarm")
            else:
                self.commander.close(lane, actor="gateway:fire-alarm",
                                     reason="fire alarm reset")

    def _phones_inside(self) -> list[str]:
        """Phones of the cars inside that we hold (their passes): "please move your car"."""
        phones: list[str] = []
        for row in self.store.db.query(
                "SELECT session_id FROM sessions WHERE state = 'open' AND pass_id IS NOT NULL"):
            held = self.billing.access.pass_of_session(row["session_id"])
            if held is not None and held.phone:
                phones.append(held.phone)
        return phones

    def audit_tariff(self) -> bool:
        """Write the tariff in force to the audit log if it changed since the last start."""
        return audit_tariff_change(self.audit, self.pricing)

    def start(self) -> GatewayApp:
        self.audit_tariff()
        self.service.start()
        self.bus.subscribe(topics.all_lane(self.config.site, "otp"),
                           refuse_all(self.config.site, self.bus, self.clock)
                           if self.otp is None else self.otp.on_message)
        self.availability.start()  # 'online' on every connect, once the worker is serving
        orders = self.fleet_orders
        if orders is not None:  # handled on the worker, like every write
            self.bus.subscribe(command_filter(self.config.site), lambda topic, payload: (
                self.inbox.put(Job.of(lambda: orders.on_message(topic, payload)))))
        if self.discovery is not None:
            self.discovery.start()  # Home Assistant's configs, retained, on every connect
        self.audit_head.start()
        broker = self.config.broker
        self.liveness.status(f"connecting to the broker at {broker.host}:{broker.port}")
        self.bus.start()
        self.liveness.status("publishing the lanes' replica snapshots")
        self.service.call(self._publish_replicas)  # the worker runs: it did this
        if self._ticker is not None:
            self._ticker.start()
        if self.config.web is not None:
            web = self.config.web
            self.web = WebServer(self, web.host, web.port, settings=WebSettings(
                secret_key=load_secret_key(web.secret_key_file),
                https_only=web.https_only, tls_certfile=web.tls_certfile,
                tls_keyfile=web.tls_keyfile,
                forwarded_allow_ips=tuple(web.forwarded_allow_ips),
                metrics_allow=tuple(str(network) for network in web.metrics_allow),
                metrics_token=metrics_token(web.metrics_token_file),
                lane_stale_s=web.lane_stale_s)).start()
        # Ready only now: connected, the worker serving, the lanes' replicas sent.
        self.watchdog = self.liveness.watchdog(self.service.healthy)
        self.watchdog.start(status=f"gateway for site {self.config.site}: serving")
        return self

    def _publish_replicas(self) -> None:
        """What every lane needs to decide alone, sent at start (retained)."""
        self.replicas.publish_snapshot()
        if self.capacity is not None:
            self.capacity.publish_now()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every part; the worker gets ``timeout_s`` to finish what is queued."""
        if self.watchdog is not None:  # STOPPING=1; no pings while the worker winds down
            self.watchdog.stop()
            self.watchdog = None
        if self.web is not None:
            self.web.stop()
            self.web = None
        if self._ticker is not None:
            self._ticker.stop()
        if self.alerts is not None:
            self.alerts.close()
        if self.otp is not None:
            self.otp.close()
        self.site_plans.close()
        finished = self.service.stop(timeout_s)  # its last batch acked while the bus is up
        self.audit_head.stop()
        self.availability.stop()  # a clean stop has no Last Will: 'offline' said here
        self.bus.stop()
        if finished:
            self.store.close()
        else:  # closed under it, the worker's next write would fail and its work be lost
            log.error("gateway: the worker was still busy when the stop's time ran out; "
                      "the store is left open under it")

    def __enter__(self) -> GatewayApp:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
