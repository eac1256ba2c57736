"""Run a bench's process with the CPU priority its installed systemd unit gives it.

A site's safety path crosses processes that each have a unit (``hardware/``): the lane
(``parkguard-lane.service``), the site broker (Debian's ``mosquitto.service`` with our
drop-in ``mosquitto-parkguard.conf``) and the gateway (``parkguard-gateway.service``).
Their ``Nice=``, ``CPUSchedulingPolicy=``, ``CPUSchedulingPriority=`` and
``CPUSchedulingResetOnFork=`` decide who runs first when the
CPU is busy, so a bench that ran them at the default priority would measure something no
site runs. :func:`apply_unit` gives
a running process (every thread it has so far; threads it starts later inherit) what its
unit gives it, as systemd does before ``exec``, and says in one line what it set, or why it
could not: the bench prints that line, so a figure never silently stands for another setup.

``CPUSchedulingResetOnFork=`` is applied too; note that the kernel resets every new
*thread* as well as every child process, so a unit that sets it leaves a multi-threaded
service's other threads at the default (what :func:`running` then shows).

Scheduling keys this module does not apply (``IOSchedulingClass=``, ``CPUAffinity=`` …) are
named in that line as not applied, never dropped quietly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

POLICIES = {"other": os.SCHED_OTHER, "batch": os.SCHED_BATCH, "idle": os.SCHED_IDLE,
            "fifo": os.SCHED_FIFO, "rr": os.SCHED_RR}
"""``CPUSchedulingPolicy=`` values (systemd.exec(5)) → the kernel's policies."""
_REALTIME = {"fifo", "rr"}
_YES = {"1", "yes", "true", "on"}
_OTHER_SCHEDULING_KEYS = ("IOSchedulingClass", "IOSchedulingPriority", "CPUAffinity",
                          "NUMAPolicy", "CPUWeight", "CPUQuota")
"""Keys that also bear on scheduling but that :func:`apply_unit` does not set."""


@dataclass(frozen=True, slots=True)
class UnitPriority:
    """What a unit's ``[Service]`` asks for (``None``: the key is not there)."""

    source: str
    """Where it came from, for the bench's output (a path, or ``"none"``)."""
    nice: int | None = None
    policy: str | None = None
    realtime_priority: int | None = None
    reset_on_fork: bool = False
    """Children it forks start at the default policy (``SCHED_RESET_ON_FORK``)."""
    not_applied: tuple[str, ...] = ()
    """Other scheduling keys the unit sets, which :func:`apply_unit` leaves alone."""

    def describe(self) -> str:
        """``Nice=-10``, ``SCHED_FIFO 40`` or ``default (nice 0, SCHED_OTHER)``."""
        parts = []
        if self.policy is not None and self.policy != "other":
            parts.append(f"SCHED_{self.policy.upper()}"
                         + (f" {self.realtime_priority}" if self.policy in _REALTIME else ""))
        if self.reset_on_fork:
            parts.append("reset on fork")
        if self.nice is not None:
            parts.append(f"Nice={self.nice}")
        return ", ".join(parts) or "default (nice 0, SCHED_OTHER)"


DEFAULT = UnitPriority(source="none")
"""The kernel's default: what a process gets from a shell, and from a unit without the keys."""


def unit_keys(path: Path) -> dict[str, list[str]]:
    """A systemd unit file's ``Section.Key`` -> its values in order (a key may be set more
    than once; for most keys the last one wins)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line:
            key, _, value = line.partition("=")
            found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def read_unit(path: Path, *, name: str | None = None) -> UnitPriority:
    """The scheduling keys of a unit file's (or drop-in's) ``[Service]`` section; the last
    assignment of a key wins, as in systemd. ``name``: how to call it in the output (default:
    the path)."""
    values = {key.removeprefix("Service."): found[-1]
              for key, found in unit_keys(path).items() if key.startswith("Service.")}
    policy = values.get("CPUSchedulingPolicy")
    if policy is not None and policy not in POLICIES:
        raise ValueError(f"{path}: CPUSchedulingPolicy={policy} is not one of {sorted(POLICIES)}")
    priority = values.get("CPUSchedulingPriority")
    nice = values.get("Nice")
    unit = UnitPriority(
        source=name or str(path), nice=None if nice is None else int(nice), policy=policy,
        realtime_priority=None if priority is None else int(priority),
        reset_on_fork=values.get("CPUSchedulingResetOnFork", "no").lower() in _YES,
        not_applied=tuple(f"{key}={values[key]}" for key in _OTHER_SCHEDULING_KEYS
                          if key in values))
    if unit.nice is not None and not -20 <= unit.nice <= 19:
        raise ValueError(f"{path}: Nice={unit.nice} is outside -20..19")
    if policy in _REALTIME and not 1 <= (unit.realtime_priority or 0) <= 99:
        raise ValueError(f"{path}: CPUSchedulingPolicy={policy} needs "
                         "CPUSchedulingPriority=1..99")
    return unit


def realtime(priority: int, source: str) -> UnitPriority:
    """``SCHED_FIFO priority``: what the bench gives a process that stands for a device of
    its own (a sensor node's microcontroller has nobody to share its core with)."""
    return UnitPriority(source=source, policy="fifo", realtime_priority=priority)


def _threads(pid: int) -> list[int]:
    try:
        return sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return [pid]


def apply_unit(pid: int, unit: UnitPriority) -> str:
    """Give process ``pid`` (each of its threads) what ``unit`` asks for; return what it now
    runs with, or ``NOT SET`` and why (the caller prints it; the process runs on as it was)."""
    wanted = unit.describe()
    if unit.nice is None and unit.policy is None:
        note = wanted
    else:
        try:
            for tid in _threads(pid):
                if unit.nice is not None:
                    os.setpriority(os.PRIO_PROCESS, tid, unit.nice)
                if unit.policy is not None:
                    level = unit.realtime_priority if unit.policy in _REALTIME else 0
                    flags = os.SCHED_RESET_ON_FORK if unit.reset_on_fork else 0
                    os.sched_setscheduler(tid, POLICIES[unit.policy] | flags,
                                          os.sched_param(level or 0))
        except OSError as error:
            note = (f"NOT SET: {wanted} refused ({error.strerror or error}); "
                    f"it runs at {running(pid)}")
        else:
            note = running(pid)
    if unit.not_applied:
        note += f"; not applied here: {', '.join(unit.not_applied)}"
    return f"{note} (from {unit.source})"


def _thread_runs(tid: int) -> str:
    policy = os.sched_getscheduler(tid) & ~os.SCHED_RESET_ON_FORK
    name = next((key for key, value in POLICIES.items() if value == policy), str(policy))
    if name in _REALTIME:
        return f"SCHED_{name.upper()} {os.sched_getparam(tid).sched_priority}"
    return f"SCHED_{name.upper()}, nice {os.getpriority(os.PRIO_PROCESS, tid)}"


def running(pid: int) -> str:
    """What ``pid``'s threads run with now, as the kernel says: ``SCHED_RR 40 (6 threads)``,
    or each setting with its count when they differ (a thread that did not inherit shows)."""
    counts: dict[str, int] = {}
    for tid in _threads(pid):
        try:
            how = _thread_runs(tid)
        except OSError:  # the thread ended meanwhile
            continue
        counts[how] = counts.get(how, 0) + 1
    if len(counts) <= 1:
        (how, count), = counts.items() if counts else ((_thread_runs(pid), 1),)
        return f"{how} ({count} thread{'s' if count > 1 else ''})"
    return "; ".join(f"{how}: {count} threads" for how, count in counts.items())
