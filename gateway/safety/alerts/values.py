"""Alerts as the desk hands them out, and what an acknowledgement says."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias

from pydantic import Field

from gateway.safety.alerts.settings import Severity
from parkguard.configfile import StrictModel
from wire.contract.messages import Alert

AlertState: TypeAlias = Literal["raised", "notified", "acked", "resolved"]
_ACTIVE: Final = ("raised", "notified")


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert as the dashboard shows it."""

    alert_id: str
    key: str
    kind: str
    severity: Severity
    state: AlertState
    title_zh: str
    title_en: str
    detail: str
    team: str | None
    all_at_once: bool
    raised_at: str
    notified_at: str | None
    step: int
    """Highest ladder step reached so far (-1: nobody notified yet)."""
    round: int
    next_due: str | None
    acked_at: str | None
    acked_by: str | None
    acked_via: str | None
    resolved_at: str | None
    resolved_by: str | None
    resolve_reason: str | None

    @property
    def active(self) -> bool:
        return self.state != "resolved"

    @classmethod
    def of(cls, row: dict[str, Any]) -> AlertView:
        return cls(
            alert_id=row["alert_id"], key=row["key"], kind=row["kind"],
            severity=row["severity"], state=row["state"], title_zh=row["title_zh"],
            title_en=row["title_en"], detail=row["detail"], team=row["team"],
            all_at_once=bool(row["all_at_once"]), raised_at=row["raised_at"],
            notified_at=row["notified_at"], step=row["step"], round=row["round"],
            next_due=row["next_due"], acked_at=row["acked_at"], acked_by=row["acked_by"],
            acked_via=row["acked_via"], resolved_at=row["resolved_at"],
            resolved_by=row["resolved_by"], resolve_reason=row["resolve_reason"],
        )

    def wire(self, ts: datetime) -> Alert:
        """The ``alert/{id}`` message (``notified`` is still ``raised`` on the wire)."""
        state: Literal["raised", "acked", "resolved"] = (
            "raised" if self.state in _ACTIVE else self.state)  # type: ignore[assignment]
        return Alert(
            alert_id=self.alert_id, kind=self.kind[:32], severity=self.severity, state=state,
            escalation_step=max(self.step, 0), title_zh=self.title_zh[:128],
            title_en=self.title_en[:128], detail=self.detail[:1024],
            raised_at=datetime.fromisoformat(self.raised_at), acked_by=self.acked_by,
            ts=ts,
        )


@dataclass(frozen=True, slots=True)
class AckClaim:
    """What a valid signed link says: this person may acknowledge this alert until then."""

    alert_id: str
    person: str
    expires: datetime
    digest: str


class _AckMessage(StrictModel):
    """The staff app's acknowledgement on ``alert/{id}/ack/{staff}`` (who is in the topic).

    Not in the wire contract yet: see docs/alarms-and-alerts.md, "Contract additions".
    """

    v: Literal[1] = 1
    alert_id: str
    ts: datetime | None = None
    note: str = Field(default="", max_length=256)
