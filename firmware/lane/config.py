"""A lane node's configuration: which lane it is, where the broker is, which pins do what."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, NonNegativeInt, model_validator

from firmware.lane.devices.picamera import CAPTURE_SIZE
from parkguard.configfile import BrokerSettings, CommandKeyHex, SiteKeyHex, StrictModel, reveal
from parkguard.core.plates import MatchPolicy

PinName = int | str
#: The smallest plate region (width, height): the detector's own input is 128 x 96.
MIN_REGION = (128, 96)


BounceSeconds = float | None


class BounceTimes(StrictModel):
    """How long each input must hold a new level before the lane believes it (seconds; None:
    no debounce). gpiozero hands it to the pin driver as the input's ``bounce_time``. A
    chattering loop relay would otherwise read as several cars (a tailgate), a bouncing
    help button as several requests."""

    arming_loop: BounceSeconds = Field(
        default=0.05, ge=0, le=1,
        description="loop detector relay: contact chatter lasts a few ms, two cars on one "
                    "loop are hundreds of ms apart")
    safety_loop: BounceSeconds = Field(default=0.05, ge=0, le=1,
                                       description="as the arming loop (it counts tailgates)")
    up_limit: BounceSeconds = Field(default=0.02, ge=0, le=1,
                                    description="limit switch: a microswitch bounces ~1-5 ms")
    down_limit: BounceSeconds = Field(default=0.02, ge=0, le=1,
                                      description="limit switch, as up_limit")
    help_button: BounceSeconds = Field(default=0.05, ge=0, le=1,
                                       description="push button: one press, one help request")
    fire_input: BounceSeconds = Field(
        default=0.05, ge=0, le=1,
        description="fire panel relay: short, so a fire raises the barrier at once")


class PinMap(StrictModel):
    """BCM GPIO numbers (or gpiozero pin names) of the lane's wiring; see hardware/lane-pins.md."""

    arming_loop: PinName = Field(default=17, description="loop detector A output (vehicle present)")
    safety_loop: PinName = Field(default=27, description="loop detector B output under the boom")
    barrier_relay: PinName = Field(
        default=22, description="hold controller: relay that holds the barrier up; "
                                "pulse controller: the OPEN pulse output")
    barrier_close: PinName = Field(
        default=24, description="pulse controller only: the CLOSE pulse output")
    up_limit: PinName = Field(default=16, description="limit switch: boom fully up (active high)")
    down_limit: PinName = Field(default=26,
                                description="limit switch: boom fully down (active high)")
    help_button: PinName = Field(default=12, description="intercom help button (active high)")
    light_green: PinName = Field(default=25, description="lane light, green lamp relay")
    light_red: PinName = Field(default=4, description="lane light, red lamp relay")
    fire_input: PinName | None = Field(
        default=None, exclude_if=lambda pin: pin is None,
        description="optional hard-wired fire input (fire panel's alarm relay, active high): "
                    "raises and holds the barrier without the broker; None: not wired")
    bounce_time: BounceTimes = Field(
        default_factory=BounceTimes, exclude_if=lambda times: times == BounceTimes(),
        description="debounce of each input, [pins.bounce_time] (left out of the config "
                    "dump while it is the default)")

    @model_validator(mode="after")
    def _pins_distinct(self) -> Self:
        pins = {"arming_loop": self.arming_loop, "safety_loop": self.safety_loop,
                "barrier_relay": self.barrier_relay, "barrier_close": self.barrier_close,
                "up_limit": self.up_limit, "down_limit": self.down_limit,
                "help_button": self.help_button, "light_green": self.light_green,
                "light_red": self.light_red, "fire_input": self.fire_input}
        seen: dict[str, str] = {}
        for role, pin in pins.items():
            if pin is None:
                continue
            key = str(pin).upper().removeprefix("GPIO").removeprefix("BCM")
            if key in seen:
                raise ValueError(f"pins.{role} uses pin {pin}, already used by pins.{seen[key]}")
            seen[key] = role
        return self


class LaneTiming(StrictModel):
    """How long the lane waits for things, in seconds of the lane's clock."""

    decide_deadline_ms: int = Field(default=300, ge=20, le=10_000,
                                    description="after this the lane decides alone")
    pass_timeout_s: float = Field(default=120.0, gt=0, le=3600,
                                  description="barrier stays open this long waiting for the car")
    limit_timeout_s: float = Field(default=6.0, gt=0, le=120,
                                   description="the boom must reach its limit switch within "
                                               "this (only with barrier.limit_switches)")
    refused_timeout_s: float = Field(default=600.0, gt=0, le=86_400,
                                     description="a refused car that neither leaves nor gets "
                                                 "help is reported (fault refused_waiting) "
                                                 "after this")
    kiosk_timeout_s: float = Field(default=60.0, gt=0, le=600,
                                   description="the driver has this long to confirm at the "
                                               "kiosk (last four digits or one-time code)")


class BarrierSettings(StrictModel):
    """Which kind of barrier controller the lane drives (see hardware/lane-wiring.md)."""

    kind: Literal["hold", "pulse"] = Field(
        default="hold",
        description="hold: one relay held on keeps the boom up (pins.barrier_relay); "
                    "pulse: a pulse on pins.barrier_relay opens, one on pins.barrier_close "
                    "closes")
    pulse_ms: int = Field(default=500, ge=50, le=5000,
                          description="pulse controller: how long each pulse lasts")
    limit_switches: bool = Field(
        default=False,
        description="the up and down limit switches are wired: the lane then checks that "
                    "the boom reaches them within timing.limit_timeout_s "
                    "(fault barrier_limit_timeout). Turn on once commissioned")


class KioskSettings(StrictModel):
    """The no-plate kiosk: keypad for a phone number, scanner for QR tickets and payment
    codes (see docs/lane.md)."""

    site_key: SiteKeyHex | None = Field(
        default=None,
        description="hex key (16 bytes or more, the site's no-plate key, the same on every "
                    "lane and the gateway) that turns a phone number into a no-plate "
                    "identity; without it the keypad takes no phone numbers")
    confirm: Literal["last4", "otp"] = Field(
        default="last4",
        description="how an exit confirms a phone identity: its last four digits, or a "
                    "one-time code sent to the phone (needs a code sender)")


class WatchdogSettings(StrictModel):
    """systemd watchdog pings (sd_notify); only active when systemd sets NOTIFY_SOCKET."""

    enabled: bool = Field(default=True, description="ping systemd's watchdog when run under it")


class CameraSettings(StrictModel):
    """Which camera and plate reader the lane uses (docs/reader.md)."""

    type: Literal["simulated", "tflite", "picamera"] = Field(
        description="required: picamera: the Pi camera (picamera2) and the TFLite reader (a "
                    "real lane); simulated: the simulator's ground truth, tflite: our TFLite "
                    "reader on rendered frames (bench lanes, cameras the simulator supplies; "
                    "firmware.lane.devices.cameras)")
    models: Path | None = Field(default=None,
                                description="directory with reader.json and the .tflite files; "
                                            "default: the repo's models/")
    fuse_frames: int = Field(default=3, ge=1, le=5,
                             description="most frames read and fused per arriving car, when the "
                                         "first frame's read is not trusted")
    trust_confidence: float = Field(
        default=0.98, ge=0.0, le=1.0,
        description="a first-frame read at least this confident is used alone (the barrier "
                    "goes up sooner); below it the lane reads up to fuse_frames frames and "
                    "fuses them; 1 fuses every car")
    recogniser: Literal["fp16", "int8"] = Field(
        default="int8",
        description="int8: the int8 quantisation of the recogniser, ~4x faster per plate "
                    "crop, so the reader reads two crops of each plate and still beats fp16 "
                    "reading one, in time and accuracy; fp16: the export it came from, "
                    "reading the same two crops ~2x slower (models/README.md)")
    plate_region: tuple[NonNegativeInt, NonNegativeInt, NonNegativeInt, NonNegativeInt] | None = (
        Field(default=None, exclude_if=lambda region: region is None,
              description="left, top, right, bottom in pixels of the camera's frames: where the "
                          "plate of a car stopped on the arming loop appears, about three plate "
                          "widths wide; the reader looks for the plate there only. Required "
                          "with the Pi camera (its 1280x720 frames are too wide for the "
                          "detector); `parkguard read --find-region` suggests it "
                          "(hardware/lane-commissioning.md)"))

    @model_validator(mode="after")
    def _plate_region_fits(self) -> Self:
        region = self.plate_region
        if region is None:
            if self.type == "picamera":
                raise ValueError(
                    "plate_region is required with type = \"picamera\": take a still of a "
                    "car on the arming loop and run `parkguard read --find-region` on it "
                    "(hardware/lane-commissioning.md)")
            return self
        left, top, right, bottom = region
        if right - left < MIN_REGION[0] or bottom - top < MIN_REGION[1]:
            raise ValueError(
                f"plate_region {list(region)} is (left, top, right, bottom) and must be at "
                f"least {MIN_REGION[0]}x{MIN_REGION[1]} px")
        if self.type == "picamera" and (right > CAPTURE_SIZE[0] or bottom > CAPTURE_SIZE[1]):
            raise ValueError(
                f"plate_region {list(region)} reaches past the Pi camera's "
                f"{CAPTURE_SIZE[0]}x{CAPTURE_SIZE[1]} frames")
        return self


class CommandSettings(StrictModel):
    """How the lane checks the gateway's signed commands (see docs/lane-commands.md)."""

    hmac_key: CommandKeyHex | None = Field(
        default=None,
        description="hex HMAC key of this lane, when the broker section names no bundle; "
                    "a bundle's hmac_key takes precedence. Without a key every command is refused",
    )
    clock_skew_s: float = Field(default=5.0, ge=0, le=120,
                                description="tolerated disagreement of gateway and lane clocks")
    max_window_s: float = Field(default=300.0, gt=0, le=3600,
                                description="longest expires - issued the lane accepts")


class JournalSettings(StrictModel):
    """Where the lane keeps its SQLite journal (events, outbox, alarms, replica)."""

    path: Path | None = Field(
        default=None,
        description="SQLite file; default var/lane-{lane}.db (relative to the working "
                    "directory). On a Pi put it on the SD card's data partition",
    )
    flush_timeout_s: float = Field(default=5.0, ge=0, le=120,
                                   description="at stop, how long to wait for unsent events "
                                               "to be acknowledged when the broker is there")


class LaneConfig(StrictModel):
    """Everything one lane node needs to run."""

    site: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="site slug")
    lane: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="lane id, e.g. in1")
    direction: Literal["entry", "exit"]
    broker: BrokerSettings = BrokerSettings()
    pins: PinMap = PinMap()
    barrier: BarrierSettings = BarrierSettings()
    timing: LaneTiming = LaneTiming()
    camera: CameraSettings = Field(
        description="required: which camera the lane has (a lane without one must not run a "
                    "simulated camera that never sees a plate)")
    commands: CommandSettings = CommandSettings()
    journal: JournalSettings = JournalSettings()
    kiosk: KioskSettings = KioskSettings()
    watchdog: WatchdogSettings = WatchdogSettings()
    matching: MatchPolicy = Field(
        default_factory=MatchPolicy,
        description="plate matcher for offline exits: use the gateway's [matching] values")

    def journal_path(self) -> Path:
        """The journal file: ``journal.path``, else ``var/lane-{lane}.db``."""
        if self.journal.path is not None:
            return self.journal.path
        return Path("var") / f"lane-{self.lane}.db"

    def command_key(self) -> bytes | None:
        """The key that verifies this lane's commands: the device bundle's, else
        ``commands.hmac_key``, else None (the lane then refuses every command)."""
        if self.broker.bundle is not None:
            from broker.provision.bundle import load_bundle

            key = load_bundle(self.broker.bundle).hmac_key_bytes()
            if key is not None:
                return key
        configured = reveal(self.commands.hmac_key)
        return None if configured is None else bytes.fromhex(configured)
