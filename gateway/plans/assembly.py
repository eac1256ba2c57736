"""The site plans as the gateway runs them: the contact register, drills, the fire response
(teams and owners) and the flood plan, built from the config and hooked to the alarms, the
patrol taps and the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import sqlite_utils

from gateway.contacts import ContactRegister, ContactSettings, PhoneVault
from gateway.contacts.vault import load_or_create_master_key
from gateway.lanes.capacity import CapacitySettings
from gateway.plans.drills import DrillDesk
from gateway.plans.equipment import EquipmentDesk
from gateway.plans.flood import FloodPlanDesk
from gateway.plans.lanes import LaneOrders
from gateway.plans.settings import FireSettings, PlanSettings, ResponseTeam
from gateway.plans.teams import alert_teams, fire_call, resolve_teams
from gateway.records.audit import AuditLog
from gateway.safety.alarms import AlarmChange, AlarmMonitor
from gateway.safety.alerts import AlertDesk
from gateway.safety.alerts.channels import Notifier
from parkguard.clock import Clock

PURGE_EVERY_S = 3600
FIRE_OWNERS = ("【{signature}】火警通知：停车场发生火警，请勿进入取车；如需挪车，工作人员会致电您。"
               "Fire in the car park: do not come in for your car; staff will call you if it "
               "must be moved.")
FIRE_MOVE = ("【{signature}】火警通知：起火区域（{levels}）附近停有您的车辆，需尽快挪离。请立即到"
             "停车场入口，听从工作人员指引挪车，切勿自行进入起火区域。Fire in the car park near "
             "your car ({levels}): it must be moved. Come to the car-park entrance now and move "
             "it only as staff direct; do not go near the fire on your own.")
LIST_PLATES = 20


@dataclass
class SitePlans:
    """What the dashboard's contact and plan pages use; each part None when not set up."""

    contacts: ContactRegister | None = None
    drills: DrillDesk | None = None
    flood: FloodPlanDesk | None = None
    equipment: EquipmentDesk | None = None
    fire: FireResponse | None = None
    _last_purge: datetime | None = None

    def tick(self, now: datetime) -> None:
        """On the worker, once a second: due drills start; hourly, retention and the
        equipment register's monthly alert."""
        if self.drills is not None:
            self.drills.tick(now)
        if self._last_purge is None or (
                now - self._last_purge).total_seconds() >= PURGE_EVERY_S:
            self._last_purge = now
            if self.contacts is not None:
                self.contacts.purge(now)
            if self.equipment is not None:
                self.equipment.tick(now)

    def on_alarm(self, change: AlarmChange) -> None:
        """A real fire (never a drill: a drill raises no alarm) alerts each response team
        with its task and texts the owners inside (:class:`FireResponse`); its reset
        resolves the teams' alerts."""
        if change.kind != "fire":
            return
        if self.fire is None:  # no roster: only the owners are told, all to keep out
            if change.active and self.contacts is not None:
                self.contacts.tell_inside("fire", FIRE_OWNERS.format(
                    signature=self.contacts.settings.signature), actor="gateway:fire")
        elif change.active:
            self.fire.fire(change.zone)
        else:
            self.fire.reset()

    def kiosk_consent(self, phone: str, identity: str, wording_version: str) -> None:
        """A driver proved the number by its one-time code and agreed at the kiosk: the
        no-plate identity is what the car is known by inside."""
        if self.contacts is not None:
            self.contacts.consent(phone, plate=identity, source="kiosk",
                                  wording_version=wording_version, actor="driver:kiosk")

    def close(self) -> None:
        if self.contacts is not None:
            self.contacts.close()


def build_site_plans(db: sqlite_utils.Database, *, clock: Clock, audit: AuditLog,
                     contacts: ContactSettings | None, plans: PlanSettings | None,
                     alerts: AlertDesk | None, alarms: AlarmMonitor | None,
                     lanes: LaneOrders | None, notifier: Notifier, otp_sms_url: str | None,
                     run_on_owner: Callable[[Callable[[], None]], object] | None,
                     zone: ZoneInfo | None = None,
                     capacity: CapacitySettings | None = None) -> SitePlans:
    """``capacity``: the gateway's ``[capacity]``, for the level each entry lane feeds (which
    cars a fire in a zone of ``[plans.fire] zones`` is near); a zone naming a level it does
    not have is refused here, at start."""
    register = None if contacts is None else ContactRegister(
        db, clock=clock, audit=audit, settings=contacts,
        vault=PhoneVault(load_or_create_master_key(contacts.key_file)), notifier=notifier,
        sms_url=ContactRegister.sms_url_of(contacts, otp_sms_url), run_on_owner=run_on_owner)
    site = SitePlans(contacts=register)
    if alerts is not None and plans is not None:
        site.drills = DrillDesk(db, clock=clock, audit=audit, alerts=alerts,
                                settings=plans.drills, lanes=lanes)
        site.flood = FloodPlanDesk(db, clock=clock, audit=audit, alerts=alerts,
                                   settings=plans.flood, lanes=lanes, contacts=register)
        if alarms is not None:
            alarms.add_listener(site.flood.on_alarm)
            alarms.add_listener(site.on_alarm)
        site.equipment = EquipmentDesk(db, clock=clock, audit=audit, alerts=alerts,
                                       settings=plans.equipment,
                                       zone=zone or ZoneInfo("Asia/Shanghai"))
        site.fire = FireResponse(db, alerts=alerts, teams=plans.drills.teams,
                                 evacuation_team=plans.drills.evacuation_team,
                                 settings=plans.fire, capacity=capacity, contacts=register)
    return site


class FireResponse:
    """What the fire plan does when a real fire alarm latches, beyond the alarm itself.

    - Each response team of ``[plans.drills] teams`` gets its own alert ``fire:{team}``
      (critical, kind ``fire``, title 【火警 FIRE】 and the team's task), raised by the same
      :func:`~gateway.plans.teams.alert_teams` a drill uses; resolved when the fire is reset,
      in the name of whoever reset it.
    - Owners (the contact register): the plan evacuates the cars nearest the fire first by
      reaching their owners (疏散路线 由内向外; 车主通知不到 → 拖车). When ``[plans.fire]
      zones`` names the levels near the alarm's zone, owners of cars that came in by a lane
      feeding one of those levels (``[capacity] lanes``) are asked to come to the entrance
      and move the car as staff direct; every other owner inside is told to keep out. The
      evacuation team's alert counts those cars and names the ones no owner can be texted
      about. A zone not listed (or none reported): everyone inside is told to keep out.
    """

    def __init__(self, db: sqlite_utils.Database, *, alerts: AlertDesk,
                 teams: tuple[ResponseTeam, ...], evacuation_team: str,
                 settings: FireSettings, capacity: CapacitySettings | None,
                 contacts: ContactRegister | None) -> None:
        self.db = db
        self._alerts = alerts
        self.teams = teams
        self._evacuation = evacuation_team
        self.settings = settings
        self._capacity = capacity
        self._contacts = contacts
        if settings.zones:
            if capacity is None:
                raise ValueError("[plans.fire] zones name levels, but the gateway has no "
                                 "[capacity] saying which level each entry lane feeds")
            known = set(capacity.level_spaces())
            for name, levels in settings.zones.items():
                unknown = sorted(set(levels) - known)
                if unknown:
                    raise ValueError(f"[plans.fire] zones.{name}: level(s) "
                                     f"{', '.join(unknown)} not in [capacity] levels "
                                     f"({', '.join(sorted(known))})")

    def near_levels(self, zone: str | None) -> tuple[str, ...]:
        """The levels whose cars are near a fire in ``zone`` (none: not known)."""
        return () if zone is None else self.settings.zones.get(zone, ())

    def fire(self, zone: str | None) -> None:
        levels = self.near_levels(zone)
        capacity = self._capacity
        near: Callable[[str], bool] | None = None
        extra: dict[str, str] = {}
        if levels and capacity is not None:
            def near(lane: str) -> bool:
                return capacity.level_of(lane) in levels

            extra[self._evacuation] = self._cars_near(near, levels)
        where = f" in zone {zone}" if zone else ""
        alert_teams(self._alerts, self.teams, fire_call(where), extra)
        if self._contacts is None:
            return
        signature = self._contacts.settings.signature
        keep_out = FIRE_OWNERS.format(signature=signature)
        if near is None:
            self._contacts.tell_inside("fire", keep_out, actor="gateway:fire")
            return
        self._contacts.tell_inside(
            "fire:move", FIRE_MOVE.format(signature=signature, levels="/".join(levels)),
            actor="gateway:fire", entered_by=near)
        self._contacts.tell_inside("fire", keep_out, actor="gateway:fire",
                                   entered_by=lambda lane: not near(lane))

    def reset(self) -> None:
        """The fire was reset: each team's alert is resolved by whoever reset it."""
        row = self.db.execute(
            "SELECT resolved_by, resolve_reason FROM alerts WHERE key = 'fire' AND "
            "state = 'resolved' ORDER BY id DESC LIMIT 1").fetchone()
        by, reason = (str(row[0]), str(row[1])) if row and row[0] else (
            "gateway:fire", "fire reset")
        resolve_teams(self._alerts, self.teams, fire_call(""), by=by, reason=reason)

    def _cars_near(self, near: Callable[[str], bool], levels: tuple[str, ...]) -> str:
        """The evacuation team's line: cars near the fire, and those with no owner to text."""
        cars: dict[str, str] = {}  # plate -> lane of its earliest open session
        for plate, lane in self.db.execute(
                "SELECT plate, entry_lane FROM sessions WHERE state = 'open' "
                "ORDER BY entry_at, rowid"):
            cars.setdefault(str(plate), str(lane))
        plates = [p for p, lane in cars.items() if near(lane)]
        reachable: set[str] = set()
        if self._contacts is not None and plates:
            marks = ",".join("?" * len(plates))
            reachable = {str(r[0]) for r in self.db.execute(
                f"SELECT DISTINCT plate FROM contacts WHERE state = 'active' "  # noqa: S608
                f"AND plate IN ({marks})", plates)}
        unreached = [p or "?" for p in plates if p not in reachable]
        shown = ", ".join(unreached[:LIST_PLATES]) + (
            f" and {len(unreached) - LIST_PLATES} more" if len(unreached) > LIST_PLATES else "")
        return (f"cars on {'/'.join(levels)} near the fire: {len(plates)}; owners asked to "
                f"move (on the contact register): {len(plates) - len(unreached)}; no owner to "
                f"text (find the owner or tow): {shown or 'none'}")
