"""The alarm monitor: sensor readings, node states and the clock in; site alarms, alerts
and lane displays out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Literal

from gateway.records.audit import AuditLog
from gateway.safety.alarms.intake import Intake, SensorKind
from gateway.safety.alarms.memory import SavedNode, SensorMemory
from gateway.safety.alarms.settings import (
    FIRE_DISPLAY,
    FLOOD_ENTRY_DISPLAY,
    FLOOD_EVACUATE_DISPLAY,
    GATEWAY,
    MOVE_YOUR_CAR,
    AlarmError,
    AlarmSettings,
)
from gateway.safety.alarms.state import AlarmChange, FloodState, NodeState, PanelState
from gateway.safety.alerts import AlertDesk, Publisher
from parkguard.clock import Clock, utc_iso
from wire.contract import topics
from wire.contract.messages import AlarmState, SensorReading, SensorState, WireMessage

log = logging.getLogger(__name__)


class AlarmMonitor:
    """Turns sensor readings, node states and the clock into site alarms and alerts."""

    def __init__(
        self,
        *,
        site: str,
        clock: Clock,
        desk: AlertDesk,
        audit: AuditLog,
        sensors: Mapping[str, SensorKind],
        settings: AlarmSettings | None = None,
        publisher: Publisher | None = None,
        phones_inside: Callable[[], Iterable[str]] = lambda: (),
    ) -> None:
        """``sensors``: the site inventory's sensor nodes and their kinds, the only source
        of what a node is and may do (a payload's ``kind`` is checked against it, never
        believed). ``phones_inside``: the phones of the owners of the cars inside (passes,
        no-plate phone entries, registered contacts); called once when the water reaches
        level 2."""
        self.site = site
        self._clock = clock
        self._desk = desk
        self._audit = audit
        self.settings = settings or AlarmSettings()
        self._publisher = publisher
        self._phones_inside = phones_inside
        self._listeners: list[Callable[[AlarmChange], None]] = []
        self._started = clock.now()
        self._nodes: dict[str, NodeState] = {}
        self._panels: dict[str, PanelState] = {}
        self._floods: dict[str, FloodState] = {}
        self._fire = False
        self._fire_since: datetime | None = None
        self._fire_zone: str | None = None
        self._fire_source: str | None = None
        self._site_level = 0
        self._flood_since: datetime | None = None
        self._intake = Intake(sensors, seq_jump=self.settings.seq_jump, trouble=self._trouble,
                              resolve=self._resolve)
        self._memory = SensorMemory(desk.db, clock)
        # A restart forgets nothing that matters: an unreset fire, each node's count and
        # level, and the site's flood level, held until a fresh flood reading moves it.
        if desk.open_alert("fire") is not None:
            self._fire = True
            self._fire_since = self._started
        for name, saved in self._memory.load().items():
            self._intake.tracks[name] = saved.track
            if saved.flood is not None:
                self._floods[name] = saved.flood
            if saved.panel is not None:
                self._panels[name] = saved.panel
        self._held = next((lvl for lvl in (3, 2, 1)
                           if desk.open_alert(f"flood:{lvl}") is not None), 0)
        self._site_level = max([self._held, *(f.level for f in self._floods.values())])

    def add_listener(self, listener: Callable[[AlarmChange], None]) -> None:
        """``listener(change)`` after a site alarm goes on or off (on the caller's thread):
        e.g. hold every barrier open on fire, show the display text."""
        self._listeners.append(listener)

    # --- what the lanes and billing ask ------------------------------------------------------

    def billing_suspended(self) -> bool:
        """True while a fire alarm lasts: exits are free (and still recorded)."""
        return self._fire

    def fire_active(self) -> bool:
        return self._fire

    def flood_level(self) -> int:
        return self._site_level

    def entries_closed(self) -> str | None:
        """Why the entry lanes refuse now (``fire``, ``flood_level_2``, ``flood_level_3``),
        or None."""
        if self._fire:
            return "fire"
        if self._site_level >= 2:
            return f"flood_level_{self._site_level}"
        return None

    def lane_display(self, direction: Literal["entry", "exit"] = "exit"
                     ) -> tuple[str, str] | None:
        """What a lane shows now (zh, en), if an alarm overrides its usual text."""
        if self._fire:
            return FIRE_DISPLAY
        if self._site_level >= 3:
            return FLOOD_EVACUATE_DISPLAY
        if self._site_level >= 2 and direction == "entry":
            return FLOOD_ENTRY_DISPLAY
        return None

    def panel_reports_fire(self) -> bool | None:
        """Whether a fire panel reports fire now; None if no panel has reported yet."""
        if not self._panels:
            return None
        return any(p.fire for p in self._panels.values())

    # --- input ---------------------------------------------------------------------------

    def on_state(self, state: SensorState) -> None:
        """A node's retained online state (its heartbeat) or its Last Will; a node not in
        the inventory is refused (:class:`UntrustedReading`)."""
        self._intake.kind_of(state.node, "state")
        now = self._clock.now()
        node = self._node(state.node, now)
        node.heartbeat_s = state.heartbeat_s
        node.last_seen = now
        node.online = state.online
        if state.online:
            self._resolve(f"missing:{state.node}", f"{state.node} is back online")
        else:
            self._trouble(f"missing:{state.node}", f"传感器离线 {state.node}",
                          f"Sensor node {state.node} went offline",
                          "its Last Will arrived: power, Wi-Fi or crash")

    def on_reading(self, reading: SensorReading) -> None:
        """One reading, by what the inventory says its node is: one whose kind is not the
        node's is refused (:class:`UntrustedReading`, a trouble alert names the node); a
        resend only proves the node is alive; a count that went back or leapt ahead is a
        trouble alert, and the reading is used all the same."""
        verdict = self._intake.admit(reading)
        now = self._clock.now()
        node = self._node(reading.node, now)
        node.last_seen = now
        node.online = True
        self._resolve(f"missing:{reading.node}", f"{reading.node} is reporting again")
        if verdict == "repeat":
            return
        if reading.kind == "fire_panel":
            self._panel_reading(reading)
        else:
            self._flood_reading(reading, now)
        self._save(reading.node)

    def on_alarm(self, alarm: AlarmState) -> None:
        """The retained site alarm, as the fire node (or anyone) set it. Only the gateway
        and fire-panel nodes may write ``alarm/fire`` (the ACL); a clear while the fire holds
        is undone whatever ``source`` it names, our own included (we clear only after the
        reset, when the fire no longer holds)."""
        if alarm.kind != "fire":
            return
        if alarm.active and not self._fire and alarm.source != GATEWAY:
            self._latch_fire(alarm.source, alarm.zone, alarm.since or self._clock.now())
        elif not alarm.active and self._fire:
            log.warning("alarms: %s cleared alarm/fire without a reset; setting it again",
                        alarm.source)
            self._publish_alarm("fire", True)

    def handle(self, message: WireMessage) -> bool:
        """Route a decoded message; False if it is not one the monitor takes."""
        if isinstance(message, SensorReading):
            self.on_reading(message)
        elif isinstance(message, SensorState):
            self.on_state(message)
        elif isinstance(message, AlarmState):
            self.on_alarm(message)
        else:
            return False
        return True

    def tick(self, now: datetime | None = None) -> None:
        """Time-based checks: missed heartbeats, a pump idle too long, a lower flood level
        that has held long enough."""
        now = now or self._clock.now()
        for name in self.settings.expected_nodes:
            self._node(name, self._started)
        for name, node in self._nodes.items():
            limit = timedelta(seconds=2 * node.heartbeat_s)
            if now - node.last_seen > limit:
                self._trouble(
                    f"missing:{name}", f"传感器失联 {name}",
                    f"Sensor node {name} missed two heartbeats",
                    f"last heard {utc_iso(node.last_seen)}, heartbeat every "
                    f"{node.heartbeat_s} s")
        for name, flood in self._floods.items():
            if self._settle_level(flood, now):
                self._save(name)
            self._check_pump(name, flood, now)
        self._apply_flood_level()

    # --- fire --------------------------------------------------------------------------------

    def _panel_reading(self, reading: SensorReading) -> None:
        name = reading.node
        panel = self._panels.setdefault(name, PanelState())
        panel.fire = bool(reading.fire)
        panel.trouble = bool(reading.trouble)
        panel.supervisory = bool(reading.supervisory)
        if reading.zone:
            panel.zone = reading.zone
        if panel.fire and not self._fire:
            self._latch_fire(name, reading.zone, reading.ts)
        if panel.supervisory:
            self._desk.raise_alert(
                f"supervisory:{name}", kind="supervisory", severity="warning",
                title_zh=f"消防监视信号 {name}", title_en=f"Fire supervisory signal at {name}",
                detail="a sprinkler valve, pump or other supervised device is off normal")
        else:
            self._resolve(f"supervisory:{name}", "supervisory signal back to normal")
        if panel.trouble:
            self._trouble(f"trouble:{name}", f"火警回路故障 {name}",
                          f"Fire panel trouble at {name}",
                          "a supervised loop is open or shorted, or the panel reports "
                          "trouble")
        else:
            self._resolve(f"trouble:{name}", "fire panel loops back to normal")

    def _latch_fire(self, source: str, zone: str | None, since: datetime) -> None:
        self._fire = True
        self._fire_since = since
        self._fire_zone = zone
        self._fire_source = source
        log.critical("alarms: FIRE at %s (zone %s)", source, zone)
        self._publish_alarm("fire", True)
        where = f" {zone}" if zone else ""
        self._desk.raise_alert(
            "fire", kind="fire", severity="critical",
            title_zh=f"火警{where} 请立即处置", title_en=f"FIRE alarm{where}: act now",
            detail=f"fire panel {source}, zone {zone or 'unknown'}, since "
                   f"{utc_iso(since)}; barriers held open, billing suspended; call 119",
            all_at_once=True)
        self._tell(AlarmChange("fire", True, zone=zone))

    def reset_fire(self, actor: str, reason: str) -> None:
        """End the fire alarm: refused while a panel reports fire (or none has reported),
        unless ``actor`` is on the roster with a role in ``fire_reset_roles``. Audited."""
        if not reason.strip():
            raise AlarmError("a fire reset needs a reason")
        if not self._fire:
            raise AlarmError("there is no fire alarm to reset")
        panel = self.panel_reports_fire()
        if panel is None:
            raise AlarmError("fire reset refused: no fire panel has reported its state yet")
        if panel:
            raise AlarmError("fire reset refused: the fire panel still reports fire")
        person = self._desk.settings.people
        roles = {p.id: p.role for p in person}
        who = actor.removeprefix("staff:")
        if roles.get(who) not in self.settings.fire_reset_roles:
            raise AlarmError(f"fire reset refused: {actor} is not authorised (roles "
                             f"{', '.join(self.settings.fire_reset_roles)})")
        now = self._clock.now()
        with self._desk.db.atomic():
            self._audit.record(
                actor=actor, action="alarm.fire_reset", subject=f"alarm:{self.site}:fire",
                reason=reason,
                before={"active": True, "since": utc_iso(self._fire_since or now),
                        "zone": self._fire_zone, "source": self._fire_source},
                after={"active": False, "panel": "normal"})
            self._desk.resolve_key("fire", actor, f"fire reset: {reason}")
        self._fire = False
        self._fire_zone = None
        self._publish_alarm("fire", False)
        log.warning("alarms: fire alarm reset by %s: %s", actor, reason)
        self._tell(AlarmChange("fire", False))

    # --- flood -------------------------------------------------------------------------------

    def _flood_reading(self, reading: SensorReading, now: datetime) -> None:
        name = reading.node
        th = self.settings.thresholds(name)
        flood = self._floods.setdefault(name, FloodState())
        mm = reading.water_level_mm or 0
        if mm > th.full_scale_mm:
            self._trouble(f"range:{name}", f"水位读数超量程 {name}",
                          f"Water level reading out of range at {name}",
                          f"{mm} mm is above the sensor's {th.full_scale_mm} mm")
            return  # an impossible reading moves no level
        self._resolve(f"range:{name}", "level reading back in range")
        self._held = 0  # a fresh level: the nodes' levels decide from now on
        if reading.trouble:
            self._trouble(f"trouble:{name}", f"浮球开关异常 {name}",
                          f"Float switch fault at {name}",
                          "a higher float is up while a lower one is down: stuck float")
        else:
            self._resolve(f"trouble:{name}", "floats consistent again")
        self._check_stuck(name, flood, mm, now)
        flood.mm = mm
        flood.raw = th.level(mm, flood.raw)
        if flood.raw >= flood.level:
            flood.level = flood.raw
            flood.lower_since = None
        elif flood.lower_since is None:
            flood.lower_since = now
        self._settle_level(flood, now)
        if reading.pump_running is not None:
            if reading.pump_running and not flood.pump:
                flood.run_low = mm
            flood.pump = reading.pump_running
            if flood.pump:
                flood.idle_since = None
                flood.run_low = mm if flood.run_low is None else min(flood.run_low, mm)
            elif flood.idle_since is None:
                flood.idle_since = now
        self._check_pump(name, flood, now)
        self._apply_flood_level(name)

    def _settle_level(self, flood: FloodState, now: datetime) -> bool:
        """A lower level that has held long enough counts now; say if it did."""
        if flood.lower_since is not None and (
                now - flood.lower_since >= timedelta(seconds=self.settings.flood_clear_after_s)):
            flood.level = flood.raw
            flood.lower_since = None
            return True
        return False

    def _check_stuck(self, name: str, flood: FloodState, mm: int, now: datetime) -> None:
        limit = self.settings.stuck_after_s
        if flood.same_mm != mm:
            flood.same_mm, flood.same_since, flood.same_count = mm, now, 1
            self._resolve(f"stuck:{name}", "level reading moves again")
            return
        flood.same_count += 1
        since = flood.same_since or now
        if limit and mm > 0 and flood.same_count >= 3 and (
                now - since >= timedelta(seconds=limit)):
            self._trouble(f"stuck:{name}", f"水位读数卡滞 {name}",
                          f"Water level reading stuck at {name}",
                          f"{mm} mm unchanged since {utc_iso(since)}")

    def _check_pump(self, name: str, flood: FloodState, now: datetime) -> None:
        if flood.pump is None:
            return
        th = self.settings.thresholds(name)
        idle = (not flood.pump and flood.mm >= th.levels_mm[0] and flood.idle_since is not None
                and now - flood.idle_since >= timedelta(seconds=self.settings.pump_idle_grace_s))
        rise = self.settings.pump_rise_mm
        if flood.pump and flood.run_low is not None:
            if flood.mm - flood.run_low >= rise:
                flood.rising = True
            elif flood.mm - flood.run_low <= rise // 2:
                flood.rising = False
        elif not flood.pump:
            flood.rising = False
        key = f"pump:{name}"
        if idle or flood.rising:
            why = (f"pump idle with water at {flood.mm} mm (level 1 is {th.levels_mm[0]} mm)"
                   if idle else
                   f"water rose from {flood.run_low} to {flood.mm} mm while the pump runs")
            self._desk.raise_alert(
                key, kind="pump", severity="critical", title_zh=f"排水泵故障 {name}",
                title_en=f"Pump failure at {name}", detail=why, team=self.settings.flood_team)
        else:
            self._resolve(key, "pump working again")

    def _apply_flood_level(self, node: str | None = None) -> None:
        level = max([self._held, *(f.level for f in self._floods.values())])
        before = self._site_level
        if level == before:
            return
        self._site_level = level
        where = node or "site"
        mm = self._floods[node].mm if node else None
        detail = f"{mm} mm at {where}" if mm is not None else f"level {level}"
        for step in (1, 2, 3):
            if level >= step > before:
                self._raise_flood(step, detail)
        for step in (3, 2, 1):
            if before >= step > level:
                self._resolve(f"flood:{step}", f"water back below level {step} ({detail})")
        if before >= 2 or level >= 2:  # entries closed, or evacuate: the lanes hold it
            self._publish_flood(before, level)
        log.warning("alarms: flood level %d -> %d (%s)", before, level, detail)
        self._tell(AlarmChange("flood", level >= 2, level=level))

    def _raise_flood(self, level: int, detail: str) -> None:
        if level == 1:
            self._desk.raise_alert(
                "flood:1", kind="flood", severity="warning", title_zh="水位一级预警",
                title_en="Flood level 1: water rising", detail=detail,
                team=self.settings.facilities_team)
        elif level == 2:
            view, new = self._desk.raise_alert(
                "flood:2", kind="flood", severity="critical", title_zh="水位二级 暂停入场",
                title_en="Flood level 2: entries closed", detail=detail,
                team=self.settings.flood_team)
            if new:
                try:
                    phones = list(self._phones_inside())
                except Exception:
                    log.exception("alarms: phones of the cars inside not available")
                    phones = []
                self._desk.message_owners(view.alert_id, phones, MOVE_YOUR_CAR)
        else:
            self._desk.raise_alert(
                "flood:3", kind="flood", severity="critical", title_zh="水位三级 立即疏散",
                title_en="Flood level 3: evacuate now", detail=detail, all_at_once=True)

    # --- helpers -----------------------------------------------------------------------------

    def _node(self, name: str, now: datetime) -> NodeState:
        node = self._nodes.get(name)
        if node is None:
            node = NodeState(heartbeat_s=self.settings.default_heartbeat_s, last_seen=now)
            self._nodes[name] = node
        return node

    def _save(self, name: str) -> None:
        track = self._intake.tracks.get(name)
        if track is not None:
            self._memory.save(name, SavedNode(track, self._floods.get(name),
                                              self._panels.get(name)))

    def _trouble(self, key: str, title_zh: str, title_en: str, detail: str) -> None:
        self._desk.raise_alert(key, kind="trouble", severity="warning", title_zh=title_zh,
                               title_en=title_en, detail=detail,
                               team=self.settings.facilities_team)

    def _resolve(self, key: str, reason: str) -> None:
        if self._desk.open_alert(key) is not None:
            self._desk.resolve_key(key, GATEWAY, reason)

    def _publish_flood(self, before: int, level: int) -> None:
        """The retained ``alarm/flood``: active from level 2, with ``level`` only at 3 (the
        one level ``active`` cannot say), so lanes on firmware that predates the field still
        read every level-0-2 message (they refuse the level-3 one and keep what they knew)."""
        if level >= 2 > before:
            self._flood_since = self._clock.now()
        self._publish_alarm("flood", level >= 2, level=3 if level >= 3 else None)

    def _publish_alarm(self, kind: Literal["fire", "flood"], active: bool,
                       level: int | None = None) -> None:
        if self._publisher is None:
            return
        now = self._clock.now()
        if kind == "fire":
            since, zone = (self._fire_since, self._fire_zone) if active else (None, None)
        else:
            since, zone = (self._flood_since or now) if active else None, None
        message = AlarmState(kind=kind, active=active, level=level, source=GATEWAY, zone=zone,
                             since=since, ts=now)
        try:
            self._publisher.publish(topics.alarm(self.site, kind), message, qos=1, retain=True)
        except Exception:
            log.exception("alarms: alarm/%s not published", kind)

    def _tell(self, change: AlarmChange) -> None:
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:
                log.exception("alarms: listener failed on %s", change)
