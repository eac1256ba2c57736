"""The lane display seam: two lines, Chinese first, English beside it.

A real lane drives an LED matrix or an LCD behind :class:`Display`; tests and the simulator
use :class:`RecordingDisplay`, which keeps what was shown. The lane's own words live here
(:data:`TEXTS` and the ``fee_*`` helpers); the gateway's words arrive in its decide reply
(``display_zh`` / ``display_en``) and are shown as given.

Must override: ``Display.show``.

>>> screen = RecordingDisplay()
>>> screen.show(*fee_due("粤B12345", 1_200))
>>> screen.current
('粤B12345 请缴费 ¥12.00', '粤B12345 please pay ¥12.00')
"""

from __future__ import annotations

import threading
from typing import Final, Protocol

from parkguard.core.tariffs import format_yuan

MAX_LINE: Final = 64
"""The widest line a lane display takes (the contract's ``display_zh``/``display_en`` limit)."""

TEXTS: Final[dict[str, tuple[str, str]]] = {
    "idle": ("欢迎光临", "Welcome"),
    "fire": ("火警 请立即离场", "FIRE – LEAVE NOW"),
    "flood_entry": ("水浸 暂停入场", "FLOOD – NO ENTRY"),
    "lot_full": ("车位已满", "Car park full"),
    "refused": ("禁止入场 请联系管理处", "Entry refused: please call the office"),
    "unread": ("未识别车牌 请按帮助键", "Plate not read: press Help"),
    "no_entry": ("无入场记录 请按帮助键", "No entry record: press Help"),
    "ambiguous": ("车牌不清 请按帮助键", "Plate unclear: press Help"),
    "no_replica": ("暂无数据 请按帮助键", "Offline: press Help"),
    "goodbye": ("一路平安", "Goodbye"),
    "welcome": ("欢迎光临", "Welcome"),
    "help": ("已呼叫保安", "Help is coming"),
    "kiosk_no_vehicle": ("请先将车驶入车道", "Please drive up to the barrier first"),
    "kiosk_unavailable": ("暂不支持手机号入场 请按帮助键", "Phone entry unavailable: press Help"),
    "kiosk_bad_input": ("号码无效 请重新输入", "Invalid number: please try again"),
    "kiosk_not_confirmed": ("尾号不符 请重新输入", "Not confirmed: please try again"),
    "payment_code": ("已收到付款码", "Payment code received"),
}


class Display(Protocol):
    """The lane display: show two lines (Chinese, English) until the next call."""

    def show(self, zh: str, en: str) -> None: ...


def fit(text: str) -> str:
    return text[:MAX_LINE]


def fee_due(plate: str | None, fen: int) -> tuple[str, str]:
    """请缴费 / please pay, with the amount."""
    money = format_yuan(fen)
    who = f"{plate} " if plate else ""
    return fit(f"{who}请缴费 {money}"), fit(f"{who}please pay {money}")


def goodbye(plate: str | None, note_zh: str = "", note_en: str = "") -> tuple[str, str]:
    """一路平安 / goodbye, after a free or paid exit."""
    who = f"{plate} " if plate else ""
    zh = f"{who}{note_zh + ' ' if note_zh else ''}一路平安"
    en = f"{who}{note_en + ': ' if note_en else ''}goodbye"
    return fit(zh), fit(en)


class RecordingDisplay:
    """A display that remembers everything it was asked to show (tests, simulator)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.shown: list[tuple[str, str]] = []

    def show(self, zh: str, en: str) -> None:
        with self._lock:
            self.shown.append((fit(zh), fit(en)))

    @property
    def current(self) -> tuple[str, str] | None:
        with self._lock:
            return self.shown[-1] if self.shown else None
