"""Pages as the people see them: the site's local time, the templates and their filters,
and the one-line messages a page shows after a form was sent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from gateway.web.access import may, nav
from gateway.web.forms import BadForm
from gateway.web.security import CSRF_FIELD, csrf_token
from gateway.web.settings import WebSettings
from gateway.web.users import ROLE_LABELS, User
from gateway.web.words import say
from parkguard.clock import Clock
from parkguard.core.privacy import mask_phone, mask_phones_in, mask_plate
from parkguard.core.tariffs import format_yuan
from parkguard.errors import ParkGuardError

TEMPLATES = Path(__file__).parent / "templates"


class SiteTime:
    """The gateway's clock, shown in the site's time zone (the database keeps UTC)."""

    def __init__(self, clock: Clock, zone: ZoneInfo) -> None:
        self.clock = clock
        self.zone = zone

    def now(self) -> datetime:
        return self.clock.now()

    def today(self) -> date:
        """The site's date now (a report's default day)."""
        return self.now().astimezone(self.zone).date()

    def month(self) -> str:
        """The site's month now, ``YYYY-MM`` (a statement's default)."""
        return self.now().astimezone(self.zone).strftime("%Y-%m")

    def local(self, value: str | datetime | None) -> str:
        return self._shown(value, "%Y-%m-%d %H:%M:%S")

    def hm(self, value: str | datetime | None) -> str:
        return self._shown(value, "%H:%M")

    def hms(self, value: str | datetime | None) -> str:
        """Time of day to the second (a lane card's reads and notices)."""
        return self._shown(value, "%H:%M:%S")

    def _shown(self, value: str | datetime | None, layout: str) -> str:
        """``value`` in the site's zone; a stored time that cannot be converted (year 9999
        from before the contract bounded times, or not a time at all) is shown as stored:
        one odd record must never take a page down."""
        if value is None or value == "":
            return "—"
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00")) \
                if isinstance(value, str) else value
            return moment.astimezone(self.zone).strftime(layout)
        except (ValueError, OverflowError):
            return value if isinstance(value, str) else value.isoformat()


class Pages:
    """The templates with the site's filters, and what every page shows around its body:
    the navigation the user may open, the CSRF token, the flash messages."""

    def __init__(self, time: SiteTime, settings: WebSettings, site: str) -> None:
        self.templates = Jinja2Templates(directory=str(TEMPLATES))
        self.env = self.templates.env
        self.env.filters.update(yuan=format_yuan, local=time.local, hm=time.hm, hms=time.hms,
                                say=say,
                                mask_plate=mask_plate, mask_phone=mask_phone,
                                mask_phones=mask_phones_in)
        self.env.globals.update(site=site, roles=ROLE_LABELS, poll_ms=settings.live_poll_ms)

    def render(self, request: Request, name: str, user: User | None = None,
               status_code: int = 200, **context: Any) -> HTMLResponse:
        flash = request.session.pop("flash", [])
        base = {"user": user, "nav": nav(user), "csrf": csrf_token(request),
                "csrf_field": CSRF_FIELD, "flash": flash,
                "may": lambda perm: may(user, perm)}
        return self.templates.TemplateResponse(request, name, {**base, **context},
                                               status_code=status_code)

    @staticmethod
    def flash(request: Request, kind: str, text: str) -> None:
        """A message for the next page this browser renders (the last five are kept)."""
        messages = list(request.session.get("flash", []))
        messages.append([kind, text])
        request.session["flash"] = messages[-5:]

    async def act(self, request: Request, back: str, work: Callable[[], Awaitable[None]],
                  done: str) -> Response:
        """Run an office action, flash ``done`` or why it was refused, and go ``back``."""
        try:
            await work()
            self.flash(request, "ok", done)
        except (BadForm, ParkGuardError, ValueError, LookupError) as error:
            self.flash(request, "error", str(error))
        return RedirectResponse(back, status_code=303)
