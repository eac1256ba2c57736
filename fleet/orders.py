"""Sending signed commands to sites: build, sign with the fleet's key, record, publish.

The command is recorded in ``fleet_commands`` *before* it is published (an order the fleet
cannot account for is never sent), then published into the stream on the site's
``parkguard.v1.{site}.fleet.command.{kind}`` subject, which the site's bridge subscribes to.
The site's answer comes back on ``…/fleet/ack`` and the ingest service writes it to
``fleet_acks`` (docs/fleet.md, "Fleet commands").
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from nats.js import JetStreamContext

from fleet.natsconf import topic_to_subject
from parkguard.errors import ConfigError
from wire.fleet_command import CommandKind, FleetCommand, command_topic

_RECORD = """INSERT INTO fleet_commands (command_id, site, kind, version, issuer, reason, issued,
expires, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"""


def create_key(path: Path) -> Ed25519PrivateKey:
    """A new fleet signing key in ``path`` (PEM, mode 0600); refuses to overwrite one."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "wb") as out:
        out.write(pem)
    return key


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: not a readable fleet signing key ({type(error).__name__})"
                          ) from error
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: the fleet signing key must be Ed25519")
    return key


def public_hex(key: Ed25519PrivateKey) -> str:
    """What goes into each site's ``[fleet] public_key``."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def build(key: Ed25519PrivateKey, *, site: str, kind: CommandKind, body: Mapping[str, Any],
          issuer: str, reason: str, now: datetime, ttl: timedelta) -> FleetCommand:
    return FleetCommand(command_id=secrets.token_hex(16), site=site, kind=kind, issuer=issuer,
                        reason=reason, issued=now, expires=now + ttl,
                        body=dict(body)).signed(key)


def record(conn: psycopg.Connection[tuple[object, ...]],
           commands: Sequence[FleetCommand]) -> None:
    with conn.transaction():
        conn.cursor().executemany(_RECORD, [
            (c.command_id, c.site, c.kind, c.body.get("version") if c.kind == "tariff" else None,
             c.issuer, c.reason, c.issued, c.expires,
             json.dumps({k: v for k, v in c.body.items() if k != "tariff_toml"}))
            for c in commands])


async def publish(js: JetStreamContext, command: FleetCommand) -> None:
    """Into the stream (kept, replicated) on the subject the site's bridge subscribes to."""
    await js.publish(topic_to_subject(command_topic(command.site, command.kind)),
                     command.encode(), headers={"Nats-Msg-Id": command.command_id})


_VERSIONS = """SELECT s.site, v.version, v.ts FROM (SELECT DISTINCT site FROM fleet_commands
UNION SELECT site FROM fleet_acks) s LEFT JOIN site_tariff_versions v ON v.site = s.site
ORDER BY s.site"""
_ACKS = """SELECT a.site, a.status, a.reason, a.version FROM fleet_acks a
WHERE a.command_id = %s ORDER BY a.site"""


def tariff_versions(conn: psycopg.Connection[tuple[object, ...]]
                    ) -> list[tuple[str, str | None, datetime | None]]:
    """Each site the fleet commanded and the tariff version it last applied (None: none)."""
    return [(str(r[0]), None if r[1] is None else str(r[1]),
             r[2] if isinstance(r[2], datetime) else None)
            for r in conn.execute(_VERSIONS).fetchall()]


def acks_of(conn: psycopg.Connection[tuple[object, ...]],
            command_id: str) -> list[tuple[str, str, str, str | None]]:
    return [(str(r[0]), str(r[1]), str(r[2]), None if r[3] is None else str(r[3]))
            for r in conn.execute(_ACKS, [command_id]).fetchall()]
