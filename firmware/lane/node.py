"""Assembles a lane node in order — config, clock, devices, bus, controller — and tears it down
in reverse."""

from __future__ import annotations

from datetime import UTC, datetime

from gpiozero.pins import Factory

from broker.bus import BrokerAddress, MqttBus, Will
from broker.contract import topics
from broker.contract.messages import LaneState
from firmware.lane.camera import Camera, PlateReader
from firmware.lane.config import LaneConfig
from firmware.lane.controller import LaneController
from firmware.lane.hardware import LaneHardware
from parkguard import __version__
from parkguard.clock import Clock


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
    """One running lane: hardware, bus and controller with an explicit lifecycle."""

    def __init__(
        self,
        config: LaneConfig,
        *,
        clock: Clock,
        camera: Camera,
        reader: PlateReader,
        pin_factory: Factory | None = None,
    ) -> None:
        self.config = config
        self.hardware = LaneHardware(config.pins, pin_factory=pin_factory)
        self.bus = MqttBus(
            BrokerAddress.from_settings(config.broker),
            client_id=f"lane-{config.site}-{config.lane}",
            will=offline_will(config),
        )
        self.controller = LaneController(
            config, clock=clock, hardware=self.hardware, camera=camera, reader=reader, bus=self.bus
        )

    def start(self) -> LaneNode:
        self.bus.start()
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
        self.bus.stop()
        self.hardware.close()

    def __enter__(self) -> LaneNode:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
