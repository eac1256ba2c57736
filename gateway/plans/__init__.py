"""The site's fire and flood plans beyond the alarms themselves: fire drills with response
teams and a report (:mod:`~gateway.plans.drills`), heavy-rain readiness and the level-3
lane displays (:mod:`~gateway.plans.flood`). Settings in ``[plans]`` of the safety file."""

from __future__ import annotations

from gateway.plans.drills import DrillDesk, DrillError, DrillReport
from gateway.plans.flood import FloodPlanDesk, FloodPlanError, Readiness
from gateway.plans.settings import PlanSettings

__all__ = ["DrillDesk", "DrillError", "DrillReport", "FloodPlanDesk", "FloodPlanError",
           "PlanSettings", "Readiness"]
