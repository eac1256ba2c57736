"""``python -m tests.lane_crash_process --kill-at N --phase P -- <lane_process arguments>``:
:mod:`simulator.lane_process` that SIGKILLs itself at a seeded point, so a crash test's
failure replays.

The point is counted in the lane's own events, not in real time: the process dies at the
``N``-th event of this run, in one of the phases an event goes through —

- ``before_journal``: the event is made but not yet in the journal (it never existed);
- ``after_journal``: it is durable in the journal, not yet handed to the bus;
- ``after_publish``: the bus has it (the broker may or may not), not yet marked sent;
- ``after_sent``: the broker acknowledged it and the journal says so.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from firmware.lane.journal import Journal, JournalRow
from simulator import lane_process
from wire.mqtt import MqttBus

PHASES = ("before_journal", "after_journal", "after_publish", "after_sent")


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

    if phase in ("before_journal", "after_journal"):
        append_many = Journal.append_many  # every event goes in through it (append too)

        def append_then_maybe_die(self: Journal, rows: list[JournalRow]) -> None:
            counted(phase == "before_journal", phase == "after_journal",
                    lambda: append_many(self, rows), events=len(rows))

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


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    split = args.index("--") if "--" in args else len(args)
    parser = argparse.ArgumentParser(prog="python -m tests.lane_crash_process")
    parser.add_argument("--kill-at", type=int, required=True)
    parser.add_argument("--phase", choices=PHASES, required=True)
    options = parser.parse_args(args[:split])
    install(options.kill_at, options.phase)
    return lane_process.main(args[split + 1:])


if __name__ == "__main__":
    raise SystemExit(main())
