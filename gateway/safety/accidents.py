"""An accident calls people at once: the guard on duty and the squad leader.

The operations plan's first steps after an accident are to secure the scene and stop the
car leaving; that needs a guard there now, and the squad leader told, not after the
ladder's five minutes. :func:`alert_accident` raises one alert per accident incident
(``accident:{incident_id}``) at the ladder's first step (the guard on duty) and to the
squad leader on duty beside it (``also_roles``), with the plates involved and a link to the
incident on the dashboard. It is acknowledged like any other alert; closing the incident
resolves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from gateway.safety.alerts import AlertDesk

__all__ = ["alert_accident", "alert_key", "incident_link", "resolve_accident"]


def alert_key(incident_id: str) -> str:
    return f"accident:{incident_id}"


def incident_link(ack_base_url: str, incident_id: str) -> str:
    """The incident on the dashboard, on the host the alerts' acknowledgement links use."""
    parts = urlsplit(ack_base_url)
    return urlunsplit((parts.scheme, parts.netloc, "/incidents", "", incident_id))


def alert_accident(alerts: AlertDesk, incident_id: str, *, description: str,
                   plates: Sequence[str], lane: str | None) -> None:
    """Raise the accident's alert (once: a second call finds it raised)."""
    named = " ".join(plates) or "车牌未知 plate unknown"
    where = f" @ {lane}" if lane else ""
    link = incident_link(alerts.settings.ack_base_url, incident_id)
    alerts.raise_alert(
        alert_key(incident_id), kind="accident", severity="critical",
        title_zh=f"事故 {named}{where} 请立即前往", title_en=f"Accident {named}{where}: go now",
        detail=f"{description[:400]} · {named} · {link}",
        also_roles=("squad_leader",))


def resolve_accident(alerts: AlertDesk, incident_id: str, actor: str, outcome: str) -> None:
    """The incident was closed: its alert is over."""
    alerts.resolve_key(alert_key(incident_id), actor, f"incident closed: {outcome[:200]}")
