"""The lane display seam: two lines, Chinese first, English beside it, and a QR code.

A real lane drives an LED matrix or an LCD behind :class:`Display`; tests and the simulator
use :class:`RecordingDisplay`, which keeps what was shown. The lane's own words live here
(:data:`TEXTS` and the ``fee_*`` helpers); the gateway's words arrive in its decide reply
(``display_zh`` / ``display_en``) and are shown as given.

The QR code is how an exit with a fee due is paid from the driver's phone: the gateway's
``pay_url`` (a pay-page link for this plate and lane). Every ``show`` replaces the QR too,
so a link never outlives the car it was made for; ``qr=None`` shows none.

Must override: ``Display.show``.

>>> screen = RecordingDisplay()
>>> screen.show(*payment_due("粤B12345", 183, 1_500, qr=False))
>>> screen.current, screen.current_qr
(('粤B12345 停3小时3分 应付¥15.00', 'Stay 3h 3m: pay ¥15.00 - show pay code'), None)
"""

from __future__ import annotations

import threading
from typing import Final, Protocol

from parkguard.core.bill_lines import stay_en, stay_zh
from parkguard.core.tariffs import format_yuan

MAX_LINE: Final = 64
"""The widest line a lane display takes (the contract's ``display_zh``/``display_en`` limit)."""

TEXTS: Final[dict[str, tuple[str, str]]] = {
    "idle": ("欢迎光临", "Welcome"),
    "fire": ("火警 请立即离场", "FIRE – LEAVE NOW"),
    "flood_entry": ("水浸 暂停入场", "FLOOD – NO ENTRY"),
    "flood_leave": ("水浸 请立即驶离", "FLOOD – LEAVE NOW"),
    "lot_full": ("车位已满", "Car park full"),
    "refused": ("禁止入场 请联系管理处", "Entry refused: please call the office"),
    "unread": ("未识别车牌 请按帮助键", "Plate not read: press Help"),
    "no_entry": ("无入场记录 请按帮助键", "No entry record: press Help"),
    "ambiguous": ("车牌不清 请按帮助键", "Plate unclear: press Help"),
    "no_replica": ("暂无数据 请按帮助键", "Offline: press Help"),
    "goodbye": ("一路平安", "Goodbye"),
    "welcome": ("欢迎光临", "Welcome"),
    "help": ("已呼叫保安", "Help is coming"),
    "held": ("请联系保安", "Please see a guard"),
    "kiosk_no_vehicle": ("请先将车驶入车道", "Please drive up to the barrier first"),
    "kiosk_unavailable": ("暂不支持手机号入场 请按帮助键", "Phone entry unavailable: press Help"),
    "kiosk_bad_input": ("号码无效 请重新输入", "Invalid number: please try again"),
    "kiosk_not_confirmed": ("尾号不符 请重新输入", "Not confirmed: please try again"),
    "kiosk_timed_out": ("确认超时 请重新输入手机号", "Took too long: type your number again"),
    "payment_code": ("已收到付款码", "Payment code received"),
    "payment_code_charging": ("已收到付款码 正在扣款", "Pay code received: charging"),
}


class Display(Protocol):
    """The lane display: show two lines (Chinese, English) and, when ``qr`` is a link, that
    link as a QR code, until the next call."""

    def show(self, zh: str, en: str, qr: str | None = None) -> None: ...


def fit(text: str) -> str:
    return text[:MAX_LINE]


def fee_due(plate: str | None, fen: int) -> tuple[str, str]:
    """请缴费 / please pay, with the amount."""
    money = format_yuan(fen)
    who = f"{plate} " if plate else ""
    return fit(f"{who}请缴费 {money}"), fit(f"{who}please pay {money}")


def payment_due(plate: str | None, minutes: int, fen: int, *, qr: bool) -> tuple[str, str]:
    """Plate, stay and amount while the exit waits for money (the gateway's own wording,
    ``parkguard.core.bill_lines.lane_display``); ``qr``: a QR code is shown, else the
    driver is asked for a 付款码."""
    money = format_yuan(fen)
    who = f"{plate} " if plate else ""
    how = "scan QR" if qr else "show pay code"
    return (fit(f"{who}停{stay_zh(minutes)} 应付{money}"),
            fit(f"Stay {stay_en(minutes)}: pay {money} - {how}"))


def goodbye(plate: str | None, note_zh: str = "", note_en: str = "") -> tuple[str, str]:
    """一路平安 / goodbye, after a free or paid exit."""
    who = f"{plate} " if plate else ""
    zh = f"{who}{note_zh + ' ' if note_zh else ''}一路平安"
    en = f"{who}{note_en + ': ' if note_en else ''}goodbye"
    return fit(zh), fit(en)


_ALARM_ONLY: Final = frozenset(TEXTS[k] for k in ("idle", "welcome", "flood_entry",
                                                  "flood_leave"))


def under_alarm(text: tuple[str, str] | None, alarm: tuple[str, str] | None, *,
                exit_lane: bool) -> tuple[str, str]:
    """What the display shows for ``text`` (None: no car's words, between cars) while
    ``alarm`` holds (flood level 3: 水浸 请立即驶离): the alarm alone between cars, at an
    entry (every car is refused there) and instead of a text it makes moot; at an exit the
    alarm first and the car's own words after it, so a driver still sees the amount and the
    pay code and can leave. No alarm: the text, or the idle text for none.

    >>> leave = TEXTS["flood_leave"]
    >>> under_alarm(None, leave, exit_lane=True) == leave
    True
    >>> under_alarm(goodbye("粤B12345"), leave, exit_lane=True)
    ('水浸 请立即驶离 粤B12345 一路平安', 'FLOOD – LEAVE NOW: 粤B12345 goodbye')
    >>> under_alarm(TEXTS["flood_entry"], leave, exit_lane=False) == leave
    True
    """
    if alarm is None:
        return TEXTS["idle"] if text is None else text
    if text is None or not exit_lane or text in _ALARM_ONLY or text == alarm:
        return alarm
    return fit(f"{alarm[0]} {text[0]}"), fit(f"{alarm[1]}: {text[1]}")


class RecordingDisplay:
    """A display that remembers everything it was asked to show (tests, simulator)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.shown: list[tuple[str, str]] = []
        self.qrs: list[str | None] = []
        """The QR link of each ``shown`` entry (same index), None where there was none."""

    def show(self, zh: str, en: str, qr: str | None = None) -> None:
        with self._lock:
            self.shown.append((fit(zh), fit(en)))
            self.qrs.append(qr)

    @property
    def current(self) -> tuple[str, str] | None:
        with self._lock:
            return self.shown[-1] if self.shown else None

    @property
    def current_qr(self) -> str | None:
        """The QR link on the display now, if any."""
        with self._lock:
            return self.qrs[-1] if self.qrs else None
