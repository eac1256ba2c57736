"""Building the configured payment provider, and refusing play money outside the demo."""

from __future__ import annotations

import secrets
from typing import Literal

from gateway.money.payments.provider import NoProvider, PaymentProvider
from gateway.money.payments.settings import AlipaySettings, WeChatPaySettings
from gateway.money.payments.simulated import SimulatedProvider
from parkguard.clock import Clock
from parkguard.errors import ConfigError

ProviderName = Literal["none", "simulated", "wechat", "alipay"]

SIMULATED_REFUSED = (
    "payments: provider = \"simulated\" is play money: it marks fees paid while nobody pays. "
    "Only `parkguard demo` and tests may run it. Set [payments] provider to \"wechat\" or "
    "\"alipay\" (with its section) or \"none\" (cash at the dashboard only); see "
    "docs/payments.md")


def build_provider(name: ProviderName, *, clock: Clock, wechat: WeChatPaySettings | None = None,
                   alipay: AlipaySettings | None = None,
                   allow_simulated: bool = False) -> PaymentProvider:
    """The provider ``[payments] provider`` names, its keys read from their files.

    Raises :class:`ConfigError` for ``simulated`` unless ``allow_simulated`` (the demo and
    tests say so), for a provider without its section, and for an unreadable key file.
    """
    if name == "none":
        return NoProvider()
    if name == "simulated":
        if not allow_simulated:
            raise ConfigError(SIMULATED_REFUSED)
        return SimulatedProvider(secrets.token_bytes(32), clock)
    if name == "wechat":
        if wechat is None:
            raise ConfigError("payments: provider = \"wechat\" needs [payments.wechat]")
        from gateway.money.payments.wechat import WeChatPayProvider

        return WeChatPayProvider.from_settings(wechat, clock)
    if name == "alipay":
        if alipay is None:
            raise ConfigError("payments: provider = \"alipay\" needs [payments.alipay]")
        from gateway.money.payments.alipay import AlipayProvider

        return AlipayProvider.from_settings(alipay, clock)
    raise ConfigError(f"payments: unknown provider {name!r}")
