"""Assembles a lane node in order — config, clock, devices, bus, controller — and tears it down
in reverse."""

from __future__ import annotations

import logging
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory

from broker.provision.bundle import broker_address
from firmware.lane.commands import CommandVerifier, SpentNonces
from firmware.lane.config import LaneConfig
from firmware.lane.controller import LaneController
from firmware.lane.devices.camera import Camera, PlateReader
from firmware.lane.devices.display import Display
from firmware.lane.devices.hardware import LaneHardware
from firmware.lane.evidence import EvidenceKeeper, EvidenceServer, lane_store
from firmware.lane.journal import Journal
from firmware.lane.kiosk import Confirmation, DeviceInput, InputSource
from firmware.lane.replica import LaneReplica
from parkguard import __version__
from parkguard.clock import Clock
from parkguard.errors import BrokerError
from parkguard.evidence import EvidenceStore
from parkguard.systemd import Notifier, Watchdog, watchdog_period_s
from wire.bus import Bus
from wire.contract import topics
from wire.contract.messages import LaneState
from wire.mqtt import MqttBus, Will

log = logging.getLogger(__name__)

BROKER_RETRY_S = 5.0
"""How long each attempt to reach the broker at start waits before the lane retries."""


def command_verifier(config: LaneConfig, clock: Clock,
                     spent: SpentNonces | None = None) -> CommandVerifier | None:
    """The checker for this lane's signed commands, or None when it has no key (every
    command is then refused: an unkeyed lane must not obey whoever can publish).
    ``spent``: where accepted nonces outlive a restart (the lane's journal)."""
    key = config.command_key()
    if key is None:
        return None
    settings = config.commands
    return CommandVerifier(key, clock, config.lane, skew_s=settings.clock_skew_s,
                           max_window_s=settings.max_window_s, spent=spent)


def offline_will(config: LaneConfig) -> Will:
    """The retained 'offline' state the broker publishes if the lane vanishes.

    Its timestamp is when the will was registered: the broker cannot know when we died.
    """
    state = LaneState(
        lane=config.lane, online=False, direction=config.direction, firmware=__version__,
        ts=datetime.now(UTC),
    )
    return Will(topics.lane_state(config.site, config.lane), state.to_json(), qos=1, retain=True)


class LaneNode:
    """One running lane: hardware, journal, replica, bus and controller with an explicit
    lifecycle.

    The lane starts without a broker: the barrier works, decisions come from the replica
    and events wait in the journal, while a thread keeps trying to connect.

    Production connects an :class:`~wire.mqtt.MqttBus` to ``[broker]``; tests may pass any
    :class:`~wire.bus.Bus` (the in-memory one, with the same client id and Last Will).
    """

    def __init__(
        self,
        config: LaneConfig,
        *,
        clock: Clock,
        camera: Camera,
        reader: PlateReader,
        pin_factory: Factory | None = None,
        display: Display | None = None,
        kiosk: InputSource | None = None,
        scanner: InputSource | None = None,
        confirmation: Confirmation | None = None,
        bus: Bus | None = None,
    ) -> None:
        self.config = config
        self.hardware = LaneHardware(config.pins, pin_factory=pin_factory,
                                     barrier=config.barrier)
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        journal_path = self._journal_path(config, pin_factory)
        self.journal = Journal(journal_path)
        self.replica = LaneReplica(site=config.site, lane=config.lane, journal=self.journal,
                                   policy=config.matching)
        self.replica.load()
        self._stopping = threading.Event()
        self._connector: threading.Thread | None = None
        self._devices = [source for source in (kiosk, scanner)  # USB keypad, scanner
                         if isinstance(source, DeviceInput)]
        self.watchdog: Watchdog | None = None
        self.bus: Bus = bus or MqttBus(
            broker_address(config.broker),
            client_id=f"lane-{config.site}-{config.lane}",
            will=offline_will(config),
        )
        self.evidence: EvidenceStore | None = None  # parkguard.evidence
        evidence = None
        if config.evidence.enabled:
            where = config.evidence.path or journal_path.parent / f"evidence-{config.lane}"
            self.evidence = lane_store(config.evidence, where)
            evidence = (EvidenceKeeper(self.evidence, config.evidence, lane=config.lane),
                        EvidenceServer(self.evidence, site=config.site, lane=config.lane,
                                       bus=self.bus, clock=clock,
                                       chunk_bytes=config.evidence.chunk_bytes))
        self.controller = LaneController(
            config, clock=clock, hardware=self.hardware, camera=camera, reader=reader, bus=self.bus,
            journal=self.journal, replica=self.replica, display=display,
            verifier=command_verifier(config, clock, self.journal), kiosk=kiosk, scanner=scanner,
            confirmation=confirmation, evidence=evidence,
        )

    def _journal_path(self, config: LaneConfig, pin_factory: Factory | None) -> Path:
        """``journal.path`` if set; a lane on mock pins without one (simulator, tests) gets a
        private scratch journal, so simulated lanes never share ``var/lane-{lane}.db`` with
        another run; a real lane uses ``var/lane-{lane}.db``."""
        if config.journal.path is None and isinstance(pin_factory, MockFactory):
            self._scratch = tempfile.TemporaryDirectory(prefix=f"parkguard-lane-{config.lane}-")
            return Path(self._scratch.name) / "journal.db"
        return config.journal_path()

    def start(self) -> LaneNode:
        try:
            self.bus.start(timeout=BROKER_RETRY_S)
        except BrokerError as error:
            if isinstance(self.bus, MqttBus) and self.bus.refused is not None:
                raise  # wrong login or certificate: an installer must fix it, retrying won't
            log.warning("lane %s: %s; working offline and retrying", self.config.lane, error)
            self._connector = threading.Thread(target=self._keep_connecting, daemon=True,
                                               name=f"connect-{self.config.lane}")
            self._connector.start()
        self.controller.start()
        for device in self._devices:
            device.start()
        if self.config.watchdog.enabled:
            self.watchdog = Watchdog(Notifier.from_environment(), watchdog_period_s(),
                                     self.controller.healthy, what=f"lane {self.config.lane}")
            self.watchdog.start(status=f"lane {self.config.lane} running")
        return self

    def _keep_connecting(self) -> None:
        while not self._stopping.is_set():
            try:
                self.bus.start(timeout=BROKER_RETRY_S)
                log.info("lane %s: broker reached", self.config.lane)
                return
            except BrokerError as error:
                log.info("lane %s: broker still unreachable: %s", self.config.lane, error)
                self._stopping.wait(1.0)

    def stop(self) -> None:
        self._stopping.set()
        if self.watchdog is not None:
            self.watchdog.stop()
        for device in self._devices:
            device.close()
        self.controller.stop()
        if self._connector is not None:
            self._connector.join(timeout=BROKER_RETRY_S + 2)
        self.bus.stop()
        self.journal.close()
        self.hardware.close()
        if self._scratch is not None:
            self._scratch.cleanup()

    def __enter__(self) -> LaneNode:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
