"""Assembles the gateway in order — store, audit, bus, service — and tears it down in reverse."""

from __future__ import annotations

import logging
import secrets
from zoneinfo import ZoneInfo

from broker.bus import BrokerAddress, MqttBus
from gateway.audit import AuditLog
from gateway.billing import Billing
from gateway.config import GatewayConfig
from gateway.merchants import MerchantAccounts
from gateway.passes import AccessDesk
from gateway.payments import PaymentDesk, SimulatedProvider
from gateway.pricing import SitePricing
from gateway.service import Gateway
from gateway.store import GatewayStore
from parkguard.clock import Clock

log = logging.getLogger(__name__)

TARIFF_ACTION = "tariff.activate"


def audit_tariff_change(audit: AuditLog, pricing: SitePricing) -> bool:
    """Record the tariff in force when it differs from the last one audited; say if it did.

    A tariff change is a money change: whoever edits the file, the trail shows
    when the gateway started charging by it and what it replaced.
    """
    current = pricing.audit_record()
    previous = None
    for entry in audit.entries():
        if entry.action == TARIFF_ACTION:
            previous = entry.after
    if previous == current:
        return False
    audit.record(
        actor="gateway", action=TARIFF_ACTION, subject=f"tariff:{pricing.source}",
        reason="gateway started with this tariff file", before=previous, after=current,
    )
    return True


class GatewayApp:
    """The running gateway process: one persistent MQTT session, one SQLite file."""

    def __init__(self, config: GatewayConfig, *, clock: Clock) -> None:
        self.config = config
        self.pricing = SitePricing.from_file(config.tariff_file)
        self.store = GatewayStore.open(config.database)
        db, zone = self.store.db, ZoneInfo(config.timezone)
        self.audit = AuditLog(db, clock=clock)
        self.provider = SimulatedProvider(secrets.token_bytes(32), clock)
        self.billing = Billing(
            pricing=self.pricing,
            merchants=MerchantAccounts(db, clock=clock, audit=self.audit, site_zone=zone),
            access=AccessDesk(db, clock=clock, audit=self.audit),
            payments=PaymentDesk(db, clock=clock, audit=self.audit, provider=self.provider,
                                 grace_minutes=config.payments.grace_minutes),
        )
        self.bus = MqttBus(
            BrokerAddress.from_settings(config.broker),
            client_id=f"gateway-{config.site}",
            persistent=True,
        )
        self.service = Gateway(
            site=config.site, clock=clock, store=self.store, bus=self.bus, billing=self.billing,
            matching=config.matching,
        )

    def audit_tariff(self) -> bool:
        """Write the tariff in force to the audit log if it changed since the last start."""
        return audit_tariff_change(self.audit, self.pricing)

    def start(self) -> GatewayApp:
        self.audit_tariff()
        self.service.start()
        self.bus.start()
        return self

    def stop(self) -> None:
        self.bus.stop()
        self.service.stop()
        self.store.close()

    def __enter__(self) -> GatewayApp:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
