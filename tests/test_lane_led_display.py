"""The RS-485 LED display against a serial peer on this machine.

``socat`` makes a pseudo-terminal pair with fixed names (``lane`` for the display driver,
``board`` for the test), so the lane writes through pyserial to a real tty and the port can
vanish (socat killed) and come back under the same name. The test plays the board: it reads
the bytes the lane wrote and decodes them with its own parser, written here from the protocol
(hardware/lane-display-protocol.md) and checked against the protocol's published example
frames, and answers as the board does (or stays silent).
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from firmware.lane.config import DisplaySettings
from firmware.lane.devices.display import TEXTS, payment_due
from firmware.lane.devices.led_display import LedDisplay
from firmware.lane.selftest import selftest
from simulator.camera import SimulatedCamera
from tests.lane_harness import MemoryLane

# The protocol's own examples (显示屏通信协议 V2.0, 0x0C and 0x62): brightness 50 %, and
# "欢迎光临" on the first line.
BRIGHTNESS_EXAMPLE = bytes.fromhex("00 64 FF FF 0C 01 32 77 62")
WELCOME_EXAMPLE = bytes.fromhex(
    "00 64 FF FF 62 1B 00 00 01 00 05 00 01 03 00 FF 00 00 00 00 00 00 00 08 00"
    " BB B6 D3 AD B9 E2 C1 D9 58 96")


def _table() -> list[int]:
    """CRC-16 (Modbus) by table, from the reflected polynomial 0xA001."""
    table = []
    for index in range(256):
        value = index
        for _ in range(8):
            value = (value >> 1) ^ (0xA001 * (value & 1))
        table.append(value)
    return table


TABLE = _table()


def check(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ TABLE[(crc ^ byte) & 0xFF]
    return crc


@dataclass(frozen=True)
class Line:
    """One 0x62 "download temporary text" packet, as the board reads it."""

    address: int
    line: int
    mode: int
    font: int
    colour: bytes
    text: str


def parse(stream: bytearray) -> Line | None:
    """Take one packet off the front of ``stream`` (None: not all there yet)."""
    if len(stream) < 6:
        return None
    address, version, packet, command, length = (
        stream[0], stream[1], int.from_bytes(stream[2:4], "big"), stream[4], stream[5])
    assert version == 0x64 and packet == 0xFFFF, stream.hex(" ")
    if len(stream) < 6 + length + 2:
        return None
    body, crc = bytes(stream[:6 + length]), stream[6 + length:8 + length]
    del stream[:8 + length]
    assert int.from_bytes(crc, "little") == check(body), "bad CRC"
    assert command == 0x62, f"command {command:#x}"
    data = body[6:]
    text_length = data[17]
    assert length == 19 + text_length, "DL must be 19 + TL"
    assert data[18] == 0 and data[13:17] == bytes(4), "reserved bytes"
    return Line(address=address, line=data[0], mode=data[1], font=data[7],
                colour=data[9:13], text=data[19:].decode("gb2312"))


def test_the_parser_reads_the_protocols_own_examples() -> None:
    assert check(BRIGHTNESS_EXAMPLE[:-2]) == int.from_bytes(BRIGHTNESS_EXAMPLE[-2:], "little")
    stream = bytearray(WELCOME_EXAMPLE)
    assert parse(stream) == Line(0, 0, 0x00, 0x03, bytes((0xFF, 0, 0, 0)), "欢迎光临")
    assert not stream


class Board:
    """The display board on the far end of the tty: keeps what each line shows, answers
    each packet with ACK 0 unless told to stay silent."""

    def __init__(self, path: Path, *, answer: bool = True) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        self.answer = answer
        self.lines = ["", "", "", ""]
        self.packets: list[Line] = []
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        stream = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if not ready:
                continue
            try:
                stream += os.read(self.fd, 4096)
            except OSError:  # the tty went away
                return
            while (line := parse(stream)) is not None:
                with self.changed:
                    self.packets.append(line)
                    self.lines[line.line] = line.text
                    self.changed.notify_all()
                if self.answer:
                    reply = bytes((line.address, 0x64, 0xFF, 0xFF, 0x62, 0x01, 0x00))
                    os.write(self.fd, reply + check(reply).to_bytes(2, "little"))

    def showing(self, lines: list[str], timeout: float = 10) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.lines == lines, timeout)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self.fd)


class SerialPair:
    """socat's pty pair: ``lane`` and ``board`` links in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        assert shutil.which("socat"), "socat is missing: run `make system-deps`"
        self.lane, self.board = workdir / "lane-tty", workdir / "board-tty"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            ["socat", f"pty,link={self.lane},raw,echo=0", f"pty,link={self.board},raw,echo=0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not (self.lane.exists() and self.board.exists()):
            assert time.monotonic() < deadline, "socat made no pty pair"
            time.sleep(0.01)

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SerialPair]:
    serial_pair = SerialPair(tmp_path)
    serial_pair.start()
    try:
        yield serial_pair
    finally:
        serial_pair.kill()


def display_on(pair: SerialPair, **fields: object) -> LedDisplay:
    settings = DisplaySettings.model_validate(
        {"type": "led_rs485", "port": str(pair.lane), "address": 3, **fields})
    return LedDisplay(settings, retry=(0.05, 0.5))


def test_two_texts_reach_the_board_as_four_gb2312_lines_with_good_checksums(
    pair: SerialPair,
) -> None:
    board = Board(pair.board)
    display = display_on(pair)
    try:
        display.show(*TEXTS["fire"])
        assert display.wait_shown(10) and display.fault is None
        assert board.showing(["火警", "请立即离场", "FIRE -", "LEAVE NOW"])  # – is not GB2312
        assert {p.address for p in board.packets} == {3}
        modes = {p.text: p.mode for p in board.packets}
        assert modes["火警"] == 0x00 and modes["请立即离场"] == 0x15  # 10 columns > 8: scrolls
        assert {p.font for p in board.packets} == {0x03}

        display.show(*payment_due("粤B12345", 183, 1_500, qr=False), qr="https://pay/x")
        assert display.wait_shown(10)
        assert board.showing(["粤B12345", "停3小时3分", "应付￥15.00",
                              "Stay 3h 3m: pay ￥15.00 - show pay code"])
        sent = len(board.packets)
        display.show("粤B12345 😀 €", "Welcome")  # characters GB2312 lacks
        assert display.wait_shown(10) and display.fault is None
        assert board.showing(["粤B12345", "? ?", "Welcome", ""])
        # the plate line the board already showed was not sent again
        assert [p.text for p in board.packets[sent:]].count("粤B12345") == 0
    finally:
        display.close()
        board.close()


def test_a_vanished_port_is_a_device_fault_and_the_screen_follows_when_it_is_back(
    pair: SerialPair,
) -> None:
    board = Board(pair.board)
    display = display_on(pair)
    try:
        display.show(*TEXTS["idle"])
        assert display.wait_shown(10) and board.showing(["欢迎光临", "Welcome", "", ""])
        board.close()
        pair.kill()  # the USB adapter pulled out
        display.show(*TEXTS["lot_full"])  # returns at once: the lane never waits on it
        assert display.wait_faulted(10), "a write to a vanished port must fault the display"
        assert "lane-tty" in str(display.fault)

        pair.start()
        board = Board(pair.board)
        assert display.wait_shown(10), f"never recovered: {display.fault}"
        assert board.showing(["车位已满", "Car park", "full", ""])
        assert display.fault is None
    finally:
        display.close()
        board.close()


def test_a_board_that_does_not_answer_is_a_fault(pair: SerialPair) -> None:
    board = Board(pair.board, answer=False)
    display = display_on(pair, reply_timeout_ms=100)
    try:
        display.show(*TEXTS["idle"])
        assert display.wait_faulted(10)
        assert "no reply" in str(display.fault)
    finally:
        display.close()
        board.close()
    quiet = Board(pair.board, answer=False)  # a board set to send no replies (0x1A mode 1)
    silent_ok = display_on(pair, reply_timeout_ms=0)
    try:
        silent_ok.show(*TEXTS["idle"])
        assert silent_ok.wait_shown(10) and silent_ok.fault is None
        assert quiet.showing(["欢迎光临", "Welcome", "", ""])
    finally:
        silent_ok.close()
        quiet.close()


def test_the_lane_drives_the_board_through_its_display_seam(
    pair: SerialPair, tmp_path: Path,
) -> None:
    board = Board(pair.board)
    display = display_on(pair)
    try:
        with MemoryLane(tmp_path, display=display) as lane:
            camera: SimulatedCamera = lane.camera
            camera.show(None)  # a plate nobody can read; the gateway is silent
            lane.pins.arming.drive_high()
            lane.settle()
            lane.step(milliseconds=400)
            assert display.wait_shown(10)
            assert board.showing(["未识别车牌", "请按帮助键", "Plate", "not read: press Help"])
    finally:
        display.close()
        board.close()


@pytest.mark.parametrize(("fields", "reason"), [
    ({"type": "led_rs485"}, "port is required"),
    ({"type": "led_rs485", "port": "ttyUSB0"}, "device path"),
    ({"type": "led_rs485", "port": "/dev/ttyUSB0", "baud": 1234}, "baud"),
    ({"type": "led_rs485", "port": "/dev/ttyUSB0", "address": 256}, "address"),
    ({"type": "none", "port": "/dev/ttyUSB0"}, "port is for"),
])
def test_a_bad_display_config_is_refused_naming_the_field(
    fields: dict[str, object], reason: str,
) -> None:
    with pytest.raises(ValidationError, match=reason):
        DisplaySettings.model_validate(fields)


def test_the_installers_selftest_shows_a_test_screen_on_the_board(
    pair: SerialPair, tmp_path: Path,
) -> None:
    board = Board(pair.board)
    config = tmp_path / "lane.toml"
    config.write_text('site = "mall-b2"\nlane = "in1"\ndirection = "entry"\n'
                      '[camera]\ntype = "simulated"\n'
                      f'[display]\ntype = "led_rs485"\nport = "{pair.lane}"\n',
                      encoding="utf-8")
    script = tmp_path / "answers.txt"
    # outputs (raise, lower, green, red), the five inputs, then "does the display show it?"
    script.write_text("\n".join(["", "y", "", "y", "", "y", "y"] + ["trigger"] * 5 + ["y"])
                      + "\n", encoding="utf-8")
    try:
        result = CliRunner().invoke(selftest, ["-c", str(config), "--mock-pins", "--script",
                                               str(script), "--wait", "0.2"])
        assert result.exit_code == 0, result.output
        assert "PASS  display" in result.output
        assert board.lines == ["自检", "显示屏", "Selftest", "display"]
    finally:
        board.close()
