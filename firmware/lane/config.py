"""A lane node's configuration: which lane it is, where the broker is, which pins do what."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, NonNegativeInt, SecretStr, model_validator

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
                                   description="the driver has this long to type a phone's "
                                               "last four digits at the kiosk (a one-time "
                                               "code lives as long as the gateway's [otp] says)")
    state_heartbeat_s: float = Field(
        default=10.0, ge=1, le=60,
        description="the lane repeats its retained state at least this often when nothing "
                    "changes, so the control room can tell a quiet lane from a silent one "
                    "(keep [web] lane_stale_s above 3 of these; docs/lane.md, heartbeat)")


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
        description="how a phone identity is confirmed: last4: at exits, its last four "
                    "digits; otp: at entries and exits, a one-time code the gateway texts to "
                    "the phone (gateway [otp]); with the gateway silent an entry goes ahead "
                    "by number and an exit asks for the last four digits")
    contact_consent: str | None = Field(
        default=None, pattern=r"^[a-z0-9]{1,8}$",
        description="otp: offer the owner contact register at the code prompt, naming the "
                    "wording version the driver agrees to by typing 1 after the code (the "
                    "gateway's [contacts], docs/contacts.md); absent: not offered")
    otp_wait_ms: int = Field(default=3000, ge=100, le=30_000,
                             description="otp: how long the lane waits for the gateway to "
                                         "say the code was texted, or whether it was right")
    keypad: str | None = Field(
        default=None, min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$",
        exclude_if=lambda spec: spec is None,
        description="the USB keypad: /dev/input/by-id/...-event-kbd (stable across reboots "
                    "and USB ports) or the name the device reports; none: no keypad "
                    "(hardware/lane-wiring.md)")
    scanner: str | None = Field(
        default=None, min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$",
        exclude_if=lambda spec: spec is None,
        description="the USB QR/barcode scanner, as keypad; the same value as keypad: one "
                    "device that is both")
    keypad_idle_s: float = Field(default=30.0, ge=2, le=600,
                                 description="a number left half-typed this long is dropped")
    scan_gap_s: float = Field(default=0.5, ge=0.05, le=5,
                              description="a scan with a longer pause between two characters "
                                          "was cut short: dropped")

    @model_validator(mode="after")
    def _device_paths(self) -> Self:
        for name in ("keypad", "scanner"):
            spec = getattr(self, name)
            if spec is not None and spec.startswith("/") and not spec.startswith("/dev/input/"):
                raise ValueError(f"{name} {spec!r}: a path must be under /dev/input/ "
                                 "(best /dev/input/by-id/...)")
        return self


class WatchdogSettings(StrictModel):
    """systemd watchdog pings (sd_notify); only active when systemd sets NOTIFY_SOCKET."""

    enabled: bool = Field(default=True, description="ping systemd's watchdog when run under it")


class CameraSettings(StrictModel):
    """Which camera and plate reader the lane uses (docs/reader.md)."""

    type: Literal["simulated", "tflite", "picamera", "rtsp"] = Field(
        description="required: picamera: the Pi camera (picamera2) and the TFLite reader (a "
                    "real lane); rtsp: an IP camera's RTSP stream (url) and the TFLite reader "
                    "(a real lane); simulated: the simulator's ground truth, tflite: our TFLite "
                    "reader on rendered frames (bench lanes, cameras the simulator supplies; "
                    "firmware.lane.devices.cameras)")
    url: str | None = Field(
        default=None, max_length=512, exclude_if=lambda url: url is None,
        description="rtsp only (required there): the camera's stream, rtsp://host[:port]/path, "
                    "best its sub-stream at 1280x720 (hardware/lane-wiring.md); no user name "
                    "or password in it: those go in username and password")
    username: str | None = Field(default=None, min_length=1, max_length=64,
                                 exclude_if=lambda name: name is None,
                                 description="rtsp only: the camera's login, if it asks for one")
    password: SecretStr | None = Field(
        default=None, min_length=1, max_length=128, exclude_if=lambda secret: secret is None,
        description="rtsp only: the camera login's password (never printed or logged)")
    transport: Literal["tcp", "udp"] = Field(
        default="tcp",
        description="rtsp only: RTP over the RTSP connection (tcp: no lost packets, so no "
                    "smeared frames) or over UDP")
    timeout_s: float = Field(
        default=5.0, ge=0.5, le=60,
        description="rtsp only: longest wait to connect and between two packets before the "
                    "camera counts as down (fault) and is reconnected")
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
    def _rtsp_stream(self) -> Self:
        """An RTSP camera needs a stream URL without a login in it (the URL is printed in
        logs and faults; the password is a secret field); other cameras take none."""
        if self.type != "rtsp":
            if self.url is not None or self.username is not None or self.password is not None:
                raise ValueError(f"url, username and password are for type = \"rtsp\", not "
                                 f"{self.type!r}")
            return self
        if self.url is None:
            raise ValueError("url is required with type = \"rtsp\": the camera's stream, "
                             "e.g. rtsp://192.0.2.10:554/Streaming/Channels/102")
        parts = urlsplit(self.url)
        if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
            raise ValueError("url must be rtsp://host[:port]/path (or rtsps://)")
        if "@" in parts.netloc:
            raise ValueError("url must not carry a user name or password: put them in "
                             "camera.username and camera.password")
        if (self.password is None) != (self.username is None):
            raise ValueError("username and password go together (or neither)")
        return self

    @model_validator(mode="after")
    def _plate_region_fits(self) -> Self:
        region = self.plate_region
        if region is None:
            if self.type in ("picamera", "rtsp"):
                raise ValueError(
                    f"plate_region is required with type = \"{self.type}\": take a still of a "
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


class DisplaySettings(StrictModel):
    """The lane's display board (docs/lane.md, hardware/lane-wiring.md)."""

    type: Literal["none", "led_rs485"] = Field(
        default="none",
        description="led_rs485: a 4-line LED board on RS-485 (firmware.lane.devices."
                    "led_display, hardware/lane-display-protocol.md); none: no display wired "
                    "(the lane keeps what it would show in memory)")
    port: str | None = Field(
        default=None, min_length=1, max_length=256, exclude_if=lambda port: port is None,
        description="led_rs485 (required there): the RS-485 adapter's serial device, best "
                    "its /dev/serial/by-id/... name (stable across reboots); or a pyserial URL "
                    "(rfc2217://host:port) for an RS-485-to-Ethernet converter")
    baud: Literal[2400, 4800, 9600, 19200, 38400, 57600, 115200] = Field(
        default=9600, description="led_rs485: the board's baud rate (8N1)")
    address: int = Field(default=0, ge=0, le=255,
                         description="led_rs485: the board's address (DA) on the bus")
    columns: int = Field(
        default=8, ge=4, le=64,
        description="led_rs485: half-width characters one line shows without moving (a 64-px "
                    "wide board with its 16-px font: 8, i.e. 4 Chinese characters); longer "
                    "lines scroll")
    reply_timeout_ms: int = Field(
        default=300, ge=0, le=2000,
        description="led_rs485: how long to wait for the board's reply to each line (a "
                    "board that does not answer is a fault); 0 when the board is set to send "
                    "no replies")

    @model_validator(mode="after")
    def _port_for_rs485(self) -> Self:
        if self.type == "led_rs485":
            if self.port is None:
                raise ValueError("port is required with type = \"led_rs485\": the RS-485 "
                                 "adapter, e.g. /dev/serial/by-id/usb-FTDI_...-if00-port0")
            if not (self.port.startswith("/") or "://" in self.port):
                raise ValueError("port must be a device path (/dev/...) or a pyserial URL "
                                 "(rfc2217://host:port)")
        elif self.port is not None:
            raise ValueError(f"port is for type = \"led_rs485\", not {self.type!r}")
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


class EvidenceSettings(StrictModel):
    """The lane's store of evidence images: a JPEG of the plate crop and of the whole view
    for every read, served to the gateway on request (docs/evidence.md). Bounded by count
    and by bytes; the oldest read's images go first."""

    enabled: bool = Field(default=True, description="keep images of reads at all")
    path: Path | None = Field(
        default=None,
        description="directory of the store; default evidence-{lane}/ beside the journal "
                    "(the lane's state directory)")
    max_reads: int = Field(default=5000, ge=1, le=1_000_000,
                           description="reads kept at most (each: plate crop and whole view)")
    max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024 * 1024, le=64 * 1024**3,
                           description="bytes of JPEG kept at most")
    car_width: int = Field(default=960, ge=160, le=1920,
                           description="the whole view is scaled down to at most this many "
                                       "pixels wide before it is kept")
    quality: int = Field(default=80, ge=30, le=95, description="JPEG quality, 30-95")
    chunk_bytes: int = Field(default=96 * 1024, ge=1024, le=144 * 1024,
                             description="JPEG bytes per evidence/reply piece (base64 makes "
                                         "them 4/3 larger; the broker's packet limit is "
                                         "256 KiB)")
    queue: int = Field(default=16, ge=1, le=256,
                       description="reads waiting to be encoded and written at most; more are "
                                   "dropped (counted), never slowing the barrier")


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
    display: DisplaySettings = DisplaySettings()
    commands: CommandSettings = CommandSettings()
    journal: JournalSettings = JournalSettings()
    kiosk: KioskSettings = KioskSettings()
    watchdog: WatchdogSettings = WatchdogSettings()
    evidence: EvidenceSettings = EvidenceSettings()
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
