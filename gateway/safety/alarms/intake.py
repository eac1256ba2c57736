"""Which sensor readings the alarm monitor may act on: the site inventory decides what a node
is, and its sequence numbers decide only whether a reading is a resend.

A payload names its own ``kind``, but a node's kind (and so whether it may raise the fire
alarm) is what the site inventory says it is: a flood node that sends a ``fire_panel``
reading is refused, whatever the payload claims. The ACL lets each node write only its own
topics, and ``wire.contract.messages.decode`` checks that the payload names the topic's node,
so the topic's node is who sent it.

A sequence number never silences a node. Readings are whole snapshots the node numbers in
order; the only reading not to act on is a QoS 1 resend, the same reading with the same seq.
A seq that goes back (a replaced node, a wiped outbox) or leaps far ahead (readings lost, or a
bad count) is a trouble alert and a resync: the reading is used and counting starts again
from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from parkguard.errors import ContractError
from wire.contract.messages import SensorReading

SensorKind = Literal["fire_panel", "flood"]
"""What the site inventory says a sensor node is (``broker.provision.inventory.SensorSpec``)."""

Verdict = Literal["new", "repeat", "jump", "reset"]

RECENT = 64
"""Readings remembered per node to recognise a resend: well above the node's send window."""


class UntrustedReading(ContractError):
    """A sensor message the site inventory does not allow (an unknown node, or a node that
    reports as another kind): dead-lettered, and a trouble alert names the node."""


def fingerprint(reading: SensorReading) -> str:
    """Identifies one reading's content: a resend carries the very same payload."""
    return hashlib.sha256(reading.model_dump_json().encode()).hexdigest()[:16]


@dataclass(slots=True)
class SeqTrack:
    """One node's count: the last seq acted on and the recent readings, by seq."""

    last: int | None = None
    recent: dict[int, str] = field(default_factory=dict)

    def judge(self, seq: int, mark: str, jump: int) -> Verdict:
        """``repeat``: this very reading was seen; ``reset``: the count went back with a
        reading not seen; ``jump``: more than ``jump`` ahead; else ``new``."""
        if self.last is None:
            return "new"
        if seq <= self.last:
            return "repeat" if self.recent.get(seq) == mark else "reset"
        return "jump" if seq - self.last > jump else "new"

    def take(self, seq: int, mark: str, verdict: Verdict) -> None:
        """Count on from ``seq`` (after a reset or a jump, only from it)."""
        if verdict in ("reset", "jump"):
            self.recent.clear()
        self.last = seq
        self.recent[seq] = mark
        while len(self.recent) > RECENT:
            del self.recent[min(self.recent)]


Trouble = Callable[[str, str, str, str], None]
"""``trouble(key, title_zh, title_en, detail)``: raise (or keep) a trouble alert."""
Resolve = Callable[[str, str], None]
"""``resolve(key, reason)``: resolve the alert for ``key`` if one is open."""


class Intake:
    """Admits readings by the inventory and the node's count; raises the trouble alerts that
    say why one was refused or a count was resynced."""

    def __init__(self, sensors: Mapping[str, SensorKind], *, seq_jump: int,
                 trouble: Trouble, resolve: Resolve) -> None:
        self.sensors = dict(sensors)
        self.tracks: dict[str, SeqTrack] = {}
        self._jump = seq_jump
        self._trouble = trouble
        self._resolve = resolve

    def kind_of(self, node: str, what: str) -> SensorKind:
        """The inventory's kind of ``node``; an unknown node's ``what`` is refused."""
        kind = self.sensors.get(node)
        if kind is None:
            self._trouble(
                f"unknown:{node}", f"未登记的传感器 {node}",
                f"Sensor node {node} is not in the site inventory",
                f"its {what} was refused: add it to the inventory, re-run `parkguard broker "
                "init` and give the gateway its new bundle")
            raise UntrustedReading(f"sensor node {node!r} is not in the site inventory: "
                                   f"{what} refused")
        return kind

    def admit(self, reading: SensorReading) -> Verdict:
        """The verdict on ``reading``; a reading whose kind is not the node's is refused
        (:class:`UntrustedReading`). Only a ``repeat`` is not to be acted on."""
        node = reading.node
        kind = self.kind_of(node, f"{reading.kind} reading")
        if reading.kind != kind:
            self._trouble(
                f"trust:{node}", f"传感器类型不符 {node}",
                f"Sensor {node} reported as {reading.kind}, but it is a {kind} node",
                f"a {reading.kind} reading (seq {reading.seq}) from {node} was refused and "
                f"dead-lettered: the site inventory says {node} is a {kind} node")
            raise UntrustedReading(
                f"sensor {node!r} is a {kind} node in the site inventory; its "
                f"{reading.kind!r} reading was refused")
        self._resolve(f"trust:{node}", f"{node} reports as a {kind} node again")
        track = self.tracks.setdefault(node, SeqTrack())
        mark = fingerprint(reading)
        verdict = track.judge(reading.seq, mark, self._jump)
        before = track.last
        if verdict == "repeat":
            return verdict
        track.take(reading.seq, mark, verdict)
        if verdict == "reset":
            self._trouble(
                f"seq:{node}", f"传感器序号回退 {node}", f"Sensor {node} restarted its count",
                f"seq went back from {before} to {reading.seq} with a new reading: the node "
                "was replaced or lost its memory; its readings are used, counting from "
                f"{reading.seq}")
        elif verdict == "jump":
            self._trouble(
                f"seq:{node}", f"传感器序号跳变 {node}", f"Sensor {node} seq jumped ahead",
                f"seq jumped from {before} to {reading.seq} (more than {self._jump} ahead): "
                f"readings were lost or the count is wrong; counting from {reading.seq}")
        else:
            self._resolve(f"seq:{node}", f"{node} counts in order again (seq {reading.seq})")
        return verdict
