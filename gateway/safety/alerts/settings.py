"""The roster and the escalation ladder: who is on which shift, who is told at each step,
and the key that signs acknowledgement links."""

from __future__ import annotations

import os
import secrets
from datetime import datetime, time
from pathlib import Path
from typing import Final, Literal, Self, TypeAlias
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, model_validator

from gateway.safety.alerts.errors import AlertError
from parkguard.configfile import StrictModel
from parkguard.core.zones import TimeZoneName

Role: TypeAlias = Literal["guard", "squad_leader", "captain", "manager"]
ROLES: Final[tuple[Role, ...]] = ("guard", "squad_leader", "captain", "manager")
Severity: TypeAlias = Literal["info", "warning", "critical"]


_SEGMENT = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class Shift(StrictModel):
    """One shift of the roster; it lasts until the next shift's start (site-local time)."""

    name: str = Field(pattern=_SEGMENT, description="shift name, e.g. a, b, c")
    start: time = Field(description="site-local start time, e.g. 08:00")


class Person(StrictModel):
    """Someone alerts can reach."""

    id: str = Field(pattern=_SEGMENT,
                    description="staff id: the same as the staff app's user (`staff-<id>`)")
    name: str = Field(min_length=1, max_length=64)
    role: Role | None = Field(
        default=None, description="rung of the escalation ladder; none: reached only as a "
                                  "team member or when everyone on duty is alerted")
    shift: str | None = Field(
        default=None, description="the shift this person works; none: always reachable "
                                  "(managers, on-call engineers)")
    teams: tuple[str, ...] = Field(
        default=(), description="teams this person belongs to, e.g. facilities, flood")
    contacts: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="channel label → Apprise URL (dingtalk://, wecombot://, feishu://, "
                    "mailto://, mailtos://, json://, ntfy://, ...); secret: a URL carries "
                    "the channel's token or password")


class Step(StrictModel):
    """One rung of the escalation ladder: who, and how long after the alert was raised."""

    role: Role
    after_min: float = Field(ge=0, description="minutes after the raise (and after each "
                                               "repeat of the ladder)")


DEFAULT_STEPS: Final = (
    Step(role="guard", after_min=0),
    Step(role="squad_leader", after_min=5),
    Step(role="captain", after_min=10),
    Step(role="manager", after_min=15),
)


class AlertSettings(StrictModel):
    """The roster, the escalation ladder and the acknowledgement links."""

    timezone: TimeZoneName = Field(default="Asia/Shanghai",
                                   description="zone of the shift start times")
    shifts: tuple[Shift, ...] = Field(min_length=1, description="the shifts of a day")
    people: tuple[Person, ...] = Field(min_length=1)
    steps: tuple[Step, ...] = Field(default=DEFAULT_STEPS, min_length=1)
    repeat_min: float = Field(
        default=30, gt=0, description="the ladder starts again this often until acknowledged")
    ack_base_url: str = Field(
        default="http://localhost:8080/alerts/ack",
        description="dashboard page that takes `?t=<token>`; the link in every message")
    ack_link_ttl_min: int = Field(default=24 * 60, gt=0, le=14 * 24 * 60)
    ack_key_file: Path | None = Field(
        default=None, description="secret for the signed links (made 0600 if missing); none: "
                                  "a fresh key each start (old links stop working)")
    owner_message_url: SecretStr | None = Field(
        default=None, description="Apprise URL template with {phone} for messages to car "
                                  "owners (an SMS gateway; secret: it carries the "
                                  "gateway's credentials); none: not sent")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [s.name for s in self.shifts]
        if len(set(names)) != len(names):
            raise ValueError("shift names must be unique")
        if len({s.start for s in self.shifts}) != len(self.shifts):
            raise ValueError("two shifts start at the same time")
        ids = [p.id for p in self.people]
        if len(set(ids)) != len(ids):
            raise ValueError("person ids must be unique")
        for person in self.people:
            if person.shift is not None and person.shift not in names:
                raise ValueError(f"{person.id}: unknown shift {person.shift!r}")
        delays = [s.after_min for s in self.steps]
        if delays != sorted(delays):
            raise ValueError("escalation steps must come in order of after_min")
        if self.repeat_min <= delays[-1]:
            raise ValueError("repeat_min must be longer than the last step's after_min")
        return self

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def shift_at(self, moment: datetime) -> str:
        """The shift on duty at ``moment``: the one that started last, wrapping midnight."""
        local = moment.astimezone(self.zone()).time()
        ordered = sorted(self.shifts, key=lambda s: s.start)
        current = ordered[-1]  # before the first start of the day: yesterday's last shift
        for shift in ordered:
            if shift.start <= local:
                current = shift
        return current.name

    def on_duty(self, moment: datetime) -> list[Person]:
        shift = self.shift_at(moment)
        return [p for p in self.people if p.shift is None or p.shift == shift]


def load_or_create_key(path: Path) -> bytes:
    """The link-signing secret kept in ``path`` (32 random bytes, made 0600 if missing)."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
    if len(key) < 16:
        raise AlertError(f"{path}: the ack key must be at least 16 bytes")
    return key
