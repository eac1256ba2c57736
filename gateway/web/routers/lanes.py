"""The lanes page and its live API: each lane's state, whether it is stale, its last reads
and what needs a guard there, the read snapshot, the manual open (a guard lets a car
through, with a preset or typed reason), and for a car waiting at an
exit to pay, cash taken (guards) or the fee waived (supervisors), each with a reason,
audited, then the lane's open (docs/dashboard.md)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.runtime.till import TillError
from gateway.storage import queries
from gateway.web.deps import (
    BoardDep,
    CashierDep,
    CommanderDep,
    FormDep,
    Opener,
    PagesDep,
    ReaderDep,
    Senior,
    Staff,
    TimeDep,
    WorkerDep,
)
from gateway.web.forms import BadForm, require_reason
from gateway.web.lanes import lanes_view, plate_snapshot_svg
from gateway.web.security import CSRF_HEADER, csrf_ok
from gateway.web.users import User
from gateway.web.words import say
from parkguard.clock import utc_iso
from parkguard.core.tariffs import format_yuan
from parkguard.errors import ParkGuardError

log = logging.getLogger(__name__)
router = APIRouter()


#: Reasons a guard picks from (and may add to) when taking cash or waiving a fee.
CASH_REASONS = ("现金收费 cash at the booth", "手机无法支付 driver's phone cannot pay",
                "扫码失败 QR and pay code failed")
WAIVE_REASONS = ("道闸故障 barrier fault", "系统故障 system fault",
                 "投诉成立 complaint upheld", "紧急车辆 emergency vehicle")
#: Reasons a guard picks from when opening a barrier by hand; "other" needs typed words.
OTHER_REASON = "其他 other"
OPEN_REASONS = ("访客登记 visitor registered", "设备故障 device fault",
                "应急车辆 emergency vehicle", "收费争议 fee dispute", OTHER_REASON)


def open_reason(preset: str, text: str) -> str:
    """The reason a manual open is audited with: a preset, typed words, or both
    (``preset: words``); "other" or no preset needs words of its own (4 characters)."""
    preset, text = preset.strip(), text.strip()
    if preset and preset not in OPEN_REASONS:
        raise BadForm(f"unknown preset reason {preset!r} / 无此预设原因")
    if not preset or preset == OTHER_REASON:
        require_reason(text, "开闸原因")
    return f"{preset}: {text}" if preset and text else preset or text


def _view(board: BoardDep, reader: ReaderDep, cashier: CashierDep,
          time: TimeDep) -> list[dict[str, Any]]:
    with reader() as db:
        view = lanes_view(board, db, time.now())
    for lane in view:
        lane["words"] = {"online": _online_words(lane["online"]),
                         "direction": say(lane["direction"], "direction"),
                         "mode": say(lane["mode"], "mode"),
                         "barrier": say(lane["barrier"], "barrier")}
    return _with_waiting(view, cashier, time)


def _online_words(online: bool | None) -> str:
    if online is None:
        return "未知 unknown"
    return say("online" if online else "offline", "state")


def _bus_words(board: BoardDep) -> str:
    return "" if board.bus_connected else (
        "网关与消息总线断开：车道状态不是最新 "
        "The gateway lost the broker: lane states are not current")


def _with_waiting(view: list[dict[str, Any]], cashier: CashierDep,
                  time: TimeDep) -> list[dict[str, Any]]:
    """Each lane card with the car waiting there to pay, if any: plate, amount, since."""
    waiting = {car.lane: car for car in cashier.waiting_exits()}
    for lane in view:
        car = waiting.get(lane["lane"])
        lane["waiting"] = None if car is None else {
            "session_id": car.session_id, "plate": car.plate, "due_fen": car.due_fen,
            "due": format_yuan(car.due_fen), "since": time.local(utc_iso(car.since))}
    return view


@router.get("/lanes", response_class=HTMLResponse)
def lanes(request: Request, user: Staff, pages: PagesDep, board: BoardDep,
          reader: ReaderDep, cashier: CashierDep, time: TimeDep) -> Response:
    return pages.render(request, "lanes.html", user, lanes=_view(board, reader, cashier, time),
                        cash_reasons=CASH_REASONS, waive_reasons=WAIVE_REASONS,
                        open_reasons=OPEN_REASONS, bus_lost=_bus_words(board),
                        now_local=time.local(time.now()))


@router.get("/api/lanes")
def api_lanes(_user: Staff, board: BoardDep, reader: ReaderDep, cashier: CashierDep,
              time: TimeDep) -> dict[str, Any]:
    """Each lane as data: machine values, their words (``words``), ``liveness`` (stale,
    age_s, seen) and ``notices`` (refusals, help calls, faults)."""
    view = _view(board, reader, cashier, time)
    for lane in view:
        lane["reads"] = [{**read, "local": time.local(read["ts"])} for read in lane["reads"]]
    return {"lanes": view, "now": utc_iso(time.now()), "bus_connected": board.bus_connected}


@router.get("/lanes/live")
def live_cards(_user: Staff, pages: PagesDep, board: BoardDep, reader: ReaderDep,
               cashier: CashierDep, time: TimeDep) -> dict[str, Any]:
    """What the lanes page's script swaps in every poll: each card's live part, rendered
    by the same template as the page (so the words come from one table)."""
    part = pages.env.get_template("_lane_live.html")
    cards = [{"lane": lane["lane"], "stale": lane["liveness"]["stale"],
              "waiting": lane["waiting"]["session_id"] if lane["waiting"] else "",
              "html": part.render(lane=lane)} for lane in _view(board, reader, cashier, time)]
    return {"cards": cards, "bus_lost": _bus_words(board), "now_local": time.local(time.now())}


@router.get("/lanes/reads/{event_id}.svg")
def snapshot(event_id: str, _user: Staff, reader: ReaderDep, time: TimeDep) -> Response:
    with reader() as db:
        read = queries.plate_read(db, event_id)
    if read is None:
        raise HTTPException(404, "no such read")
    return Response(plate_snapshot_svg(read.plate, time.local(read.ts)),
                    media_type="image/svg+xml")


async def manual_open(user: User, commander: CommanderDep, worker: WorkerDep, lane: str,
                      reason: str) -> str:
    require_reason(reason, "开闸原因")
    if commander is None:
        raise BadForm("manual open is not available on this gateway / 本网关不支持远程开闸")
    # Signed, audited, then published: on the worker, so the audit entry never
    # interleaves with an exit being billed.
    await worker.run(lambda: commander.open(lane, actor=user.actor, reason=reason))
    log.info("web: %s opened %s", user.actor, lane)
    return f"已发送开闸指令 {lane} / Open sent to {lane}"


@router.post("/lanes/{lane}/open")  # the form's token is checked before the role
async def open_lane(request: Request, lane: str, fields: FormDep, user: Opener,
                    commander: CommanderDep, worker: WorkerDep, pages: PagesDep) -> Response:
    try:
        reason = open_reason(str(fields.get("preset", "")), str(fields.get("reason", "")))
        pages.flash(request, "ok", await manual_open(user, commander, worker, lane, reason))
    except (BadForm, ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse("/lanes", status_code=303)


Answers = dict[int | str, dict[str, Any]]
"""Documented answers of a route, by status (its OpenAPI ``responses``)."""


def _json_body(properties: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a JSON route that reads its body itself (the CSRF
    header is checked before the body is read)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "properties": properties}}}}}


_TEXT = {"type": "string", "maxLength": 256}
_DONE: Answers = {200: {
    "description": "done; ``message`` says what, in Chinese and English",
    "content": {"application/json": {"schema": {
        "type": "object", "required": ["ok", "message"],
        "properties": {"ok": {"type": "boolean"}, "message": {"type": "string"}}}}}}}
_MONEY_BODY = _json_body({"preset": _TEXT, "detail": _TEXT,
                          "due_fen": {"anyOf": [{"type": "integer", "minimum": 0},
                                                {"type": "string", "pattern": "^[0-9]*$"}],
                                      "description": "the fee the guard saw, fen"}})
_UNKNOWN_LANE: Answers = {404: {
    "description": "no such lane at this gateway / 无此车道",
    "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}}}}}}
_NOTHING_WAITING: Answers = {409: {
    "description": "no car waits to pay there, nothing is due, or the amount changed / "
                   "该车道无待缴费车辆"}}


def _unknown_lane(commander: CommanderDep, lane: str) -> Response | None:
    """404 for a lane this gateway cannot command (it holds no key for it)."""
    if commander is None or lane not in commander.lanes:
        return JSONResponse({"error": f"no lane {lane!r} at this gateway / 无此车道"},
                            status_code=404)
    return None


async def _json_object(request: Request) -> dict[str, Any] | None:
    """The request's JSON object, or None for a body that is not one (not JSON at all,
    or a list): a 400 for the caller to give, never a 500."""
    try:
        body = await request.json()
    except ValueError:  # not JSON, or not UTF-8
        return None
    return body if isinstance(body, dict) else None


@router.post("/api/lanes/{lane}/open", responses={**_DONE, **_UNKNOWN_LANE},
             openapi_extra=_json_body({"preset": {"enum": ["", *OPEN_REASONS]},
                                       "reason": _TEXT}))
async def api_open_lane(request: Request, lane: str, user: Opener, commander: CommanderDep,
                        worker: WorkerDep) -> Response:
    if not csrf_ok(request, request.headers.get(CSRF_HEADER)):
        return JSONResponse({"error": "CSRF token missing or wrong"}, status_code=403)
    if (unknown := _unknown_lane(commander, lane)) is not None:
        return unknown
    body = await _json_object(request)
    if body is None:
        return JSONResponse({"error": "a JSON object is expected"}, status_code=400)
    try:
        reason = open_reason(str(body.get("preset", "")), str(body.get("reason", "")))
        message = await manual_open(user, commander, worker, lane, reason)
    except (BadForm, ParkGuardError, ValueError) as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    return JSONResponse({"ok": True, "message": message})


def money_reason(preset: str, detail: str) -> str:
    """The reason a guard gave: a preset, free text, or both (``preset: text``)."""
    preset, detail = preset.strip(), detail.strip()
    return require_reason(f"{preset}: {detail}" if preset and detail else preset or detail)


def _expected(value: object) -> int | None:
    """The amount the guard saw on the card (fen); None when the form did not say."""
    text = str(value or "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise BadForm(f"amount must be whole fen, got {text!r} / 金额格式错误")
    return int(text)


async def take_cash(user: User, cashier: CashierDep, lane: str,
                    fields: dict[str, Any]) -> str:
    reason = money_reason(str(fields.get("preset", "")), str(fields.get("detail", "")))
    expected = _expected(fields.get("due_fen"))
    payment = await run_in_threadpool(lambda: cashier.take_cash(
        lane, actor=user.actor, reason=reason, expected_fen=expected))
    log.info("web: %s took %d fen cash at %s", user.actor, payment.amount_fen, lane)
    return (f"已收现金 {format_yuan(payment.amount_fen)}，已开闸 {lane} / "
            f"Cash {format_yuan(payment.amount_fen)} taken, {lane} opened")


async def waive_fee(user: User, cashier: CashierDep, lane: str,
                    fields: dict[str, Any]) -> str:
    reason = money_reason(str(fields.get("preset", "")), str(fields.get("detail", "")))
    waived = await run_in_threadpool(lambda: cashier.waive(lane, actor=user.actor,
                                                           reason=reason))
    log.info("web: %s waived %d fen at %s", user.actor, waived, lane)
    return (f"已免收 {format_yuan(waived)}，已开闸 {lane} / "
            f"Fee of {format_yuan(waived)} waived, {lane} opened")


@router.post("/lanes/{lane}/cash")  # the form's token is checked before the role
async def cash_form(request: Request, lane: str, fields: FormDep, user: Opener,
                    cashier: CashierDep, pages: PagesDep) -> Response:
    return await _form_money(request, pages, take_cash(user, cashier, lane, dict(fields)))


@router.post("/lanes/{lane}/waive")
async def waive_form(request: Request, lane: str, fields: FormDep, user: Senior,
                     cashier: CashierDep, pages: PagesDep) -> Response:
    return await _form_money(request, pages, waive_fee(user, cashier, lane, dict(fields)))


_MONEY_ANSWERS: Answers = {**_DONE, **_NOTHING_WAITING}


@router.post("/api/lanes/{lane}/cash", responses=_MONEY_ANSWERS, openapi_extra=_MONEY_BODY)
async def api_cash(request: Request, lane: str, user: Opener,
                   cashier: CashierDep) -> Response:
    return await _api_money(request, lambda body: take_cash(user, cashier, lane, body))


@router.post("/api/lanes/{lane}/waive", responses=_MONEY_ANSWERS, openapi_extra=_MONEY_BODY)
async def api_waive(request: Request, lane: str, user: Senior,
                    cashier: CashierDep) -> Response:
    return await _api_money(request, lambda body: waive_fee(user, cashier, lane, body))


async def _form_money(request: Request, pages: PagesDep, act: Awaitable[str]) -> Response:
    """The form's cash or waiver: its outcome flashed on the lanes page either way."""
    try:
        pages.flash(request, "ok", await act)
    except (BadForm, ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse("/lanes", status_code=303)


async def _api_money(request: Request,
                     act: Callable[[dict[str, Any]], Awaitable[str]]) -> Response:
    """Cash or a waiver over the API: 403 without the CSRF header, 400 for a body it
    cannot take, 409 when the lane has no car waiting to pay (or the amount changed)."""
    if not csrf_ok(request, request.headers.get(CSRF_HEADER)):
        return JSONResponse({"error": "CSRF token missing or wrong"}, status_code=403)
    body = await _json_object(request)
    if body is None:
        return JSONResponse({"error": "a JSON object is expected"}, status_code=400)
    try:
        message = await act(body)
    except TillError as error:
        return JSONResponse({"error": str(error)}, status_code=409)
    except (BadForm, ParkGuardError, ValueError) as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    return JSONResponse({"ok": True, "message": message})
