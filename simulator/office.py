"""The car park office during a simulated day: passes, a merchant's coupons, drivers paying
on the pay page — so the demo's money looks like a real site's, not only visitors at exit.

Everything goes through the same calls the dashboard makes (``Gateway.call`` on the
worker, the pay page's ``prepay`` and the provider's signed callback).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Protocol

from gateway.money.merchants import CouponGrant
from simulator.site import SimulatedSite
from simulator.traffic import Visit


class _Car(Protocol):
    """A planned visit of either planner (the plain day's or a scenario's)."""

    @property
    def plate(self) -> str: ...

MERCHANT = "M001"
#: Demo logins for the dashboard (user, role, merchant), printed by ``parkguard demo``.
DEMO_USERS = (("guard", "guard", None), ("supervisor", "supervisor", None),
              ("manager", "manager", None), ("starbucks", "merchant", MERCHANT))


@dataclass
class Office:
    """What the office did, for the summary."""

    passes: int = 0
    coupons: int = 0
    prepaid: int = 0
    prepay_plates: set[str] = field(default_factory=set)


def open_the_office(site: SimulatedSite, visits: Sequence[_Car], *, seed: int) -> Office:
    """Before the day: monthly and family passes for a few regulars, a prepaid merchant
    that gives "park 2 h free" coupons to about one visitor in ten, and the drivers (about
    one in five) who will pay on the pay page before walking back to their car."""
    rng = random.Random(seed)
    office = Office()
    gateway, now = site.gateway, site.clock.now()
    access, merchants = gateway.billing.access, gateway.billing.merchants
    plates = list(dict.fromkeys(v.plate for v in visits))
    regulars, family = plates[:3], plates[3:5]
    call = gateway.service.call
    month = (now - timedelta(days=1), now + timedelta(days=30))
    for plate in regulars:
        call(partial(access.issue_pass, "monthly", [plate], *month, "月卡用户",
                     actor="office:demo", reason="demo pass"))
        office.passes += 1
    if len(family) == 2:
        call(partial(access.issue_pass, "family", family, *month, "家庭用户",
                     actor="office:demo", reason="demo family pass"))
        office.passes += 1
    call(partial(merchants.open_account, MERCHANT, name="星巴克 Starbucks",
                 actor="office:demo", reason="demo tenant"))
    call(partial(merchants.top_up, MERCHANT, 100_000, actor="office:demo",
                 reason="demo prepayment"))
    for plate in plates[5:]:
        if rng.random() < 0.1:
            call(partial(merchants.issue_coupon, MERCHANT, plate,
                         CouponGrant.free_minutes(120, cap_fen=2_000),
                         expires_at=now + timedelta(days=2), actor=f"merchant:{MERCHANT}",
                         reason="spend ¥88"))
            office.coupons += 1
        elif rng.random() < 0.2:
            office.prepay_plates.add(plate)
    return office


def pay_on_the_way_out(site: SimulatedSite, office: Office, visit: Visit) -> None:
    """A driver who pays on the pay page before walking to the car (then leaves within the
    grace time, so the exit opens with nothing to pay)."""
    if visit.plate not in office.prepay_plates:
        return
    service = site.gateway.service
    pending = service.prepay(visit.plate)
    if pending is None:
        return  # nothing owed (a short stay)
    body, headers = site.wallet.pay(pending.provider_ref)
    service.payment_callback(body, headers)
    office.prepaid += 1


def add_demo_users(site: SimulatedSite) -> str:
    """Dashboard logins for the demo, all with one fresh random password, which is returned
    (a real site adds users with `parkguard users add`). The store stamps them on the wall
    clock, as the logins are: the site's clock has run to the end of the simulated day."""
    from gateway.web.users import UserStore

    password = secrets.token_urlsafe(9)

    def add() -> None:
        users = UserStore(site.gateway.store.db)
        UserStore.migrate(site.gateway.store.db)
        for name, role, merchant in DEMO_USERS:
            if users.get(name) is None:
                users.add(name, role, password, merchant_id=merchant)
            else:
                users.set_password(name, password)

    site.gateway.service.call(add)
    return password
