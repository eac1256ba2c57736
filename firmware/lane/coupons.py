"""The merchant coupons in a lane's replica, by plate: what an offline exit offers the quote.

The gateway sends every live coupon in the snapshot and one plate's whole set in each
``coupons_changed`` delta (:class:`~wire.contract.messages.PlateCoupons`). The lane offers a
car's coupons to :func:`~parkguard.core.tariffs.quote` as the gateway's bill does: unexpired
at the exit, oldest first, each carrying its coupon id, so the tariff's stacking policy
picks the same ones and the offline fee is the gateway's fee. The merchant is charged at the
gateway when the passage arrives; the lane only prices.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from parkguard.core.plates.normalise import normalise_plate
from parkguard.core.tariffs import Coupon
from wire.contract.messages import PlateCoupons, ReplicaCoupon


class CouponBook:
    """Live coupons by normalised plate. Not locked: the replica's lock guards it."""

    def __init__(self, coupons: Iterable[ReplicaCoupon] = ()) -> None:
        self._by_plate: dict[str, list[ReplicaCoupon]] = {}
        for coupon in coupons:
            self._by_plate.setdefault(coupon.plate, []).append(coupon)
        for held in self._by_plate.values():
            held.sort(key=_order)

    def __len__(self) -> int:
        return sum(len(held) for held in self._by_plate.values())

    def replace(self, change: PlateCoupons) -> None:
        """One plate's whole set now (a ``coupons_changed`` delta)."""
        if change.coupons:
            self._by_plate[change.plate] = sorted(change.coupons, key=_order)
        else:
            self._by_plate.pop(change.plate, None)

    def offered(self, plate: str, now: datetime) -> list[Coupon]:
        """The plate's coupons still valid at ``now``, oldest first, as tariff coupons."""
        if not plate:
            return []
        return [_tariff_coupon(c) for c in self._by_plate.get(normalise_plate(plate), ())
                if c.expires_at > now]


def _order(coupon: ReplicaCoupon) -> tuple[datetime, str]:
    return coupon.issued_at, coupon.coupon_id


def _tariff_coupon(coupon: ReplicaCoupon) -> Coupon:
    if coupon.kind == "rule":
        return Coupon("rule", rule=coupon.rule, ref=coupon.coupon_id)
    return Coupon(coupon.kind, minutes=coupon.minutes, fen=coupon.fen, ref=coupon.coupon_id)
