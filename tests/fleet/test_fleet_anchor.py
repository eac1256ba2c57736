"""Anchoring a site's audit chain in the fleet: the gateway publishes its head, the fleet keeps
it, and a chain rewritten from the start (which ``audit verify`` passes) fails the fleet check."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner

from fleet.anchor import check_anchors
from fleet.commands import fleet as fleet_command
from gateway.records.audit import AuditLog, verify
from gateway.records.audit.anchor import AuditHeadPublisher, read_head
from gateway.storage.migrations import migrate
from parkguard.clock import ManualClock
from tests.fleet.conftest import NOW, Fleet, start_service
from tests.fleet.test_fleet_service import wait_for
from wire.mqtt import MqttBus


def _chain(path: Path, reasons: list[str]) -> sqlite_utils.Database:
    db = migrate(sqlite_utils.Database(path))
    log = AuditLog(db, clock=ManualClock(NOW))
    for reason in reasons:
        log.record(actor="guard:0042", action="lane.manual_open", subject="lane:in1",
                   reason=reason)
    return db


def test_anchors_catch_a_rewrite_and_a_cut() -> None:
    anchors = [(0, "0" * 64), (2, "b" * 64), (3, "c" * 64)]
    assert check_anchors(anchors, {2: "b" * 64, 3: "c" * 64}, 3) == []
    rewritten = check_anchors(anchors, {2: "x" * 64, 3: "c" * 64}, 3)
    assert [(p.length, p.kind) for p in rewritten] == [(2, "rewritten")]
    cut = check_anchors(anchors, {2: "b" * 64}, 2)
    assert [(p.length, p.kind) for p in cut] == [(3, "truncated")]


@pytest.mark.integration
def test_a_chain_rewritten_from_the_start_passes_verify_but_not_the_fleet(
        fleet: Callable[..., Fleet], fleet_dsn: str, tmp_path: Path) -> None:
    running = fleet("north")
    config = running.write_config(fleet_dsn)
    site_db = _chain(tmp_path / "gateway.db", ["jammed ticket", "help button", "fire drill"])
    bus = MqttBus(running.brokers["north"].address("gateway"), client_id="north-gw").start()
    service = start_service(config, tmp_path / "service.log")
    try:
        publisher = AuditHeadPublisher(bus, "north", ManualClock(NOW), site_db,
                                       run_on_worker=lambda work: work())
        head = publisher.publish_now()
        assert (head.length, head.head_hash) == read_head(site_db)
        wait_for(fleet_dsn, "SELECT count(*) FROM audit_heads WHERE site = 'north'", 1)
    finally:
        bus.stop()
        service.send_signal(signal.SIGTERM)
        service.wait(15)
    forged = _chain(tmp_path / "forged.db", ["nothing happened", "nothing", "nothing"])
    assert verify(forged).ok  # a consistent chain, rewritten from entry 1
    runner = CliRunner()
    good = runner.invoke(fleet_command, ["anchors", "-c", str(config), "--site", "north",
                                         str(tmp_path / "gateway.db")])
    assert good.exit_code == 0, good.output
    bad = runner.invoke(fleet_command, ["anchors", "-c", str(config), "--site", "north",
                                        str(tmp_path / "forged.db")])
    assert bad.exit_code == 1
    assert "rewritten" in bad.output
