"""The audit log for supervisors and managers: the latest entries, filtered by action.
Only a manager sees the phone numbers in a reason unmasked."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.storage import queries
from gateway.web.deps import Auditor, PagesDep, ReaderDep
from parkguard.core.privacy import mask_phones_in

router = APIRouter()


@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request, user: Auditor, pages: PagesDep, reader: ReaderDep,
          action: str = "") -> Response:
    with reader() as db:
        entries = queries.audit_entries(db, last=300)
    entries.reverse()
    if action:
        entries = [e for e in entries if e.action.startswith(action)]
    return pages.render(request, "audit.html", user, entries=entries, action=action,
                        reveal=user.role == "manager")


@router.get("/api/audit")
def api_audit(_user: Auditor, reader: ReaderDep) -> dict[str, Any]:
    with reader() as db:
        entries = queries.audit_entries(db, last=100)
    return {"entries": [{"seq": e.seq, "ts": e.ts, "actor": e.actor, "action": e.action,
                         "subject": e.subject, "reason": mask_phones_in(e.reason)}
                        for e in reversed(entries)]}
