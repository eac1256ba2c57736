"""The fleet service's configuration (``parkguard fleet run -c fleet.toml``), bounded fields.

Secrets (the NATS password, the PostgreSQL DSN, which holds a password) are ``SecretStr``: a
config error names the field and the reason, never the value (``parkguard.configfile``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from parkguard.configfile import StrictModel

_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class NatsSettings(StrictModel):
    servers: tuple[str, ...] = Field(
        min_length=1, max_length=16,
        description="every node of the NATS cluster, nats://host:port; the client fails over")
    user: str = Field(default="fleet", min_length=1, max_length=64)
    password: SecretStr = Field(min_length=1, max_length=256)
    stream: str = Field(default="PARKGUARD", pattern=_NAME,
                        description="the JetStream stream that keeps parkguard.v1.>")
    durable: str = Field(default="fleet-ingest", pattern=_NAME,
                         description="the durable pull consumer's name (its place in the stream)")
    replicas: int = Field(default=3, ge=1, le=5, description="copies of the stream kept")
    max_age_days: int = Field(default=30, ge=1, le=3650,
                              description="how long the stream keeps a message")
    batch: int = Field(default=256, ge=1, le=10_000,
                       description="messages fetched, written in one transaction and acked")
    ack_wait_s: float = Field(default=30.0, ge=1.0, le=3600.0,
                              description="unacknowledged messages come again after this")
    max_ack_pending: int = Field(default=20_000, ge=1, le=1_000_000)

    @field_validator("servers")
    @classmethod
    def _urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not url.startswith(("nats://", "tls://")) or len(url) > 256:
                raise ValueError(f"{url[:64]!r} is not a nats:// or tls:// URL")
        return value


class PostgresSettings(StrictModel):
    dsn: SecretStr = Field(min_length=1, max_length=1024,
                           description="libpq connection string of the fleet database")
    retry_s: float = Field(default=1.0, ge=0.05, le=60.0,
                           description="pause before reconnecting after the database went away")


class CommandSettings(StrictModel):
    """``[commands]``: how the fleet signs what it sends to sites (docs/fleet.md)."""

    key_file: Path = Field(description="the fleet's Ed25519 signing key, PEM (mode 0600); "
                                       "`parkguard fleet keygen` makes it")
    ttl_s: int = Field(default=900, ge=10, le=7 * 86_400,
                       description="a command expires this long after it is signed; keep it "
                                   "within every site's [fleet] max_ttl_s")


class FleetWebSettings(StrictModel):
    """``[web]``: the fleet dashboard (``parkguard fleet web``)."""

    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    port: int = Field(default=8090, ge=0, le=65535)
    secret_key_file: Path = Field(description="signs the session cookie; made (0600) if missing")
    timezone: str = Field(default="Asia/Shanghai", min_length=1, max_length=64,
                          description="the sites' zone: what 'today' means on the dashboard")
    https_only: bool = Field(default=False, description="cookies only over HTTPS (behind TLS)")


class FleetConfig(StrictModel):
    """``[nats]`` and ``[postgres]``: where the stream is and where it goes; ``[commands]``
    to send signed commands to sites."""

    nats: NatsSettings
    postgres: PostgresSettings
    commands: CommandSettings | None = None
    web: FleetWebSettings | None = None
