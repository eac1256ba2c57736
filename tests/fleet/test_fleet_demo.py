"""`parkguard fleet demo`, headless, end to end: three sites' real gateways and lanes on their
own locked-down Mosquitto bridged to a 3-node NATS cluster, the fleet service into a private
PostgreSQL. Every lane event a site stored lands in the fleet, each site's fleet revenue is its
own book, and the printed logins work on the fleet dashboard (the operator sees one site)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from fleet.config import FleetConfig
from fleet.web.app import create_fleet_app
from simulator.fleet_demo import SITES, FleetDemoOptions, FleetDemoResult, run_fleet_demo

pytestmark = pytest.mark.integration


def _sites_seen(dsn: str, name: str, password: str) -> set[str]:
    app = create_fleet_app(dsn, secret_key="test-key-" + "x" * 32,
                           now=lambda: datetime.now(UTC))
    with TestClient(app) as client:
        answer = client.post("/login", data={"username": name, "password": password},
                             follow_redirects=False)
        assert answer.status_code == 303, answer.text
        return {row["site"] for row in client.get("/api/sites").json()}


@pytest.mark.timeout(180)  # ≈ 12 s here; minutes on a loaded machine
def test_fleet_demo_lands_every_site_event_and_the_logins_work(tmp_path: Path) -> None:
    seen: dict[str, set[str]] = {}

    def ready(result: FleetDemoResult, _config: FleetConfig) -> None:
        for name, (password, _role) in result.logins.items():
            seen[name] = _sites_seen(result.dsn, name, password)

    result = run_fleet_demo(FleetDemoOptions(workdir=tmp_path, cars=6), on_ready=ready)
    assert [s.site for s in result.sites] == list(SITES)
    for tally in result.sites:
        assert tally.cars == 6
        assert tally.stored >= 6 * 2 * 3, tally  # at least detected, read, passed per passage
        assert tally.landed == tally.stored, tally
        assert tally.revenue_fen == tally.book_fen, tally
    assert result.complete
    assert seen == {"fleet-admin": set(SITES), "operator-north": {"north"}}


def test_fleet_demo_command_says_what_it_does() -> None:
    from fleet.commands import fleet

    answer = CliRunner().invoke(fleet, ["demo", "--help"])
    assert answer.exit_code == 0
    assert "--serve / --no-serve" in answer.output
