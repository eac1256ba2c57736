"""The lane's LED display: a 4-line board on RS-485, behind the lane's ``Display`` seam.

The board family and its frames are described in hardware/lane-display-protocol.md (the
"显示屏通信协议" of the OLM-type lane display cards that Chinese plate-recognition lanes
drive over RS-485). Each line is one "download temporary text" frame (command 0x62): the
board shows it until the next one and forgets it at power-off, which is what a lane wants
(its idle text comes back with the next ``show``).

Four lines, Chinese first: the Chinese text is packed into as many lines as it needs (at
most three), the English into the rest; a line wider than ``columns`` scrolls. Text is
GB2312 (the board's only encoding besides ASCII); a character GB2312 lacks is replaced
(``¥`` by its full-width form, anything else by ``?``), never an error. The pay-page QR code
of :class:`~firmware.lane.devices.display.Display` is not drawn: these boards need their own
QR screen command, not implemented here (the lane shows the amount; a 付款码 is scanned).

Writing takes time the barrier must not wait for (four frames at 9600 baud are ~0.2 s, and a
reply may be late), and a port can vanish (USB adapter unplugged): so :meth:`LedDisplay.show`
only hands the lines to a thread of its own, which sends the newest screen, skips lines the
board already shows, and on a failure marks the display faulted (:attr:`LedDisplay.fault`,
logged once), reopens the port and sends the screen again after a growing pause. A dead
display never stops the lane. It is a :class:`~firmware.lane.devices.health.HealthReporter`:
the lane publishes the failure (``fault display_failed``) and the first screen the board
takes again (``fault_cleared``), once each.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Final

from firmware.lane.config import DisplaySettings
from firmware.lane.devices.display import fit
from firmware.lane.devices.health import HealthListener, HealthSignal

log = logging.getLogger(__name__)

LINES: Final = 4
VERSION: Final = 0x64  # protocol version 100: one-byte DL
LAST_PACKET: Final = 0xFFFF  # PN of a frame that is the whole message
TEMPORARY_TEXT: Final = 0x62
SHOW_AT_ONCE: Final = 0x00
MOVE_LEFT: Final = 0x15  # ETM "连续左移": a line too wide for the board scrolls
SONG_16: Final = 0x03  # FINDEX: the 16-px Song font, four lines on a 64-px-high board
RED: Final = bytes((0xFF, 0x00, 0x00, 0x00))  # TC: R, G, B, reserved
MAX_TEXT: Final = 255 - 19  # DL is one byte and the 0x62 header takes 19 of it
SUBSTITUTES: Final = str.maketrans({"¥": "￥", "–": "-", "—": "-", "·": "."})
"""Characters our texts use that GB2312 lacks, and what the board shows for them."""


def crc16(data: bytes) -> int:
    """CRC-16 as the protocol computes it (the Modbus CRC: reflected 0x8005, start 0xFFFF);
    sent low byte first.

    >>> hex(crc16(bytes.fromhex("0064ffff0c0132")))  # the protocol's brightness example
    '0x6277'
    """
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def gb2312(text: str, limit: int = MAX_TEXT) -> bytes:
    """``text`` as the board's GB2312, cut to ``limit`` bytes on a character boundary; a
    character GB2312 lacks becomes its substitute or ``?``.

    >>> gb2312("应付¥15.00 😀")
    b'\\xd3\\xa6\\xb8\\xb6\\xa3\\xa415.00 ?'
    """
    out = bytearray()
    for char in text.translate(SUBSTITUTES):
        encoded = char.encode("gb2312", errors="replace")
        if len(out) + len(encoded) > limit:
            break
        out += encoded
    return bytes(out)


def frame(address: int, command: int, data: bytes) -> bytes:
    """One packet: DA, VR, PN, CMD, DL, DATA, CRC (little-endian)."""
    body = bytes((address, VERSION)) + LAST_PACKET.to_bytes(2, "big") + bytes(
        (command, len(data))) + data
    return body + crc16(body).to_bytes(2, "little")


def text_frame(address: int, line: int, text: bytes, *, columns: int) -> bytes:
    """Command 0x62 for ``line`` (0 = top): shown at once if it fits ``columns`` half-width
    characters, else scrolling left; 16-px font, red, repeated until replaced.

    The two reserved bytes after DT are sent as 00 01, as the protocol's own example frame
    does (boards on its older firmware read them as exit mode and exit speed)."""
    mode = SHOW_AT_ONCE if len(text) <= columns else MOVE_LEFT
    data = (bytes((line, mode, 0x01, 0x00, 0x05, 0x00, 0x01, SONG_16, 0x00)) + RED
            + bytes(4) + bytes((len(text), 0x00)) + text)
    return frame(address, TEMPORARY_TEXT, data)


def width(text: str) -> int:
    """Half-width columns ``text`` takes on the board (a Chinese character takes two)."""
    return len(gb2312(text, limit=1 << 16))


def _pack(words: list[str], rows: int, columns: int) -> list[str]:
    """Words into at most ``rows`` lines of ``columns``; what does not fit joins the last."""
    lines: list[str] = []
    for word in words:
        if lines and (len(lines) == rows or width(f"{lines[-1]} {word}") <= columns):
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def layout(zh: str, en: str, columns: int) -> tuple[str, ...]:
    """The four lines for a Chinese and an English text: Chinese first, in as many lines as
    its words need (at most three), English in the lines left.

    >>> layout("火警 请立即离场", "FIRE – LEAVE NOW", 8)
    ('火警', '请立即离场', 'FIRE –', 'LEAVE NOW')
    """
    chinese = _pack(fit(zh).split(), LINES - 1, columns)
    english = _pack(fit(en).split(), LINES - len(chinese), columns)
    lines = chinese + english
    return tuple(lines + [""] * (LINES - len(lines)))


class DisplayNotAnswering(OSError):
    """The board did not acknowledge a line in time, or refused it."""


class LedDisplay:
    """A 4-line RS-485 LED board (``[display] type = "led_rs485"``).

    ``opener``: makes the port from ``(port, baudrate=..., timeout=..., write_timeout=...)``;
    pyserial's ``serial_for_url`` (device paths and ``rfc2217://`` converters alike).
    ``retry``: the first and the longest pause before a failed screen is sent again.
    """

    def __init__(self, settings: DisplaySettings, *, opener: Callable[..., Any] | None = None,
                 retry: tuple[float, float] = (1.0, 30.0)) -> None:
        if settings.port is None:
            raise ValueError("display.port is required with display.type = \"led_rs485\"")
        if opener is None:
            import serial  # pyserial only on a lane with this display

            opener = serial.serial_for_url
        self.settings = settings
        self._opener = opener
        self._retry = retry
        self._port: Any = None
        self._showing: list[bytes | None] = [None] * LINES
        self._changed = threading.Condition()
        self._pending: tuple[str, ...] | None = None
        self._wanted = 0
        self._sent = 0
        self._fault: str | None = None
        self._health = HealthSignal(f"display {settings.port}", "display_failed")
        self._stopping = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                         name=f"display-{settings.address}")
        self._thread.start()

    def show(self, zh: str, en: str, qr: str | None = None) -> None:
        """Put the texts on the board (soon, from the display's thread); ``qr`` is not drawn
        (see the module's docstring)."""
        lines = layout(zh, en, self.settings.columns)
        with self._changed:
            self._pending = lines
            self._wanted += 1
            self._changed.notify_all()

    @property
    def fault(self) -> str | None:
        """Why the last screen did not reach the board (None: it did, or nothing was sent)."""
        with self._changed:
            return self._fault

    def when_health(self, listener: HealthListener) -> None:
        """Tell ``listener`` when the display fails and when the board takes a screen again
        (:mod:`firmware.lane.devices.health`)."""
        self._health.listen(listener)

    def wait_shown(self, timeout: float) -> bool:
        """Block until the board has acknowledged the newest screen (True), or ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: self._sent == self._wanted, timeout)

    def wait_faulted(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._fault is not None, timeout)

    def close(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._thread.join(timeout=5)
        self._close_port()

    # --- the display's thread ------------------------------------------------------------

    def _run(self) -> None:
        pause = self._retry[0]
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._stopping or self._pending is not None)
                if self._stopping:
                    return
                lines, wanted, self._pending = self._pending, self._wanted, None
            if lines is None:
                continue
            try:
                self._send(lines)
            except Exception as error:  # the port is gone or the board is silent
                self._failed(lines, error)
                with self._changed:
                    self._changed.wait_for(lambda: self._stopping, pause)
                pause = min(pause * 2, self._retry[1])
                continue
            pause = self._retry[0]
            with self._changed:
                self._sent = max(self._sent, wanted)
                recovered, self._fault = self._fault, None
                if recovered is not None:
                    self._health.working(f"{self.settings.port}: the board answers again")
                self._changed.notify_all()
            if recovered is not None:
                log.info("display on %s answers again", self.settings.port)

    def _send(self, lines: tuple[str, ...]) -> None:
        settings = self.settings
        if self._port is None:
            timeout = max(settings.reply_timeout_ms, 100) / 1000
            self._port = self._opener(settings.port, baudrate=settings.baud, timeout=timeout,
                                      write_timeout=2.0)
            self._showing = [None] * LINES  # a board we lost may have been reset
        for number, line in enumerate(lines):
            text = gb2312(line)
            if self._showing[number] == text:
                continue
            self._showing[number] = None
            self._port.reset_input_buffer()
            self._port.write(text_frame(settings.address, number, text, columns=settings.columns))
            self._port.flush()
            if settings.reply_timeout_ms:
                self._check_reply()
            self._showing[number] = text

    def _check_reply(self) -> None:
        """The board answers DA VR PN CMD DL=1 ACK CRC; ACK 0 is success."""
        reply = self._port.read(9)
        expected = frame(self.settings.address, TEMPORARY_TEXT, b"\x00")
        if reply != expected:
            raise DisplayNotAnswering(
                "no reply from the board" if not reply else f"board replied {reply.hex(' ')}")

    def _failed(self, lines: tuple[str, ...], error: Exception) -> None:
        reason = f"{self.settings.port}: {type(error).__name__}: {error}"[:200]
        with self._changed:
            if self._pending is None:  # nothing newer: this screen is still the one to show
                self._pending = lines
            was, self._fault = self._fault, reason
            self._health.faulted(reason)  # once while it stays down
            self._changed.notify_all()
        if was is None:
            log.warning("display failed (%s); retrying", reason)
        self._close_port()

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:  # already gone
                log.debug("closing the display's port failed", exc_info=True)


def lane_display(settings: DisplaySettings) -> LedDisplay | None:
    """The display ``[display]`` names, for ``parkguard lane``; None for ``type = "none"``
    (the lane then keeps what it would show in memory)."""
    return LedDisplay(settings) if settings.type == "led_rs485" else None


SELFTEST_TEXT: Final = ("自检 显示屏", "Selftest display")


def selftest(settings: DisplaySettings, ask: Callable[[str], str]) -> list[tuple[str, bool]]:
    """``parkguard lane selftest``'s display check: the board acknowledges a test screen and
    the installer sees it. No display configured: no check."""
    if settings.type != "led_rs485":
        return []
    display = LedDisplay(settings, retry=(0.5, 1.0))
    try:
        display.show(*SELFTEST_TEXT)
        if not display.wait_shown(5 + 4 * settings.reply_timeout_ms / 1000):
            ask(f"display on {settings.port}: no answer ({display.fault}); press Enter")
            return [("display", False)]
        answer = ask(f"Does the display show {' / '.join(SELFTEST_TEXT)}? [y/n]")
        return [("display", answer.lower() == "y")]
    finally:
        display.close()
