"""The site plans as the gateway runs them: the contact register, drills and the flood plan,
built from the config and hooked to the alarms, the patrol taps and the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import sqlite_utils

from gateway.contacts import ContactRegister, ContactSettings, PhoneVault
from gateway.contacts.vault import load_or_create_master_key
from gateway.plans.drills import DrillDesk
from gateway.plans.equipment import EquipmentDesk
from gateway.plans.flood import FloodPlanDesk
from gateway.plans.lanes import LaneOrders
from gateway.plans.settings import PlanSettings
from gateway.records.audit import AuditLog
from gateway.safety.alarms import AlarmChange, AlarmMonitor
from gateway.safety.alerts import AlertDesk
from gateway.safety.alerts.channels import Notifier
from parkguard.clock import Clock

PURGE_EVERY_S = 3600
FIRE_OWNERS = ("【停车场火警通知】停车场发生火警，请勿进入取车；如需挪车，工作人员会致电您。"
               "Fire in the car park: do not come in for your car; staff will call you if it "
               "must be moved.")


@dataclass
class SitePlans:
    """What the dashboard's contact and plan pages use; each part None when not set up."""

    contacts: ContactRegister | None = None
    drills: DrillDesk | None = None
    flood: FloodPlanDesk | None = None
    equipment: EquipmentDesk | None = None
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
        """A real fire (never a drill: a drill raises no alarm): every consenting owner
        whose car is inside is told to keep out and answer the staff's call, since the plan
        moves the cars nearest the fire by reaching their owners."""
        if change.kind == "fire" and change.active and self.contacts is not None:
            self.contacts.tell_inside("fire", FIRE_OWNERS, actor="gateway:fire")

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
                     zone: ZoneInfo | None = None) -> SitePlans:
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
    return site
