"""Alerts that reach a person: raised → notified → acknowledged → resolved, with escalation.

An alert is raised for a *condition* named by a key (``fire``, ``flood:2``,
``missing:flood1``); while an alert with that key is unresolved, raising it again returns
the same alert, so a condition that keeps being reported raises one alert, not one per
reading. Each alert climbs the three-shift roster — the guard on duty, then the squad
leader, the captain, the manager, each step after its delay — and the whole ladder starts
again every ``repeat_min`` until somebody acknowledges. A fire goes to every step at once.

Time comes only from the injected clock: :meth:`AlertDesk.tick` sends what is due at
``now``, so a test on a :class:`~parkguard.clock.ManualClock` advances time and sees each
step leave at its simulated minute; :class:`Ticker` calls it in production.

Messages leave through a :class:`Notifier` (:class:`AppriseNotifier`: DingTalk, WeCom,
Feishu, ``mailto://``, ``json://``, ntfy, ... any Apprise URL) and the MQTT topic
``alert/{id}`` (retained while active, cleared once resolved). Acknowledgement comes from
the dashboard (:meth:`AlertDesk.ack`), a signed link in the message
(:meth:`AlertDesk.ack_url` / :meth:`AlertDesk.ack_with_token`) or the staff app over MQTT
(:meth:`AlertDesk.handle_ack_message`, topic ``alert/{id}/ack/{staff}``). Every ack and
resolve is written to the hash-chained audit log in the transaction that changes the alert.

``db`` is the gateway worker's connection: call the desk on the worker (``Gateway.call``).
"""

from __future__ import annotations

from gateway.safety.alerts.channels import AppriseNotifier, Notifier, Publisher
from gateway.safety.alerts.desk import AlertDesk
from gateway.safety.alerts.errors import AckTokenError, AlertError, NotifyError, UnknownAlertError
from gateway.safety.alerts.settings import (
    ROLES,
    AlertSettings,
    Person,
    Role,
    Severity,
    Shift,
    Step,
    load_or_create_key,
)
from gateway.safety.alerts.ticker import Ticker
from gateway.safety.alerts.values import AckClaim, AlertState, AlertView

__all__ = [
    "ROLES",
    "AckClaim",
    "AckTokenError",
    "AlertDesk",
    "AlertError",
    "AlertSettings",
    "AlertState",
    "AlertView",
    "AppriseNotifier",
    "Notifier",
    "NotifyError",
    "Person",
    "Publisher",
    "Role",
    "Severity",
    "Shift",
    "Step",
    "Ticker",
    "UnknownAlertError",
    "load_or_create_key",
]
