"""Fire, flood and supervision: what the gateway decides from the sensor nodes' messages.

Three signal classes, in order: **fire alarm** > **supervisory** > **trouble**.

- Fire: a fire-panel reading with ``fire`` (or the fire node's own retained ``alarm/fire``)
  latches the site fire alarm. The gateway sets and holds the retained ``alarm/fire``,
  suspends billing (:meth:`AlarmMonitor.billing_suspended`: exits are free and recorded),
  shows 火警 请立即离场 / FIRE – LEAVE NOW (:meth:`AlarmMonitor.lane_display`) and alerts
  everyone on duty and the managers at once. It ends only when the panel reports normal
  *and* an authorised person resets it (:meth:`AlarmMonitor.reset_fire`, audited).
- Flood: the water level per node, by the node's thresholds and hysteresis. Level 1 warns
  the facilities team; level 2 closes the entries (:meth:`AlarmMonitor.entries_closed`),
  sets the retained ``alarm/flood``, alerts the flood team and asks the owners of every car
  inside to move it; level 3 calls everyone to evacuate. One alert per level, however much
  the surface ripples. A pump that runs while the water rises, or stands idle above level
  1, is its own alert.
- Trust: what a node is comes from the site inventory (``sensors``), never from a payload:
  a flood node's ``fire_panel`` reading is refused and dead-lettered with a trouble alert
  naming the node. A seq that goes back or leaps ahead is a trouble alert and a resync,
  never a reason to ignore readings (:mod:`~gateway.safety.alarms.intake`). Each node's
  count and level survive a restart (:mod:`~gateway.safety.alarms.memory`).
- Supervision (trouble): a node that misses two heartbeats or whose Last Will says it went
  offline, a stuck or out-of-range level reading, a supervised fire-panel loop open or
  shorted (the panel's ``trouble``), a stuck float: each a trouble alert that resolves
  itself once the node is healthy again.

The caller decodes messages (``wire.contract.messages.decode``) and hands the values in
on the gateway's worker thread; :meth:`AlarmMonitor.tick` runs the time-based checks. All
times come from the injected clock.
"""

from __future__ import annotations

from gateway.safety.alarms.intake import SensorKind, UntrustedReading
from gateway.safety.alarms.monitor import AlarmMonitor
from gateway.safety.alarms.settings import (
    FIRE_DISPLAY,
    FLOOD_ENTRY_DISPLAY,
    FLOOD_EVACUATE_DISPLAY,
    AlarmError,
    AlarmSettings,
    FloodThresholds,
)
from gateway.safety.alarms.state import AlarmChange

__all__ = [
    "FIRE_DISPLAY",
    "FLOOD_ENTRY_DISPLAY",
    "FLOOD_EVACUATE_DISPLAY",
    "AlarmChange",
    "AlarmError",
    "AlarmMonitor",
    "AlarmSettings",
    "FloodThresholds",
    "SensorKind",
    "UntrustedReading",
]
