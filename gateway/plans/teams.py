"""The fire plan's response teams alerted, one alert per team whose title is its task: the
one place both a drill (:mod:`~gateway.plans.drills`) and a real fire
(:mod:`~gateway.plans.assembly`) raise them.

A team is the roster members whose ``teams`` name it (``[plans.drills] teams`` lists the
teams and their tasks). Each alert is ``team=`` its team, so its first step reaches the
team's members on duty (and the guard on duty, as every first step), then the usual ladder;
it is acknowledged and resolved like any other alert.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.plans.settings import ResponseTeam
from gateway.safety.alerts import AlertDesk


@dataclass(frozen=True, slots=True)
class TeamCall:
    """What one call-out of the teams is: the key prefix (``drill:d-000001``, ``fire``),
    the alert kind, and how every title and detail is marked."""

    prefix: str
    kind: Literal["drill", "fire"]
    severity: Literal["warning", "critical"]
    mark_zh: str  # 【演习 DRILL】, 【火警 FIRE】
    mark_en: str  # DRILL, FIRE
    detail: str

    def key(self, team: str) -> str:
        return f"{self.prefix}:{team}"


DRILL_MARK = ("【演习 DRILL】", "DRILL")
FIRE_MARK = ("【火警 FIRE】", "FIRE")


def drill_call(drill_id: str) -> TeamCall:
    return TeamCall(f"drill:{drill_id}", "drill", "warning", *DRILL_MARK,
                    detail=f"drill {drill_id}: acknowledge when your team is in place")


def fire_call(where: str) -> TeamCall:
    return TeamCall("fire", "fire", "critical", *FIRE_MARK,
                    detail=f"real fire alarm{where}: acknowledge when your team is in place; "
                           "119 first, then 110")


def alert_teams(alerts: AlertDesk, teams: Iterable[ResponseTeam], call: TeamCall,
                extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Raise one alert per team (``{prefix}:{team}``, ``team=`` the team, title its task);
    ``extra``: more detail for a team's alert (the evacuation team's cars). Raising again
    while they are open raises nothing new. Returns team -> alert id."""
    raised: dict[str, str] = {}
    for team in teams:
        more = (extra or {}).get(team.team)
        view, _new = alerts.raise_alert(
            call.key(team.team), kind=call.kind, severity=call.severity,
            title_zh=f"{call.mark_zh}{team.name_zh}：{team.task_zh}",
            title_en=f"{call.mark_en} {team.name_en}: {team.task_en}",
            detail=call.detail + (f". {more}" if more else ""), team=team.team)
        raised[team.team] = view.alert_id
    return raised


def resolve_teams(alerts: AlertDesk, teams: Iterable[ResponseTeam], call: TeamCall, *,
                  by: str, reason: str) -> int:
    """Resolve each team's open alert of ``call``; returns how many were open."""
    done = 0
    for team in teams:
        if alerts.resolve_key(call.key(team.team), by, reason) is not None:
            done += 1
    return done
