"""What a route may ask for, as FastAPI dependencies: who is asking, a database reader,
the worker that runs writes, the site's time, the settings, and the one desk it needs.

``app.py`` builds one :class:`WebState` per app from the running gateway and keeps it in
``app.state.web``; the providers below hand each route its part of it, so no route holds
the whole gateway and a test can override any one of them
(``app.dependency_overrides[provider] = ...``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Annotated, Protocol, TypeVar, cast

import sqlite_utils
from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from gateway.lanes.commands import LaneCommander
from gateway.money.billing import Bill, Billing
from gateway.money.merchants import MerchantAccounts
from gateway.money.passes import AccessDesk
from gateway.money.payments import Payment, PaymentDesk, PaymentProvider, PendingPayment
from gateway.runtime.exits import WaitingCar
from gateway.safety.alarms import AlarmMonitor
from gateway.safety.alerts import AlertDesk
from gateway.safety.complaints import ComplaintDesk
from gateway.safety.handover import HandoverDesk
from gateway.safety.holds import HoldDesk
from gateway.safety.incidents import IncidentDesk
from gateway.storage.store import GatewayStore
from gateway.web.access import PERMISSIONS, Forbidden, LoginRequired
from gateway.web.forms import Fields, read_form
from gateway.web.lanes import LaneBoard
from gateway.web.logins import find_session
from gateway.web.render import Pages, SiteTime
from gateway.web.security import LoginLimiter, RateLimiter
from gateway.web.settings import WebSettings
from gateway.web.tickets import TicketSigner
from gateway.web.users import User, session_user
from parkguard.clock import Clock
from parkguard.core.patrol import PatrolConfig
from parkguard.core.plates import MatchPolicy

T = TypeVar("T")

Reader = Callable[[], AbstractContextManager[sqlite_utils.Database]]
"""Opens a read-only connection of the caller's own (``with reader() as db:``)."""


class Owner(Protocol):
    """Whatever owns the writer's connection and runs work on its thread (the gateway)."""

    def call(self, work: Callable[[], T]) -> T: ...


class Worker:
    """The gateway's worker thread: every write (and every read on the writer's
    connection) runs there, so it never interleaves with an exit being billed."""

    def __init__(self, owner: Owner) -> None:
        self._owner = owner

    def call(self, work: Callable[[], T]) -> T:
        """Run ``work`` on the worker and wait for it (from a sync route's thread)."""
        return self._owner.call(work)

    async def run(self, work: Callable[[], T]) -> T:
        """The same from an async route, without blocking the event loop."""
        return await run_in_threadpool(self._owner.call, work)


class Cashier(Protocol):
    """The drivers' side of the money: what a car inside owes, a prepayment order, the
    provider's signed callback, and the cars waiting at an exit to pay (cash and waivers
    taken at the dashboard)."""

    def bill_for(self, plate: str) -> Bill | None: ...

    def suggest_plate(self, plate: str) -> str | None: ...

    def prepay(self, plate: str) -> PendingPayment | None: ...

    def payment_callback(self, body: bytes, headers: Mapping[str, str]) -> Payment: ...

    def waiting_exits(self) -> list[WaitingCar]: ...

    def take_cash(self, lane: str, *, actor: str, reason: str,
                  expected_fen: int | None = None) -> Payment: ...

    def waive(self, lane: str, *, actor: str, reason: str) -> int: ...


class Service(Owner, Cashier, Protocol):
    """The gateway's service as the web front uses it: its worker and the drivers' money."""


@dataclass(frozen=True, slots=True)
class Desks:
    """The parts of the gateway the web front uses, picked once when the app is built.

    ``store`` is the writer's store: use it only in work handed to the :class:`Worker`.
    ``alerts`` and ``alarms`` are None without a safety file; ``commander`` is None on a
    gateway that cannot open lanes.
    """

    cashier: Cashier
    billing: Billing
    store: GatewayStore
    provider: PaymentProvider
    incidents: IncidentDesk
    matching: MatchPolicy
    commander: LaneCommander | None = None
    alerts: AlertDesk | None = None
    alarms: AlarmMonitor | None = None
    holds: HoldDesk | None = None
    handover: HandoverDesk | None = None
    complaints: ComplaintDesk | None = None
    patrols: PatrolConfig | None = None
    """The patrol regime (``patrol_file``); None: taps are not judged, the page says so."""


@dataclass(frozen=True, slots=True)
class WebState:
    """Everything the routes share, for one app."""

    desks: Desks
    settings: WebSettings
    time: SiteTime
    pages: Pages
    board: LaneBoard
    limiter: LoginLimiter
    worker: Worker
    reader: Reader
    pay_limiter: RateLimiter
    """Pay-page look-ups per client address."""
    pay_limiter_total: RateLimiter
    """Pay-page look-ups over the whole site (one key)."""
    tickets: TicketSigner
    wall: Clock
    """Logins and sessions: the wall clock (``logins.WALL``), never the site's ``time``."""


def web_state(request: Request) -> WebState:
    return cast(WebState, request.app.state.web)


State = Annotated[WebState, Depends(web_state)]


def _reader(state: State) -> Reader:
    return state.reader


def _worker(state: State) -> Worker:
    return state.worker


def _pages(state: State) -> Pages:
    return state.pages


def _time(state: State) -> SiteTime:
    return state.time


def _settings(state: State) -> WebSettings:
    return state.settings


def _desks(state: State) -> Desks:
    return state.desks


ReaderDep = Annotated[Reader, Depends(_reader)]
WorkerDep = Annotated[Worker, Depends(_worker)]
PagesDep = Annotated[Pages, Depends(_pages)]
TimeDep = Annotated[SiteTime, Depends(_time)]
SettingsDep = Annotated[WebSettings, Depends(_settings)]
DesksDep = Annotated[Desks, Depends(_desks)]


def _asked_day(time: TimeDep, day: str = "") -> date:
    """``?day=YYYY-MM-DD`` (else 400), or the site's today: the day picker of the patrol and
    cleaning pages."""
    if not day:
        return time.today()
    try:
        return date.fromisoformat(day)
    except ValueError as error:
        raise HTTPException(400, "day must be YYYY-MM-DD / 日期格式应为 YYYY-MM-DD") from error


AskedDay = Annotated[date, Depends(_asked_day)]


def _board(state: State) -> LaneBoard:
    return state.board


def _limiter(state: State) -> LoginLimiter:
    return state.limiter


def _tickets(state: State) -> TicketSigner:
    return state.tickets


def _wall(state: State) -> Clock:
    return state.wall


def _cashier(desks: DesksDep) -> Cashier:
    return desks.cashier


def _billing(desks: DesksDep) -> Billing:
    return desks.billing


def _merchants(desks: DesksDep) -> MerchantAccounts:
    return desks.billing.merchants


def _access(desks: DesksDep) -> AccessDesk:
    return desks.billing.access


def _payments(desks: DesksDep) -> PaymentDesk:
    return desks.billing.payments


def _store(desks: DesksDep) -> GatewayStore:
    return desks.store


def _commander(desks: DesksDep) -> LaneCommander | None:
    return desks.commander


def _incidents(desks: DesksDep) -> IncidentDesk:
    return desks.incidents


def _alerts(desks: DesksDep) -> AlertDesk | None:
    return desks.alerts


def _alarms(desks: DesksDep) -> AlarmMonitor | None:
    return desks.alarms


def _matching(desks: DesksDep) -> MatchPolicy:
    return desks.matching


def _patrols(desks: DesksDep) -> PatrolConfig | None:
    return desks.patrols


BoardDep = Annotated[LaneBoard, Depends(_board)]
LimiterDep = Annotated[LoginLimiter, Depends(_limiter)]
TicketsDep = Annotated[TicketSigner, Depends(_tickets)]
WallDep = Annotated[Clock, Depends(_wall)]
CashierDep = Annotated[Cashier, Depends(_cashier)]
BillingDep = Annotated[Billing, Depends(_billing)]
MerchantsDep = Annotated[MerchantAccounts, Depends(_merchants)]
AccessDep = Annotated[AccessDesk, Depends(_access)]
PaymentsDep = Annotated[PaymentDesk, Depends(_payments)]
StoreDep = Annotated[GatewayStore, Depends(_store)]
CommanderDep = Annotated[LaneCommander | None, Depends(_commander)]
IncidentsDep = Annotated[IncidentDesk, Depends(_incidents)]
AlertsDep = Annotated[AlertDesk | None, Depends(_alerts)]
AlarmsDep = Annotated[AlarmMonitor | None, Depends(_alarms)]
MatchingDep = Annotated[MatchPolicy, Depends(_matching)]
PatrolsDep = Annotated[PatrolConfig | None, Depends(_patrols)]
FormDep = Annotated[Fields, Depends(read_form)]
"""The POSTed form, CSRF-checked: declare it after the user, as the check comes second."""


# --- who is asking ----------------------------------------------------------------------------


SESSION_KEY = "sid"
"""The cookie's one claim: the id of a server-side session (:mod:`gateway.web.logins`)."""
ENDED_KEY = "ended"
"""Left in the cookie when the server ended its session (a password change, a disabled
account), so the login page says why instead of a silent redirect."""


def user_of(request: Request, reader: Reader, wall: Clock) -> User | None:
    """The logged-in user as the database says now: the cookie's session must still be
    open on the server (not logged out, not ended by a password change, not expired) and
    its user enabled; otherwise the cookie's claim is dropped (and why, if the server
    ended it). ``wall`` is the sessions' clock (:data:`gateway.web.logins.WALL`)."""
    session_id = request.session.get(SESSION_KEY)
    if not isinstance(session_id, str):
        return None
    with reader() as db:
        found = find_session(db, session_id, now=wall.now())
        live = found is not None and found.ended is None
        user = session_user(db, found.username) if found is not None and live else None
    if user is None:
        request.session.pop(SESSION_KEY, None)
        if found is not None and found.ended is not None:
            request.session[ENDED_KEY] = found.ended
    return user


def _current_user(request: Request, reader: ReaderDep, wall: WallDep) -> User | None:
    return user_of(request, reader, wall)


CurrentUser = Annotated[User | None, Depends(_current_user)]


@cache
def need(permission: str) -> Callable[[User | None], User]:
    """A dependency: the logged-in user, if their role has ``permission`` (else 401/403)."""
    if permission not in PERMISSIONS:
        raise KeyError(permission)

    def check(user: CurrentUser) -> User:
        if user is None:
            raise LoginRequired()
        if user.role not in PERMISSIONS[permission]:
            raise Forbidden()
        return user

    return check


Staff = Annotated[User, Depends(need("lanes"))]
"""Any staff role: guards, supervisors, managers."""
SessionsUser = Annotated[User, Depends(need("sessions"))]
Opener = Annotated[User, Depends(need("open"))]
Senior = Annotated[User, Depends(need("override"))]
"""Supervisors and managers."""
Auditor = Annotated[User, Depends(need("audit"))]
IncidentsUser = Annotated[User, Depends(need("incidents"))]
ReportUser = Annotated[User, Depends(need("report"))]
"""Any staff member reporting an incident at the scene (the incidents list is seniors')."""
PatrolsUser = Annotated[User, Depends(need("patrols"))]
"""Supervisors and managers: the patrol page."""
Manager = Annotated[User, Depends(need("reports"))]
Admin = Annotated[User, Depends(need("admin"))]
MerchantUser = Annotated[User, Depends(need("merchant"))]
