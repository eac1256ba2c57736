"""``[plans]`` of the safety file: fire drills (response teams and their tasks, the drill's
barrier policy), the fire's owner texts by zone and the heavy-rain readiness checklist."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Final, Literal, Self, cast

from pydantic import Field, model_validator

from gateway.safety.alerts import Role
from parkguard.configfile import StrictModel

_ID = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_TEXT = r"^[^\x00-\x1f<>]*$"


class ResponseTeam(StrictModel):
    """One team of the fire plan: the roster members with ``team`` in their ``teams``."""

    team: str = Field(pattern=_ID, description="team name as on the roster, e.g. evacuation")
    name_zh: str = Field(min_length=1, max_length=16, pattern=_TEXT)
    name_en: str = Field(min_length=1, max_length=32, pattern=_TEXT)
    task_zh: str = Field(min_length=1, max_length=80, pattern=_TEXT)
    task_en: str = Field(min_length=1, max_length=120, pattern=_TEXT)


DEFAULT_TEAMS: Final = (
    ResponseTeam(team="fire_fighting", name_zh="灭火组", name_en="Fire-fighting team",
                 task_zh="携带灭火器赶到起火点，切断电源，初期扑救",
                 task_en="take extinguishers to the fire, cut the power, fight it early"),
    ResponseTeam(team="evacuation", name_zh="疏散引导组", name_en="Evacuation team",
                 task_zh="引导车辆和人员从最近出口疏散，清点人数",
                 task_en="guide cars and people out by the nearest exit, count heads"),
    ResponseTeam(team="cordon", name_zh="警戒组", name_en="Cordon team",
                 task_zh="封锁入口，禁止车辆进入，为消防车留出通道",
                 task_en="close the entrances, keep cars out, clear the way for fire engines"),
)


class DrillSettings(StrictModel):
    """How a fire drill runs."""

    teams: tuple[ResponseTeam, ...] = Field(default=DEFAULT_TEAMS, min_length=1, max_length=8)
    open_barriers: bool = Field(
        default=False, description="hold every barrier open during a drill (a real fire "
                                   "always does); off: the lanes keep working and only "
                                   "show the drill")
    evacuation_team: str = Field(default="evacuation", pattern=_ID,
                                 description="the team whose acknowledgement time the drill "
                                             "report states")

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [t.team for t in self.teams]
        if len(set(names)) != len(names):
            raise ValueError("teams: each team once")
        return self


_LEVEL = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"


class FireSettings(StrictModel):
    """``[plans.fire]``: which cars a real fire's owner texts single out. The response teams
    a fire alerts are ``[plans.drills] teams`` (one list for drills and fires)."""

    zones: dict[Annotated[str, Field(min_length=1, max_length=32, pattern=_TEXT)],
                tuple[Annotated[str, Field(pattern=_LEVEL)], ...]] = Field(
        default_factory=dict,
        description="fire-panel zone (as the panel reports it) -> the [capacity] levels whose "
                    "cars are near it: owners of cars that came in by a lane feeding one of "
                    "them are asked to come and move them; every other owner inside is told "
                    "to keep out. A zone not listed: everyone inside is told to keep out")

    @model_validator(mode="after")
    def _levels(self) -> Self:
        for zone, levels in self.zones.items():
            if not levels:
                raise ValueError(f"zones.{zone}: name at least one level")
        return self


class ChecklistItem(StrictModel):
    """One thing to check when heavy rain is coming; ``checkpoint``: the patrol checkpoint there
    (a tap there checks it)."""

    item: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$",
                      description="its id; `leaders` becomes one item per flood-team leader "
                                  "on the roster (`leaders-<person id>`)")
    zh: str = Field(min_length=1, max_length=40, pattern=_TEXT)
    en: str = Field(min_length=1, max_length=80, pattern=_TEXT)
    checkpoint: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9:_-]+$",
                                   description="the patrol checkpoint at the item: an accepted "
                                               "tap there checks it")


DEFAULT_CHECKLIST: Final = (
    ChecklistItem(item="leaders", zh="各组组长到岗报到", en="Team leaders report in"),
    ChecklistItem(item="pumps", zh="排水泵试运行正常", en="Pumps tested and running",
                  checkpoint="pump-room"),
    ChecklistItem(item="shovels", zh="铁锹 3 把到位", en="3 shovels in place",
                  checkpoint="store-b2"),
    ChecklistItem(item="sandbags", zh="沙袋 20 袋到位", en="20 sandbags in place",
                  checkpoint="ramp-sandbags"),
    ChecklistItem(item="phones", zh="值班电话保持畅通", en="Duty phones on"),
)


LEADERS: Final = "leaders"
"""The checklist item that becomes one item per flood-team leader on the roster."""


class FloodPlanSettings(StrictModel):
    """The heavy-rain readiness checklist."""

    checklist: tuple[ChecklistItem, ...] = Field(default=DEFAULT_CHECKLIST, min_length=1,
                                                 max_length=20)
    team: str = Field(default="flood", pattern=_ID,
                      description="the team alerted when heavy rain is declared")
    leader_roles: tuple[Role, ...] = Field(
        default=("squad_leader", "captain", "manager"), max_length=4,
        description="roster roles that make a member of `team` a leader: the `leaders` item "
                    "is one item per such person (none on the roster: one item)")

    @model_validator(mode="after")
    def _unique(self) -> Self:
        items = [c.item for c in self.checklist]
        if len(set(items)) != len(items):
            raise ValueError("checklist: each item once")
        tags = [c.checkpoint for c in self.checklist if c.checkpoint]
        if len(set(tags)) != len(tags):
            raise ValueError("checklist: a checkpoint marks one item")
        return self

    def items_with_leaders(self, leaders: Iterable[tuple[str, str]]) -> tuple[ChecklistItem, ...]:
        """The checklist with its ``leaders`` item (if any) as one item per leader
        (``(person id, name)`` from the roster), in roster order; no leaders: as configured."""
        people = list(leaders)
        taken = {c.item for c in self.checklist}
        items: list[ChecklistItem] = []
        for item in self.checklist:
            if item.item != LEADERS or not people:
                items.append(item)
                continue
            for person, name in people:
                if f"{LEADERS}-{person}" in taken:
                    continue  # configured by hand under that id
                shown = re.sub(r"[\x00-\x1f<>]", "", name).strip() or person
                items.append(ChecklistItem(item=f"{LEADERS}-{person}",
                                           zh=f"组长 {shown[:24]} 到岗报到",
                                           en=f"Leader {shown[:60]} reports in"))
        return tuple(items)


EquipmentKind = Literal["extinguisher", "hydrant"]
KIND_PREFIX: Final[dict[str, str]] = {"extinguisher": "ext", "hydrant": "hyd"}


class EquipmentItem(StrictModel):
    """One extinguisher or hydrant whose place or tag is known; ``checkpoint``: the patrol
    checkpoint at it (an accepted tap there is its monthly check)."""

    id: str = Field(pattern=_ID, description="ext-01 … ext-72, hyd-01 … hyd-36, or any id")
    kind: EquipmentKind
    place: str = Field(default="", max_length=40, pattern=_TEXT)
    checkpoint: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9:_-]+$")


class EquipmentSettings(StrictModel):
    """The fire equipment register: how many of each (numbered ``ext-01``…, ``hyd-01``…),
    the items whose place and checkpoint are known, and when an unchecked month alerts."""

    extinguishers: int = Field(default=72, ge=0, le=999,
                               description="4 kg ABC dry-powder extinguishers (site plan: 72)")
    hydrants: int = Field(default=36, ge=0, le=999,
                          description="indoor fire hydrants (site plan: 36)")
    items: tuple[EquipmentItem, ...] = Field(default=(), max_length=2000)
    alert_from_day: int = Field(
        default=25, ge=1, le=28,
        description="from this day of the month, items not yet checked this month raise an "
                    "alert to the team")
    team: str = Field(default="facilities", pattern=_ID)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        ids = [i.id for i in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("items: each id once")
        points = [i.checkpoint for i in self.items if i.checkpoint]
        if len(set(points)) != len(points):
            raise ValueError("items: a checkpoint marks one item")
        return self

    def register(self) -> tuple[EquipmentItem, ...]:
        """Every item: the numbered ones (with what ``items`` says of them) and any other
        listed item."""
        listed = {i.id: i for i in self.items}
        numbered: list[EquipmentItem] = []
        for kind, count in (("extinguisher", self.extinguishers), ("hydrant", self.hydrants)):
            width = max(2, len(str(count)))
            for n in range(1, count + 1):
                item_id = f"{KIND_PREFIX[kind]}-{n:0{width}d}"
                numbered.append(listed.pop(item_id) if item_id in listed else EquipmentItem(
                    id=item_id, kind=cast(EquipmentKind, kind)))
        return (*numbered, *listed.values())


class PlanSettings(StrictModel):
    """``[plans]``: the fire and flood plans (docs/alarms-and-alerts.md)."""

    drills: DrillSettings = DrillSettings()
    fire: FireSettings = FireSettings()
    flood: FloodPlanSettings = FloodPlanSettings()
    equipment: EquipmentSettings = EquipmentSettings()
