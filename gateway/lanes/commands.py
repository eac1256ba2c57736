"""Signed orders from the control room to a lane: open for one car, hold open, close.

Why here and not in the dashboard: an order that lifts a barrier is a money and
safety action, so it is signed with that lane's own key (a lane obeys nothing
else; see docs/lane-commands.md) and written to the hash-chained audit log with
the person's reason *before* it is published — an order that cannot be audited
is never sent.

The audit entry is written through the ``audit`` log the caller hands in, i.e. its
database connection: the dashboard runs these methods on the gateway's worker
(``Gateway.call``), so the entry never interleaves with an exit being billed.

>>> # commander = LaneCommander(app.bus, site, lane_keys, clock, app.audit)
>>> # app.service.call(lambda: commander.open("in1", actor="guard:0042",
>>> #                                         reason="help button: ticket jammed"))
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Final

from gateway.records.audit import AuditLog
from parkguard.clock import Clock, utc_iso
from parkguard.errors import ParkGuardError
from wire.bus import Bus
from wire.contract import topics
from wire.contract.messages import CommandName, LaneCommand

log = logging.getLogger(__name__)

COMMAND_TTL: Final = timedelta(seconds=30)
"""How long a signed order stays valid: long enough for a busy lane, too short to replay."""


class LaneCommandError(ParkGuardError, ValueError):
    """An order to a lane was refused before it was signed: unknown lane, no reason, no actor."""


class LaneCommander:
    """Signs, audits and publishes the gateway's orders to its lanes."""

    def __init__(
        self,
        bus: Bus,
        site: str,
        lane_keys: Mapping[str, bytes],
        clock: Clock,
        audit: AuditLog,
        *,
        ttl: timedelta = COMMAND_TTL,
    ) -> None:
        self._bus = bus
        self.site = site
        self._keys = dict(lane_keys)
        self._clock = clock
        self._audit = audit
        self._ttl = ttl

    @property
    def lanes(self) -> tuple[str, ...]:
        """The lanes this gateway holds keys for, i.e. can command."""
        return tuple(sorted(self._keys))

    def open(self, lane: str, *, actor: str, reason: str,
             args: Mapping[str, str] | None = None) -> LaneCommand:
        """Raise ``lane``'s barrier for one vehicle (it closes behind it as usual).

        ``args`` say why the car may go when its money was taken: ``{"session_id": ...,
        "settled": "paid_online" | "payment_code" | "cash" | "waived"}`` (docs/payments.md);
        without ``settled`` the lane reports the car as let go by a guard (``guard_open``).
        """
        return self._order(lane, "open", actor=actor, reason=reason, args=args)

    def display(self, lane: str, zh: str, en: str, *, actor: str, reason: str) -> LaneCommand:
        """Show two lines on ``lane``'s display (a declined 付款码 at a waiting car, say)."""
        return self._order(lane, "display", actor=actor, reason=reason,
                           args={"zh": zh[:64], "en": en[:64]})

    def hold_open(self, lane: str, *, actor: str, reason: str) -> LaneCommand:
        """Raise ``lane``'s barrier and keep it up until :meth:`close`."""
        return self._order(lane, "hold_open", actor=actor, reason=reason)

    def close(self, lane: str, *, actor: str, reason: str) -> LaneCommand:
        """End a hold-open; the lane still waits for its safety loop to be clear."""
        return self._order(lane, "close", actor=actor, reason=reason)

    def _order(self, lane: str, name: CommandName, *, actor: str, reason: str,
               args: Mapping[str, str] | None = None) -> LaneCommand:
        key = self._keys.get(lane)
        if key is None:
            known = ", ".join(self.lanes) or "none"
            raise LaneCommandError(f"unknown lane {lane!r}: this gateway has keys for {known}")
        if not reason.strip():
            raise LaneCommandError(
                f"lane.{name} on lane {lane} refused: say why (the reason goes into the audit log)"
            )
        if not actor.strip():
            raise LaneCommandError(f"lane.{name} on lane {lane} refused: who is giving it?")
        now = self._clock.now()
        command = LaneCommand(
            command=name, args={**(args or {}), "lane": lane}, reason=reason[:256],
            issuer=actor[:64],
            nonce=secrets.token_hex(16), issued=now, expires=now + self._ttl,
        ).signed(key)
        self._audit.record(
            actor=actor, action=f"lane.{name}", subject=f"lane:{lane}", reason=reason,
            after={"command": name, "nonce": command.nonce, "issued": utc_iso(command.issued),
                   "expires": utc_iso(command.expires),
                   **({"args": dict(args)} if args else {})},
        )
        self._bus.publish(topics.lane_cmd(self.site, lane), command)
        log.info("gateway: %s ordered %s on lane %s (nonce %s)", actor, name, lane,
                 command.nonce)
        return command
