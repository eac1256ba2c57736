"""One lane on mock pins, the in-memory broker and a manual clock: no sockets, no sleeps.

:meth:`MemoryLane.settle` returns once the lane has nothing left to do: every message
published so far has been handled, the outbox has published every event, and the lane's
worker is blocked with nothing to do. So "the lane did not do X" is asserted after a settle
(and a clock step), never after a sleep. Tests that need the real broker's semantics (ACLs,
TLS, packet limits, process kills) keep Mosquitto.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from gpiozero.pins.mock import MockFactory

from firmware.lane.config import CameraSettings, JournalSettings, LaneConfig
from firmware.lane.controller import LaneController
from firmware.lane.devices.camera import Camera, PlateReader
from firmware.lane.devices.display import Display, RecordingDisplay
from firmware.lane.kiosk import InputSource
from firmware.lane.node import LaneNode, offline_will
from parkguard.clock import ManualClock
from simulator.camera import GroundTruthReader, SimulatedCamera
from simulator.driver import SimulatedLaneWiring
from tests.conftest import SITE_START, TEST_SITE
from wire.contract import topics
from wire.memory import MemoryBroker, MemoryBus


class MemoryLane:
    """A lane node wired to a :class:`MemoryBroker`, with a watcher of its events."""

    def __init__(self, tmp_path: Path, *, lane: str = "in9",
                 direction: Literal["entry", "exit"] = "entry", camera: Camera | None = None,
                 reader: PlateReader | None = None, display: Display | None = None,
                 keypad: InputSource | None = None, scanner: InputSource | None = None,
                 factory: MockFactory | None = None,
                 broker: MemoryBroker | None = None, clock: ManualClock | None = None,
                 **settings: Any) -> None:
        self.broker = broker or MemoryBroker()
        self._own_broker = broker is None
        self.clock = clock or ManualClock(SITE_START)
        self.config = LaneConfig(site=TEST_SITE, lane=lane, direction=direction,
                                 journal=JournalSettings(path=tmp_path / f"{lane}.db"),
                                 **{"camera": CameraSettings(type="simulated"), **settings})
        # a SimulatedCamera (``show`` a plate) unless the test brings its own
        self.camera: Any = SimulatedCamera(clock=self.clock) if camera is None else camera
        self.factory = factory or MockFactory()
        self.bus = self.broker.bus(f"lane-{TEST_SITE}-{lane}", will=offline_will(self.config))
        self.node = LaneNode(self.config, clock=self.clock, camera=self.camera,
                             reader=reader or GroundTruthReader(), pin_factory=self.factory,
                             display=display, kiosk=keypad, scanner=scanner, bus=self.bus)
        self.pins = SimulatedLaneWiring(self.config, self.factory)
        self._lock = threading.Lock()
        self.messages: list[tuple[str, bytes]] = []
        self.watcher: MemoryBus = self.broker.bus(f"watch-{lane}")
        leaves: tuple[Literal["event", "state", "decide"], ...] = ("event", "state", "decide")
        for leaf in leaves:
            self.watcher.subscribe(topics.all_lane(TEST_SITE, leaf), self._keep)

    def _keep(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.messages.append((topic, payload))

    @property
    def relay_up(self) -> bool:
        return bool(self.pins.relay.state)

    @property
    def controller(self) -> LaneController:
        return self.node.controller

    @property
    def screen(self) -> RecordingDisplay:
        """The lane's display (a :class:`RecordingDisplay` unless the test brought another)."""
        shown = self.node.controller.screen
        if not isinstance(shown, RecordingDisplay):
            raise TypeError(f"lane {self.config.lane} has a {type(shown).__name__} display")
        return shown

    def __enter__(self) -> MemoryLane:
        self.watcher.start()
        self.node.start()
        self.settle()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.node.stop()
        self.watcher.stop()
        if self._own_broker:
            self.broker.close()

    def settle(self, timeout: float = 10.0) -> None:
        """Return once the bus, the outbox and the worker have nothing left to do."""
        controller = self.node.controller
        for _ in range(1000):
            before = (self.broker.published, controller.events_emitted)
            self.broker.settle(timeout)
            controller.wait_idle(timeout)
            if not controller.outbox.flush(timeout):
                raise TimeoutError("the lane's outbox did not empty")
            self.broker.settle(timeout)
            if ((self.broker.published, controller.events_emitted) == before
                    and controller.waiter.idle()):
                return
        raise AssertionError("the lane never settled")

    def step(self, **delta: float) -> None:
        """Move the lane's clock on (``step(seconds=5)``), then settle."""
        self.clock.advance(timedelta(**delta))
        self.settle()

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The lane's events the watcher saw, in order (only ``kind`` if given)."""
        with self._lock:
            found = [json.loads(p) for t, p in self.messages if t.endswith("/event")]
        return [e for e in found if kind is None or e["type"] == kind]

    def types(self) -> list[str]:
        return [event["type"] for event in self.events()]

    def faults(self) -> list[str]:
        return [event["code"] for event in self.events("fault")]

    def published(self, suffix: str) -> list[bytes]:
        """Payloads the lane published on a topic ending in ``suffix``."""
        with self._lock:
            return [p for t, p in self.messages if t.endswith(suffix)]
