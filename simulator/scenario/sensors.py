"""Sensor nodes in a scenario: the fire panel's node and the flood node as the gateway meets
them on the bus (readings, heartbeats, a Last Will), and the staff who acknowledge alerts.

The nodes here speak the wire contract under their own broker logins; the MicroPython
firmware itself is run by ``tests/test_fire_end_to_end.py`` and the sensor tests. Time jumps
from car to car, so each node sends a heartbeat reading whenever the clock is about to move
more than :data:`HEARTBEAT_HOP` past its last one (the gateway flags a node silent for two
heartbeats). The safety file is written for the run: a guard and a captain always on duty,
no contacts (nothing leaves the machine).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from parkguard.clock import ManualClock
from simulator.driver import LaneStuck
from wire.contract import topics
from wire.contract.messages import SensorReading, SensorState
from wire.mqtt import BrokerAddress, MqttBus, Will

NODES: dict[str, Literal["fire_panel", "flood"]] = {"fire1": "fire_panel", "flood1": "flood"}
HEARTBEAT_S = 3600
HEARTBEAT_HOP = timedelta(minutes=45)
GUARD, CAPTAIN = "sim-guard", "sim-captain"

SAFETY_FILE = """\
[alerts]
timezone = "Asia/Shanghai"
repeat_min = 30
shifts = [{ name = "a", start = 08:00:00 }, { name = "b", start = 16:00:00 },
          { name = "c", start = 00:00:00 }]

[[alerts.people]]
id = "sim-guard"
name = "值班保安 guard on duty"
role = "guard"

[[alerts.people]]
id = "sim-captain"
name = "保安队长 captain"
role = "captain"

[alarms]
fire_reset_roles = ["captain", "manager"]
"""


class NoPhonesFilter(logging.Filter):
    """The run's roster has no phones on purpose (nothing leaves the machine): drop the
    desk's complaint about that, once per alert and person, and keep every other line."""

    QUIET = ("has no contact channel", "nobody on duty to notify")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in self.QUIET)


STAFF_PEOPLE = """
[[alerts.people]]
id = "sim-leader"
name = "班长 squad leader"
role = "squad_leader"
teams = ["fire_fighting", "cordon"]

[[alerts.people]]
id = "sim-guard-b"
name = "接班保安 next guard"
role = "guard"
teams = ["evacuation"]
"""
"""With ``[[staff]]`` events: the squad leader an accident calls beside the guard, and the
fire plan's response teams (a drill alerts each team)."""


def write_safety_file(workdir: Path, *, staff: bool = False) -> Path:
    path = workdir / "safety.toml"
    path.write_text(SAFETY_FILE + (STAFF_PEOPLE if staff else ""), encoding="utf-8")
    return path


class SensorNode:
    """One node on the bus: its state (retained, Last Will offline) and its readings."""

    def __init__(self, site: str, node: str, address: BrokerAddress, clock: ManualClock,
                 database: Path) -> None:
        self.site, self.node, self.kind = site, node, NODES[node]
        self._address, self._clock, self._database = address, clock, database
        self.seq = 0
        self.last_sent: datetime | None = None
        self.fire = False
        self.water_mm = 0
        self.bus: MqttBus | None = None

    def _state(self, online: bool) -> SensorState:
        return SensorState(node=self.node, online=online, heartbeat_s=HEARTBEAT_S,
                           ts=self._clock.now())

    def power_on(self) -> None:
        will = Will(topics.sensor_state(self.site, self.node),
                    self._state(False).to_json())
        self.bus = MqttBus(self._address, client_id=f"sensor-{self.site}-{self.node}",
                           will=will).start()
        self.bus.publish_and_wait(topics.sensor_state(self.site, self.node), self._state(True),
                                  retain=True)
        self.send()

    def die(self) -> None:
        """The node's power or Wi-Fi goes: no goodbye, the broker sends its Last Will."""
        if self.bus is not None:
            self.bus.drop()
            self.bus = None

    def stop(self) -> None:
        if self.bus is not None:
            self.bus.stop()
            self.bus = None

    def send(self, *, wait: bool = True) -> None:
        """A reading of what the node sees now (also its heartbeat)."""
        if self.bus is None:
            return
        self.seq += 1
        now = self._clock.now()
        if self.kind == "fire_panel":
            reading = SensorReading(node=self.node, seq=self.seq, ts=now, kind="fire_panel",
                                    fire=self.fire, trouble=False, supervisory=False,
                                    zone="b2-east" if self.fire else None)
        else:
            reading = SensorReading(node=self.node, seq=self.seq, ts=now, kind="flood",
                                    water_level_mm=self.water_mm)
        self.bus.publish_and_wait(topics.sensor_reading(self.site, self.node), reading)
        self.last_sent = now
        if wait:
            self._until_taken()

    def _until_taken(self, timeout: float = 60.0) -> None:
        """Until the gateway has acted on this reading (it keeps each node's count)."""
        deadline = time.monotonic() + timeout
        while self._stored_seq() < self.seq:
            if time.monotonic() > deadline:
                raise LaneStuck(f"the gateway did not take {self.node}'s reading {self.seq}")
            time.sleep(0.002)

    def _stored_seq(self) -> int:
        db = sqlite3.connect(f"file:{self._database}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT json_extract(state, '$.track.last') FROM sensor_nodes "
                             "WHERE node = ?", [self.node]).fetchone()
        except sqlite3.OperationalError:
            return 0
        finally:
            db.close()
        return int(row[0]) if row and row[0] is not None else 0
