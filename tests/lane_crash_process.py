"""``python -m tests.lane_crash_process --kill-at N --phase P -- <lane_process arguments>``:
:mod:`simulator.lane_process` that SIGKILLs itself at a seeded point, so a crash test's
failure replays.

The point is counted in the lane's own events, not in real time: the process dies at the
``N``-th event of this run, in one of the phases an event goes through —

- ``before_journal``: the event is made but not yet in the journal (it never existed);
- ``after_journal``: it is durable in the journal, not yet handed to the bus;
- ``after_publish``: the bus has it (the broker may or may not), not yet marked sent;
- ``after_sent``: the broker acknowledged it and the journal says so.

Two more points (:data:`AFTER_RELAY`, ``tests/test_lane_power_cut.py``) lie in the window
where a car's events and the gateway's verdict are written without waiting for the card
and the barrier is already up: the ``N``-th such car dies as its ``barrier_moved`` (the
commit that syncs them) is about to be written —

- ``kill_after_relay``: the process dies; the kernel still has what it wrote;
- ``power_cut_after_relay``: a power cut: the journal's files are put back as they were
  after its last FULL commit (a copy taken after each one, the worst a power cut can leave:
  every WAL frame not yet synced is gone), then the process dies.

Before dying it says ``cut correlation=<id> phase=<phase>`` on stdout: the car's decision.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from firmware.lane.journal import Journal, JournalRow
from simulator import lane_process
from wire.mqtt import MqttBus

PHASES = ("before_journal", "after_journal", "after_publish", "after_sent")
AFTER_RELAY = ("kill_after_relay", "power_cut_after_relay")


def die() -> None:
    """A power cut: nothing after this runs (no finally, no atexit, no flush)."""
    os.kill(os.getpid(), signal.SIGKILL)


def install(kill_at: int, phase: str) -> None:
    """Patch the journal or the bus so the process dies at the ``kill_at``-th event."""
    seen = 0

    def counted(before: bool, after: bool, call: Callable[[], Any], events: int = 1) -> Any:
        nonlocal seen
        reached = seen < kill_at <= seen + events
        if before and reached:
            die()
        result = call()
        seen += events
        if after and reached:
            die()
        return result

    if phase in AFTER_RELAY:
        install_after_relay(kill_at, power_cut=phase == "power_cut_after_relay")
    elif phase in ("before_journal", "after_journal"):
        append_many = Journal.append_many  # every event goes in through it (append too)

        def append_then_maybe_die(self: Journal, rows: list[JournalRow],
                                  **options: Any) -> None:
            counted(phase == "before_journal", phase == "after_journal",
                    lambda: append_many(self, rows, **options), events=len(rows))

        Journal.append_many = append_then_maybe_die  # type: ignore[method-assign]
    elif phase == "after_publish":
        publish = MqttBus.publish

        def publish_then_maybe_die(self: MqttBus, topic: str, *args: Any, **kw: Any) -> Any:
            if not topic.endswith("/event"):
                return publish(self, topic, *args, **kw)
            return counted(False, True, lambda: publish(self, topic, *args, **kw))

        MqttBus.publish = publish_then_maybe_die  # type: ignore[method-assign]
    elif phase == "after_sent":
        mark_sent = Journal.mark_sent

        def mark_sent_then_maybe_die(self: Journal, seqs: list[int]) -> None:
            counted(False, True, lambda: mark_sent(self, seqs), events=len(seqs))

        Journal.mark_sent = mark_sent_then_maybe_die  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown phase {phase!r}: one of {', '.join(PHASES)}")


def _files(journal: Journal) -> list[Path]:
    return [journal.path, journal.path.with_name(journal.path.name + "-wal")]


def install_after_relay(kill_at: int, *, power_cut: bool) -> None:
    """Die at the ``kill_at``-th car whose decision is written but not yet on the card when
    its ``barrier_moved`` comes (the barrier is up); ``power_cut``: first put the journal's
    files back as they were after the last FULL commit."""
    synced = Journal._synced
    append_many = Journal.append_many
    image: dict[Path, bytes] = {}
    seen = 0

    def synced_and_copied(self: Journal) -> None:
        synced(self)
        image.clear()  # what is on the card now: db and WAL, byte for byte
        for path in _files(self):
            image[path] = path.read_bytes() if path.exists() else b""

    def append_or_cut(self: Journal, rows: list[JournalRow], *, durable: bool = True) -> None:
        nonlocal seen
        waiting = self._written_seq > self._durable_seq
        if durable and waiting and any(r.type == "barrier" for r in rows):
            seen += 1
            if seen == kill_at:
                decided = [json.loads(r) for (r,) in self._db.execute(
                    "SELECT payload FROM events WHERE type = 'decision' AND seq > ?",
                    (self._durable_seq,))]
                print(f"cut correlation={decided[-1]['correlation_id']} "
                      f"phase={'power_cut' if power_cut else 'kill'}_after_relay", flush=True)
                if power_cut:
                    for path, content in image.items():
                        path.write_bytes(content)
                    shm = self.path.with_name(self.path.name + "-shm")
                    shm.unlink(missing_ok=True)  # rebuilt from the WAL at the next open
                die()
        append_many(self, rows, durable=durable)

    Journal._synced = synced_and_copied  # type: ignore[method-assign]
    Journal.append_many = append_or_cut  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    split = args.index("--") if "--" in args else len(args)
    parser = argparse.ArgumentParser(prog="python -m tests.lane_crash_process")
    parser.add_argument("--kill-at", type=int, required=True)
    parser.add_argument("--phase", choices=PHASES + AFTER_RELAY, required=True)
    options = parser.parse_args(args[:split])
    install(options.kill_at, options.phase)
    return lane_process.main(args[split + 1:])


if __name__ == "__main__":
    raise SystemExit(main())
