"""An IP camera's RTSP stream as the lane camera (PyAV, FFmpeg's demuxers and decoders).

A stream cannot be asked for one still: it sends frames at its own rate whether the lane
reads them or not, and a lane that read them from a queue would read the car of some seconds
ago. So a thread of its own decodes every frame (H.264 needs each one to decode the next)
and keeps only the newest, stamped on the lane's clock as it arrives (the time fusion and
the evidence go by); :meth:`RtspCamera.capture` hands out that newest frame, waiting for the
next one when it has already handed this one out (fusion wants different frames of a car),
and encodes it as JPEG only then.

When the stream drops (camera rebooted, cable out, no packet for ``timeout_s``) the camera is
*faulted*: :attr:`RtspCamera.fault` says why, and :meth:`capture` raises
:class:`CameraOffline` at once, which the lane reports as ``fault read_failed`` for the car
it was reading (docs/lane.md). The thread reconnects with a growing pause (``backoff``)
and the fault clears with the first new frame. Reconnect pauses are real seconds, not the
lane's clock: they are about a network peer, which a simulated clock does not speed up.
The camera is a :class:`~firmware.lane.devices.health.HealthReporter`: the lane hears the
drop (``fault camera_offline``) and the first frame back (``fault_cleared``) when they
happen, once each however often the thread retries, not only when a car's read fails.

The login is a secret: the URL with the credentials in it exists only for ``av.open``, and
every message that leaves this module (FFmpeg's errors quote the URL) is scrubbed of it.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import SecretStr

from firmware.lane.config import CameraSettings
from firmware.lane.devices.camera import Frame
from firmware.lane.devices.health import HealthListener, HealthSignal
from parkguard.clock import Clock, SystemClock
from parkguard.configfile import reveal

log = logging.getLogger(__name__)

#: FFmpeg demuxer options: start on the first decodable frame instead of buffering seconds
#: of stream to probe it (a camera sends SPS/PPS in its SDP), and hand each frame over as
#: soon as it is complete.
LOW_LATENCY: Final = {"fflags": "nobuffer", "flags": "low_delay",
                      "analyzeduration": "500000", "probesize": "500000",
                      "buffer_size": "4194304"}
JPEG_QUALITY: Final = 90
CONNECTING: Final = "not connected yet"


class CameraOffline(RuntimeError):
    """The stream is down (or sent no new frame in time): there is no frame to read."""


@dataclass(frozen=True, slots=True)
class RtspSource:
    """Where the stream is and how to log in; ``str()`` never shows the password."""

    url: str
    username: str | None = None
    password: SecretStr | None = None
    transport: Literal["tcp", "udp"] = "tcp"
    timeout_s: float = 5.0

    def login_url(self) -> str:
        """The URL ``av.open`` needs, with the login in it: never log it."""
        if self.username is None:
            return self.url
        parts = urlsplit(self.url)
        secret = quote(reveal(self.password) or "", safe="")
        netloc = f"{quote(self.username, safe='')}:{secret}@{parts.netloc}"
        return urlunsplit(parts._replace(netloc=netloc))

    def scrub(self, text: str) -> str:
        """``text`` with the login URL and the password replaced (FFmpeg quotes its input)."""
        text = text.replace(self.login_url(), self.url)
        secret = reveal(self.password)
        if secret:
            for form in (secret, quote(secret, safe="")):
                text = text.replace(form, "***")
        return text

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True, slots=True)
class _Latest:
    number: int
    picture: Any  # av.VideoFrame, converted to JPEG only when the lane takes it
    taken: datetime


class RtspCamera:
    """Frames of an RTSP stream, newest first, behind the lane's ``Camera`` seam.

    ``frame_timeout_s``: the longest :meth:`capture` waits for a frame it has not handed out
    yet. ``backoff``: the first and the longest pause between two connection attempts.
    """

    def __init__(self, source: RtspSource, *, clock: Clock, frame_timeout_s: float = 2.0,
                 backoff: tuple[float, float] = (0.5, 10.0), name: str = "camera") -> None:
        import av  # PyAV only on a lane that has an IP camera

        self._av = av
        self.source = source
        self._clock = clock
        self._frame_timeout = frame_timeout_s
        self._backoff = backoff
        self._name = name
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._latest: _Latest | None = None
        self._arrivals = 0
        self._handed_out = 0
        self._fault: str | None = CONNECTING
        self._health = HealthSignal(name, "camera_offline")
        self.connects = 0
        """Times the stream was (re)opened and sent a frame."""
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"rtsp-{name}")
        self._thread.start()

    @property
    def fault(self) -> str | None:
        """Why the camera has no live stream now (None: frames are arriving)."""
        with self._changed:
            return self._fault

    def when_health(self, listener: HealthListener) -> None:
        """Tell ``listener`` when the stream goes down and when frames come again (see
        :mod:`firmware.lane.devices.health`); still connecting at start is not a fault."""
        self._health.listen(listener)

    @property
    def arrivals(self) -> int:
        """Frames decoded since the camera was made (every one, read or not)."""
        with self._changed:
            return self._arrivals

    def wait_live(self, timeout: float) -> bool:
        """Block until frames arrive (True) or ``timeout`` seconds pass (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._fault is None, timeout)

    def wait_faulted(self, timeout: float) -> bool:
        """Block until the camera is faulted (True) or ``timeout`` seconds pass (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._fault is not None, timeout)

    def capture(self) -> Frame:
        """The newest frame not handed out before, as JPEG, stamped when it arrived;
        CameraOffline while the stream is down or when no new frame comes in time."""
        deadline = time.monotonic() + self._frame_timeout
        with self._changed:
            while True:
                if self._fault is not None:
                    raise CameraOffline(f"{self._name} offline: {self._fault}")
                latest = self._latest
                if latest is not None and latest.number > self._handed_out:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CameraOffline(f"{self._name}: no new frame in "
                                        f"{self._frame_timeout:g} s")
                self._changed.wait(remaining)
            self._handed_out = latest.number
        buffer = io.BytesIO()
        latest.picture.to_image().save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return Frame(taken=latest.taken, image=buffer.getvalue())

    def close(self) -> None:
        """Stop decoding (within about ``timeout_s``, the longest a read blocks)."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        self._thread.join(timeout=self.source.timeout_s + 2)

    # --- the decoding thread -------------------------------------------------------------

    def _run(self) -> None:
        pause = self._backoff[0]
        while not self._stopping.is_set():
            delivered = self._stream_once()
            if self._stopping.is_set():
                return
            pause = self._backoff[0] if delivered else min(pause * 2, self._backoff[1])
            self._stopping.wait(pause)

    def _stream_once(self) -> bool:
        """Open the stream and decode until it ends or fails; True if it sent a frame."""
        av, source = self._av, self.source
        delivered = False
        try:
            container = av.open(source.login_url(), timeout=(source.timeout_s, source.timeout_s),
                                options={"rtsp_transport": source.transport, **LOW_LATENCY})
        except Exception as error:  # refused, unauthorised, no route: try again later
            self._down(self._reason(error))
            return False
        reason = "the stream ended"
        try:
            for packet in container.demux(container.streams.video[0]):
                try:
                    pictures = packet.decode()
                except av.error.InvalidDataError:
                    continue  # one damaged packet (a lost datagram): the next key frame heals it
                for picture in pictures:
                    if self._stopping.is_set():
                        return delivered
                    self._arrived(picture)
                    delivered = True
        except Exception as error:  # a dropped or stalled stream
            reason = self._reason(error)
        finally:
            container.close()
        self._down(reason)
        return delivered

    def _reason(self, error: BaseException) -> str:
        if isinstance(error, self._av.error.ExitError):  # PyAV's timeout interrupts FFmpeg
            return f"no answer within {self.source.timeout_s:g} s"
        reason = self.source.scrub(f"{type(error).__name__}: {error}")[:160]
        if "protocol not supported" in reason.lower():  # FFmpeg's words for RTSP's 461
            used = self.source.transport
            other = "udp" if used == "tcp" else "tcp"
            reason += f' (the camera refused transport = "{used}": try "{other}")'
        return reason

    def _arrived(self, picture: Any) -> None:
        taken = self._clock.now()
        with self._changed:
            self._arrivals += 1
            self._latest = _Latest(self._arrivals, picture, taken)
            recovered, self._fault = self._fault, None
            if recovered is not None:
                self.connects += 1
                self._health.working(f"{self._name} {self.source}: frames again "
                                     f"({picture.width}x{picture.height})")
            self._changed.notify_all()
        if recovered is not None:
            log.info("%s: stream %s up (%dx%d)", self._name, self.source, picture.width,
                     picture.height)

    def _down(self, reason: str) -> None:
        with self._changed:
            was, self._fault = self._fault, reason
            self._latest = None  # a frame from before the drop is not the lane now
            self._health.faulted(f"{self._name} {self.source}: {reason}")  # once per drop
            self._changed.notify_all()
        if was is None or was == CONNECTING:
            log.warning("%s: stream %s down: %s; reconnecting", self._name, self.source, reason)


def selftest(settings: CameraSettings, say: Callable[[str], None],
             wait_s: float) -> list[tuple[str, bool]]:
    """``parkguard lane selftest``'s camera check for an IP camera: a frame arrives from the
    stream within ``wait_s`` seconds (plus the connect timeout). Other cameras: no check."""
    if settings.type != "rtsp" or settings.url is None:
        return []
    source = RtspSource(settings.url, settings.username, settings.password,
                        settings.transport, settings.timeout_s)
    say(f"camera: reading {source} (up to {wait_s + settings.timeout_s:g} s)")
    camera = RtspCamera(source, clock=SystemClock(), name="camera")
    try:
        live = camera.wait_live(wait_s + settings.timeout_s)
        if not live:
            say(f"camera: no stream: {camera.fault}")
            return [("camera stream", False)]
        try:
            frame = camera.capture()
        except CameraOffline as error:
            say(f"camera: {error}")
            return [("camera stream", False)]
        say(f"camera: frame of {len(frame.image or b'')} bytes at {frame.taken:%H:%M:%S}")
        return [("camera stream", True)]
    finally:
        camera.close()
