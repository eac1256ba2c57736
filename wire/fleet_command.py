"""Fleet commands to a site and the site's acknowledgement: the wire shapes and the signature.

Why Ed25519 and not the lanes' HMAC: the fleet signs, every site only verifies, so a site
holds the fleet's *public* key — a stolen site gateway cannot forge a command to another site.
The signature covers every field but itself, as canonical JSON (sorted keys, no spaces), so
one changed byte anywhere is refused (docs/fleet.md, "Fleet commands").

Topics (under the site root; never bridged *out*, so NATS has nothing to echo back):

- ``parkguard/v1/{site}/fleet/command/{kind}`` — the fleet to the site, bridged **in** only;
  on the site broker only the bridge writes it and the gateway reads it.
- ``parkguard/v1/{site}/fleet/ack`` — the gateway's answer, bridged **out** to the fleet.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from wire.contract.topics import check_segment, site_root

CommandKind = Literal["tariff", "pass", "list", "open"]
COMMAND_KINDS: tuple[CommandKind, ...] = ("tariff", "pass", "list", "open")
AckStatus = Literal["applied", "refused"]
_ID = r"^[0-9a-f]{32}$"


def command_topic(site: str, kind: CommandKind) -> str:
    return f"{site_root(site)}/fleet/command/{kind}"


def command_filter(site: str) -> str:
    return f"{site_root(site)}/fleet/command/+"


def ack_topic(site: str) -> str:
    return f"{site_root(site)}/fleet/ack"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FleetCommand(_Strict):
    """One signed order from the fleet to one site. ``command_id`` is also the nonce."""

    command_id: str = Field(pattern=_ID, description="random 128-bit hex: the nonce")
    site: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    kind: CommandKind
    issuer: str = Field(min_length=1, max_length=64, description="who at the fleet")
    reason: str = Field(min_length=1, max_length=256, description="why, for the audit log")
    issued: AwareDatetime
    expires: AwareDatetime
    body: dict[str, Any] = Field(description="what to do; its shape depends on kind")
    signature: str = Field(default="", max_length=128, description="base64 Ed25519")

    def signed_bytes(self) -> bytes:
        fields = self.model_dump(mode="json", exclude={"signature"})
        return json.dumps(fields, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")

    def signed(self, key: Ed25519PrivateKey) -> FleetCommand:
        signature = base64.b64encode(key.sign(self.signed_bytes())).decode("ascii")
        return self.model_copy(update={"signature": signature})

    def verify(self, public: Ed25519PublicKey) -> bool:
        try:
            public.verify(base64.b64decode(self.signature, validate=True), self.signed_bytes())
        except (InvalidSignature, ValueError):
            return False
        return True

    def encode(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


class FleetAck(_Strict):
    """The site's answer to one command: applied, or refused with the reason."""

    command_id: str = Field(max_length=64)
    site: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    kind: str = Field(max_length=16)
    status: AckStatus
    reason: str = Field(default="", max_length=512)
    version: str | None = Field(default=None, max_length=64,
                                description="the tariff version now in force (tariff only)")
    ts: AwareDatetime

    def encode(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


def parse_command_topic(topic: str) -> tuple[str, str] | None:
    """``(site, kind)`` of a fleet command topic, or None when it is not one."""
    parts = topic.split("/")
    if len(parts) == 6 and parts[:2] == ["parkguard", "v1"] and parts[3:5] == ["fleet",
                                                                              "command"]:
        return check_segment(parts[2], what="site"), parts[5]
    return None


def is_ack_topic(topic: str) -> str | None:
    """The site of a fleet ack topic, or None."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[:2] == ["parkguard", "v1"] and parts[3:] == ["fleet", "ack"]:
        return parts[2]
    return None


def public_key_from_hex(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))


def expired(command: FleetCommand, now: datetime) -> bool:
    return command.expires <= now
