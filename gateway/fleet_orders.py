"""Signed fleet commands at the site: verify, refuse replays and stale orders, apply, ack.

Why a desk of its own: a fleet command changes money (a tariff version, a pass) or lifts a
barrier, so it goes through exactly the desks a person at the site would use (the tariff in
force, :class:`AccessDesk`, :class:`LaneCommander`), each auditing its own change, and this
desk adds one ``fleet.command`` audit entry per command, applied or refused, with the reason.
Nothing is applied before the signature, the site, the time window and the nonce check out.

Runs on the gateway's worker (one SQLite connection, one thread): the bus handler only hands
the message over.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from sqlite_utils import Database

from gateway.lanes.commands import LaneCommander
from gateway.money.passes import AccessDesk
from gateway.money.pricing import SitePricing
from gateway.records.audit import AuditLog
from parkguard.clock import Clock
from parkguard.configfile import StrictModel
from parkguard.core.tariffs import parse_tariff_document
from parkguard.errors import ParkGuardError
from wire.bus import Bus
from wire.fleet_command import (
    COMMAND_KINDS,
    CommandKind,
    FleetAck,
    FleetCommand,
    ack_topic,
    public_key_from_hex,
)

log = logging.getLogger(__name__)
SEEN_TABLE = "fleet_commands_seen"


class FleetLinkSettings(StrictModel):
    """``[fleet]`` in the gateway config: whose commands to obey, within what bounds."""

    public_key: str = Field(pattern=r"^[0-9a-f]{64}$",
                            description="the fleet's Ed25519 public key, 64 hex digits "
                                        "(`parkguard fleet keygen` prints it)")
    max_ttl_s: int = Field(default=3600, ge=10, le=7 * 86_400,
                           description="a command valid for longer than this is refused")
    skew_s: int = Field(default=30, ge=0, le=600,
                        description="how far in the future a command's issue time may be")
    accept: tuple[CommandKind, ...] = Field(
        default=COMMAND_KINDS, min_length=1, max_length=4,
        description="which kinds of command this site obeys (tariff, pass, list, open)")

    @field_validator("public_key")
    @classmethod
    def _loads(cls, value: str) -> str:
        public_key_from_hex(value)
        return value


class Refused(ParkGuardError, ValueError):
    """A fleet command that is not applied; the message is the ack's reason."""


class FleetOrders:
    """Verifies and applies fleet commands; publishes each outcome on ``…/fleet/ack``."""

    def __init__(self, *, site: str, settings: FleetLinkSettings, db: Database, clock: Clock,
                 audit: AuditLog, publisher: Bus, pricing: SitePricing,
                 tariff_file: Path, access: AccessDesk, lanes: LaneCommander,
                 on_tariff: Callable[[], object] = lambda: None,
                 dead_letter: Callable[[str, bytes, str], None] = lambda *_: None) -> None:
        self.site = site
        self.settings = settings
        self._key = public_key_from_hex(settings.public_key)
        self._db, self._clock, self._audit = db, clock, audit
        self._publisher = publisher
        self._pricing, self._tariff_file = pricing, tariff_file
        self._access, self._lanes = access, lanes
        self._on_tariff = on_tariff
        self._dead_letter = dead_letter
        db.execute(f"CREATE TABLE IF NOT EXISTS {SEEN_TABLE} (command_id TEXT PRIMARY KEY, "
                   "expires TEXT NOT NULL, outcome TEXT NOT NULL)")

    def on_message(self, topic: str, payload: bytes) -> FleetAck:
        """Handle one command (on the worker) and acknowledge it."""
        now = self._clock.now()
        try:
            command = FleetCommand.model_validate_json(payload)
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "payload"
            log.warning("fleet: malformed command on %s: %s", topic, field)
            self._dead_letter(topic, payload, f"fleet_command: {field}: {first['msg']}")
            ack = FleetAck(command_id=_id_of(payload), site=self.site,
                           kind=topic.rsplit("/", 1)[-1][:16], status="refused",
                           reason=f"malformed: {field}: {first['msg']}"[:512], ts=now)
            self._publisher.publish(ack_topic(self.site), ack.encode())
            return ack
        try:
            self._check(topic, command, now)
            version = self._apply(command)
            ack = FleetAck(command_id=command.command_id, site=self.site, kind=command.kind,
                           status="applied", version=version, ts=now)
        except Refused as error:
            ack = FleetAck(command_id=command.command_id, site=self.site, kind=command.kind,
                           status="refused", reason=str(error)[:512], ts=now)
        self._audit.record(
            actor=f"fleet:{command.issuer}", action="fleet.command",
            subject=f"fleet-command:{command.command_id}",
            reason=command.reason if ack.status == "applied" else f"refused: {ack.reason}",
            after={"kind": command.kind, "status": ack.status, "reason": ack.reason,
                   "issued": command.issued.isoformat(), "expires": command.expires.isoformat(),
                   **({"version": ack.version} if ack.version else {})})
        self._publisher.publish(ack_topic(self.site), ack.encode())
        log.info("fleet: command %s (%s) %s %s", command.command_id, command.kind, ack.status,
                 ack.reason)
        return ack

    # --- checks ------------------------------------------------------------------------------

    def _check(self, topic: str, command: FleetCommand, now: datetime) -> None:
        if not command.verify(self._key):
            raise Refused("signature: not signed by the fleet's key")
        if command.site != self.site:
            raise Refused(f"site: addressed to {command.site!r}, this is {self.site!r}")
        if not topic.endswith(f"/fleet/command/{command.kind}"):
            raise Refused(f"topic: a {command.kind} command on {topic.rsplit('/', 1)[-1]}'s "
                          "topic")
        if command.kind not in self.settings.accept:
            raise Refused(f"kind: this site does not accept {command.kind} commands")
        if command.expires <= now:
            raise Refused(f"expired: at {command.expires.isoformat()}")
        if command.issued > now + timedelta(seconds=self.settings.skew_s):
            raise Refused(f"issued: {command.issued.isoformat()} is in the future")
        if command.expires - command.issued > timedelta(seconds=self.settings.max_ttl_s):
            raise Refused(f"expires: valid longer than max_ttl_s={self.settings.max_ttl_s}")
        self._forget_expired(now)
        seen = list(self._db.query("SELECT outcome FROM fleet_commands_seen WHERE command_id = ?",
                                   [command.command_id]))
        if seen:
            raise Refused("replayed: this command id was already handled")
        with self._db.conn:  # spent before anything is applied: a crash cannot replay it
            self._db.execute("INSERT INTO fleet_commands_seen VALUES (?, ?, ?)",
                             [command.command_id, command.expires.isoformat(), "seen"])

    def _forget_expired(self, now: datetime) -> None:
        """A nonce is needed only until its command expires (then the expiry refuses it)."""
        for row in list(self._db.query("SELECT command_id, expires FROM fleet_commands_seen")):
            if parse_utc(row["expires"]) < now - timedelta(seconds=self.settings.skew_s):
                self._db.execute("DELETE FROM fleet_commands_seen WHERE command_id = ?",
                                 [row["command_id"]])

    # --- applying ----------------------------------------------------------------------------

    def _apply(self, command: FleetCommand) -> str | None:
        actor = f"fleet:{command.issuer}"
        body = command.body
        try:
            if command.kind == "tariff":
                return self._tariff(body, actor, command.reason)
            if command.kind == "pass":
                self._pass(body, actor, command.reason)
            elif command.kind == "list":
                self._list(body, actor, command.reason)
            else:
                self._lanes.open(_text(body, "lane"), actor=actor, reason=command.reason)
        except Refused:
            raise
        except (ParkGuardError, ValueError, KeyError, TypeError) as error:
            raise Refused(f"{command.kind}: {error}") from error
        return None

    def _tariff(self, body: dict[str, Any], actor: str, reason: str) -> str:
        text, version = _text(body, "tariff_toml"), _text(body, "version")
        document = parse_tariff_document(text, source=f"fleet:{version}")
        if version not in {t.version for t in document.tariffs}:
            raise Refused(f"version: {version!r} is not a version in the tariff sent")
        before = self._pricing.audit_record()
        _replace_file(self._tariff_file, text)  # lanes price offline from the same file
        self._pricing.document = document
        self._pricing.source = f"fleet:{version}"
        self._audit.record(actor=actor, action="tariff.activate",
                           subject=f"tariff:fleet:{version}", reason=reason, before=before,
                           after=self._pricing.audit_record())
        self._on_tariff()
        return version

    def _pass(self, body: dict[str, Any], actor: str, reason: str) -> None:
        action = _text(body, "action")
        if action == "issue":
            self._access.issue_pass(
                body.get("kind", "monthly"), body["plates"], parse_utc(_text(body, "valid_from")),
                parse_utc(_text(body, "valid_until")), _text(body, "holder"), actor, reason,
                phone=body.get("phone"), vehicle_class=body.get("vehicle_class"),
                max_inside=int(body.get("max_inside", 1)))
        elif action == "renew":
            self._access.renew(_text(body, "pass_id"), parse_utc(_text(body, "valid_until")),
                               actor, reason)
        elif action == "revoke":
            self._access.revoke(_text(body, "pass_id"), actor, reason)
        else:
            raise Refused(f"pass: action {action!r} is not issue, renew or revoke")

    def _list(self, body: dict[str, Any], actor: str, reason: str) -> None:
        action, name, plate = _text(body, "action"), _text(body, "list"), _text(body, "plate")
        if name not in ("whitelist", "blacklist"):
            raise Refused(f"list: {name!r} is not whitelist or blacklist")
        if action == "add":
            until = body.get("until")
            self._access.list_plate(name, plate, reason, actor,  # type: ignore[arg-type]
                                    until=None if until is None else parse_utc(str(until)))
        elif action == "remove":
            self._access.unlist(name, plate, actor, reason)  # type: ignore[arg-type]
        else:
            raise Refused(f"list: action {action!r} is not add or remove")


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Refused(f"body.{name}: missing")
    return value


def parse_utc(text: str) -> datetime:
    """An ISO time with its offset; a time without one is refused (we never guess a zone)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise Refused(f"time {text[:40]!r} has no UTC offset")
    return moment


def _id_of(payload: bytes) -> str:
    return "malformed:" + hashlib.sha256(payload).hexdigest()[:40]


def _replace_file(path: Path, text: str) -> None:
    """Write the new tariff beside the old one and rename over it: never half a file."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temp, path)
