"""The safety path's processes get real-time scheduling from their installed units, and the
fire bench runs them with exactly that (:mod:`simulator.priority`), saying so, or saying
why not.

Real processes throughout: a child Python that starts a thread after the priority was set
(the lane's bus thread is started that way), and a child that is refused because it runs
as an unprivileged user.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from simulator.priority import DEFAULT, apply_unit, read_unit, running

HARDWARE = Path(__file__).resolve().parent.parent / "hardware"
LANE_UNIT = HARDWARE / "parkguard-lane.service"
BROKER_DROPIN = HARDWARE / "mosquitto-parkguard.conf"
DOCS = Path(__file__).resolve().parent.parent / "docs"

_ROOT = os.geteuid() == 0


def test_the_lane_and_the_site_broker_run_real_time_with_the_broker_above_the_lane() -> None:
    lane, broker = read_unit(LANE_UNIT), read_unit(BROKER_DROPIN)
    assert lane.policy in {"fifo", "rr"} and broker.policy in {"fifo", "rr"}
    assert lane.realtime_priority is not None and broker.realtime_priority is not None
    # every hop crosses the broker: it goes first wherever both share a CPU
    assert broker.realtime_priority > lane.realtime_priority
    # The kernel resets new threads too: the lane's bus thread (the fire reflex) would fall
    # back to the default policy.
    assert not lane.reset_on_fork
    assert lane.not_applied == () and broker.not_applied == ()


def test_the_broker_drop_in_is_the_one_the_provisioning_doc_installs() -> None:
    text = BROKER_DROPIN.read_text(encoding="utf-8")
    assert "ExecStart=\nExecStart=/usr/sbin/mosquitto -c /etc/parkguard/mall-b2/broker/" in text
    assert "hardware/mosquitto-parkguard.conf" in (DOCS / "broker-provisioning.md").read_text(
        encoding="utf-8")


def test_a_unit_is_read_as_systemd_reads_it(tmp_path: Path) -> None:
    unit = tmp_path / "x.service"
    unit.write_text("[Unit]\nNice=5\n[Service]\nNice=3\nNice=-4\nCPUSchedulingPolicy=rr\n"
                    "CPUSchedulingPriority=7\nIOSchedulingClass=idle\n"
                    "CPUSchedulingResetOnFork=yes\n", encoding="utf-8")
    got = read_unit(unit)
    assert (got.nice, got.policy, got.realtime_priority, got.reset_on_fork) == (-4, "rr", 7, True)
    assert got.not_applied == ("IOSchedulingClass=idle",)
    assert read_unit(unit, name="x").source == "x"
    unit.write_text("[Service]\nCPUSchedulingPolicy=fifo\n", encoding="utf-8")
    with pytest.raises(ValueError, match="CPUSchedulingPriority"):
        read_unit(unit)
    assert DEFAULT.describe() == "default (nice 0, SCHED_OTHER)"


_LATE_THREAD = textwrap.dedent("""
    import os, sys, threading
    sys.stdin.readline()  # the parent has set the priority
    seen = []
    t = threading.Thread(target=lambda: seen.append(
        (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)))
    t.start(); t.join()
    print(*seen[0], flush=True)
    sys.stdin.readline()
""")


@pytest.mark.skipif(not _ROOT, reason="setting a real-time policy needs root here")
def test_a_thread_started_after_the_unit_was_applied_inherits_it() -> None:
    proc = subprocess.Popen([sys.executable, "-c", _LATE_THREAD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        said = apply_unit(proc.pid, read_unit(LANE_UNIT, name="the lane's unit"))
        assert said == "SCHED_RR 40 (1 thread) (from the lane's unit)"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().split() == [str(os.SCHED_RR), "40"]
        assert running(proc.pid).startswith("SCHED_RR 40")
    finally:
        proc.kill()
        proc.wait()


def test_a_refused_priority_is_said_and_the_process_runs_on_as_it_was() -> None:
    # A process without CAP_SYS_NICE asking for itself is refused, as the bench run by a
    # user is: as root, setpriv takes the capability away first.
    script = ("import os; from simulator.priority import apply_unit, realtime; "
              "print(apply_unit(os.getpid(), realtime(60, 'the bench')))")
    drop = ["setpriv", "--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice", "--"]
    out = subprocess.run([*(drop if _ROOT else []), sys.executable, "-c", script],
                         capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    assert out.startswith("NOT SET: SCHED_FIFO 60 refused (Operation not permitted); "
                          "it runs at SCHED_OTHER, nice 0"), out
    assert out.rstrip().endswith("(from the bench)")
