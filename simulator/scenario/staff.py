"""The staff in a scenario: a fire drill, an accident with a plate held at the exit, a shift
handover, each a call into the running gateway's own desks at its moment (``[[staff]]``,
docs/scenarios.md).

:class:`StaffPlayer` plays them and notes what it did (``done``, kept in the report so
``sim --recheck`` can check the files again); :func:`check_staff` is the invariants over the
gateway's database, read-only: each drill's alerts acknowledged (its report has acks), each
held car refused at the exit while held and let go after the lift, each handover accepted by
another guard. The guard's acknowledgements are the runner's (``_Run.note_alerts``), as for
the sensors' alerts.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from parkguard.clock import utc_iso
from simulator.scenario.invariants import Check
from simulator.scenario.model import StaffEvent
from simulator.scenario.plan import Visit
from simulator.site import SimulatedLane, SimulatedSite

GUARD, NEXT_GUARD, LEADER, SUPERVISOR = ("guard:sim-guard", "guard:sim-guard-b",
                                         "guard:sim-leader", "supervisor:sim-captain")
#: Drivers whose car a guard can hold (one with a plate, alone at the lane).
_HOLDABLE = ("pay_at_exit", "prepay", "press_help")


class Cars(Protocol):
    """What the player needs of the run: who is inside, where a car leaves, waiting."""

    entered: set[str]
    left: set[str]

    def settle(self) -> None: ...

    def exit_lane(self, wanted: str) -> SimulatedLane: ...


@dataclass
class StaffPlayer:
    """Plays the staff's events on the in-process gateway (its worker runs each call)."""

    site: SimulatedSite
    visits: Sequence[Visit]
    done: list[dict[str, Any]]

    def _call(self, work: Callable[[], Any]) -> Any:
        return self.site.gateway.service.call(work)

    def play(self, starts: bool, event: StaffEvent, index: int, cars: Cars,
             *, quiet: bool) -> None:
        """``quiet``: no fault is on and the gateway is up (a desk call needs the gateway;
        a car driven to the exit needs its lane to hear the gateway)."""
        mine = next((d for d in self.done if d["index"] == index), None)
        if starts:
            entry: dict[str, Any] = {"index": index, "kind": event.kind,
                                     "at": utc_iso(self.site.clock.now())}
            self.done.append(entry)
            if not quiet:
                entry["skipped"] = "a fault was on or the gateway down"
                return
            {"drill": self._drill, "accident": self._accident,
             "handover": self._handover}[event.kind](entry, event, cars)
        elif mine is not None and "skipped" not in mine and "no_car" not in mine:
            {"drill": self._drill_over, "accident": self._accident_over,
             "handover": self._handover_over}[event.kind](mine)

    # -- a fire drill -------------------------------------------------------------------

    def _drills(self) -> Any:
        drills = self.site.gateway.site_plans.drills
        if drills is None:
            raise RuntimeError("the scenario's safety file has no [plans]: no drills")
        return drills

    def _drill(self, entry: dict[str, Any], event: StaffEvent, cars: Cars) -> None:
        drills = self._drills()
        entry["drill_id"] = self._call(partial(
            drills.start, actor=SUPERVISOR, note="消防演习 unannounced drill (scenario)"))

    def _drill_over(self, entry: dict[str, Any]) -> None:
        drills = self._drills()
        report = self._call(partial(drills.end, entry["drill_id"], actor=SUPERVISOR))
        entry["acks"] = len([a for a in report.acks if a.acked_at is not None])
        entry["alerts"] = len(report.acks)

    # -- an accident and a hold -----------------------------------------------------------

    def _accident(self, entry: dict[str, Any], event: StaffEvent, cars: Cars) -> None:
        now = self.site.clock.now()
        lift = now + event.duration
        with self.site.gateway.store.reader() as db:  # came in under its own plate (a
            # misread entry, with the TFLite reader, is the guard's other matter)
            open_plates = {str(r[0]) for r in db.execute(
                "SELECT plate FROM sessions WHERE state = 'open'")}
        inside = [v for v in self.visits if v.plate in cars.entered and v.plate not in
                  cars.left and v.plate in open_plates and v.behaviour in _HOLDABLE
                  and v.leave > lift + timedelta(minutes=1)]
        if not inside:  # a small day (``demo --cars 10``): nobody to hold, nothing to check
            entry["no_car"] = "no car inside that stays past the lift"
            return
        visit = min(inside, key=lambda v: (v.leave, v.number))
        gateway = self.site.gateway
        incident = self._call(partial(
            gateway.incidents.open, "accident", reported_by=GUARD, plates=[visit.plate],
            description="倒车剐蹭立柱 reversed into a pillar (scenario)"))
        self._call(partial(gateway.holds.hold, visit.plate, actor=GUARD,
                           reason="事故 accident: wait for the guard",
                           incident_id=incident.incident_id))
        entry.update(plate=visit.plate, incident_id=incident.incident_id,
                     held_at=utc_iso(now))
        lane = cars.exit_lane(visit.exit_lane)  # the driver tries to leave at once
        passage = lane.driver.drive_through(visit.plate)
        cars.settle()
        entry["tried"] = {"lane": lane.node.config.lane, "opened": passage.opened,
                          "reason": passage.reason}

    def _accident_over(self, entry: dict[str, Any]) -> None:
        if "plate" not in entry:
            return
        gateway = self.site.gateway
        self._call(partial(gateway.holds.lift, entry["plate"], actor=LEADER,
                           reason="现场已拍照 双方和解 photos taken, settled"))
        self._call(partial(gateway.incidents.close, entry["incident_id"], actor=LEADER,
                           outcome="双方和解 settled between the drivers"))
        entry["lifted_at"] = utc_iso(self.site.clock.now())

    # -- a shift handover -----------------------------------------------------------------

    def _handover(self, entry: dict[str, Any], event: StaffEvent, cars: Cars) -> None:
        desk = self.site.gateway.handover
        handed = self._call(partial(desk.start, GUARD, keys=["岗亭钥匙 booth key"],
                                    cash=[("备用金 float", 20_000)],
                                    note="交接班 shift change (scenario)"))
        entry["handover_id"] = handed.handover_id

    def _handover_over(self, entry: dict[str, Any]) -> None:
        desk = self.site.gateway.handover
        self._call(partial(desk.accept, entry["handover_id"], NEXT_GUARD))


# --- the invariants --------------------------------------------------------------------


def check_staff(database: Path, done: Sequence[dict[str, Any]]) -> list[Check]:
    """One check per kind of staff event the run played."""
    if not done:
        return []
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        checks = []
        for kind, check in (("drill", _drills), ("accident", _accidents),
                            ("handover", _handovers)):
            mine = [d for d in done if d["kind"] == kind]
            if mine:
                checks.append(check(db, mine))
        return checks
    finally:
        db.close()


def _skipped(done: Sequence[dict[str, Any]]) -> list[str]:
    return [f"{d['kind']} at {d['at']} not played: {d['skipped']}" for d in done
            if "skipped" in d]


def _drills(db: sqlite3.Connection, done: Sequence[dict[str, Any]]) -> Check:
    wrong = _skipped(done)
    acked = total = 0
    for entry in done:
        if "drill_id" not in entry:
            continue
        row = db.execute("SELECT state, alerts FROM drills WHERE drill_id = ?",
                         [entry["drill_id"]]).fetchone()
        if row is None or row["state"] != "over":
            wrong.append(f"drill {entry['drill_id']} not over")
            continue
        ids = list(json.loads(row["alerts"]).values())
        answered = [r[0] for r in db.execute(
            f"SELECT alert_id FROM alerts WHERE acked_at IS NOT NULL AND alert_id IN "  # noqa: S608
            f"({','.join('?' * len(ids))})", ids)]
        total += len(ids)
        acked += len(answered)
        if not ids or len(answered) != len(ids):
            wrong.append(f"drill {entry['drill_id']}: {len(answered)} of {len(ids)} alerts "
                         "acknowledged")
    return Check("each drill acknowledged", not wrong,
                 "; ".join(wrong[:3]) or f"{len(done)} drill(s), {acked} of {total} alerts "
                                         "acknowledged")


def _accidents(db: sqlite3.Connection, done: Sequence[dict[str, Any]]) -> Check:
    wrong = _skipped(done)
    for entry in done:
        if "plate" not in entry:
            continue
        plate = entry["plate"]
        hold = db.execute("SELECT held_at, lifted_at, lift_reason, incident_id FROM "
                          "plate_holds WHERE plate = ? ORDER BY id DESC LIMIT 1",
                          [plate]).fetchone()
        incident = db.execute("SELECT kind, state FROM incidents WHERE incident_id = ?",
                              [entry["incident_id"]]).fetchone()
        refused = db.execute(
            "SELECT count(*) FROM decisions WHERE plate = ? AND direction = 'exit' AND "
            "reason LIKE '%plate_held' AND answered_at >= ? AND answered_at <= ?",
            [plate, hold["held_at"] if hold else "", (hold["lifted_at"] if hold else "")
             or "9999"]).fetchone()[0]
        closed = db.execute("SELECT state, exit_at FROM sessions WHERE plate = ?",
                            [plate]).fetchone()
        tried = entry.get("tried", {})
        if hold is None or hold["incident_id"] != entry["incident_id"]:
            wrong.append(f"{plate}: no hold from the incident")
        elif not hold["lifted_at"] or not hold["lift_reason"]:
            wrong.append(f"{plate}: hold never lifted with a reason")
        elif incident is None or tuple(incident) != ("accident", "closed"):
            wrong.append(f"{plate}: accident incident not recorded and closed")
        elif tried.get("opened") or not str(tried.get("reason", "")).endswith("plate_held") \
                or refused < 1:
            wrong.append(f"{plate}: not refused at the exit while held ({tried})")
        elif closed is None or closed["state"] != "closed" or \
                closed["exit_at"] < hold["lifted_at"]:
            wrong.append(f"{plate}: did not leave after the lift")
    said = [f"{d['plate']} held {d['held_at'][11:16]}–{d['lifted_at'][11:16]} UTC, "
            f"refused at {d['tried']['lane']}" for d in done if "plate" in d]
    said += [f"at {d['at'][11:16]} UTC: {d['no_car']}" for d in done if "no_car" in d]
    return Check("held car refused at the exit while held", not wrong,
                 "; ".join(wrong[:3]) or ", ".join(said))


def _handovers(db: sqlite3.Connection, done: Sequence[dict[str, Any]]) -> Check:
    wrong = _skipped(done)
    for entry in done:
        if "handover_id" not in entry:
            continue
        row = db.execute("SELECT state, outgoing, accepted_by FROM handovers WHERE "
                         "handover_id = ?", [entry["handover_id"]]).fetchone()
        items = db.execute("SELECT count(*) FROM handover_items WHERE handover_id = ?",
                           [entry["handover_id"]]).fetchone()[0]
        if row is None or row["state"] != "accepted" or row["accepted_by"] == row["outgoing"]:
            wrong.append(f"handover {entry['handover_id']} "
                         f"{'missing' if row is None else row['state']}")
        elif items < 2:
            wrong.append(f"handover {entry['handover_id']} lists {items} item(s)")
    return Check("each handover accepted", not wrong,
                 "; ".join(wrong[:3]) or f"{len(done)} handover(s) accepted by the "
                                         "incoming guard")
