"""The gateway's configuration file (TOML): site, broker, database, tariff."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from gateway.pricing import EXAMPLE_TARIFF
from parkguard.configfile import BrokerSettings, StrictModel
from parkguard.core.plates import MatchPolicy


class PaymentSettings(StrictModel):
    """Who takes drivers' money, and how long a driver has to leave after paying."""

    provider: Literal["simulated"] = Field(
        default="simulated",
        description="payment provider; `simulated` signs its callbacks with a key made at start "
                    "(tests, demo). Real providers plug in behind gateway.payments.PaymentProvider")
    grace_minutes: int = Field(default=15, ge=0, le=240,
                               description="minutes to reach the exit after paying in advance")


class GatewayConfig(StrictModel):
    """Everything the site gateway needs to run."""

    site: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="site slug")
    timezone: str = Field(default="Asia/Shanghai", description="site-local zone for screens")
    database: Path = Field(default=Path("var/gateway.db"), description="SQLite file")
    broker: BrokerSettings = BrokerSettings()
    tariff_file: Path = Field(
        default=EXAMPLE_TARIFF,
        description="tariff file (see docs/tariffs.md); `parkguard tariff check` validates it",
    )
    payments: PaymentSettings = PaymentSettings()
    matching: MatchPolicy = Field(
        default=MatchPolicy(), description="when a dirty exit read counts as a car inside"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from error
        return value
