"""The gateway prices exits with the site's tariff file and audits every change of it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.app import TARIFF_ACTION, GatewayApp
from gateway.config import GatewayConfig
from gateway.money.pricing import EXAMPLE_TARIFF, SitePricing
from parkguard.clock import ManualClock
from parkguard.core.tariffs import vehicle_class_for
from parkguard.errors import ParkGuardError

NOON = datetime(2026, 5, 6, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai, a Wednesday


def tariff_actions(app: GatewayApp) -> list[object]:
    return [e.after for e in app.audit.entries() if e.action == TARIFF_ACTION]


def test_the_tariff_in_force_is_audited_once_and_again_only_when_it_changes(
    tmp_path: Path,
) -> None:
    tariff = tmp_path / "tariff.toml"
    tariff.write_text(EXAMPLE_TARIFF.read_text(encoding="utf-8"), encoding="utf-8")
    config = GatewayConfig(site="test", database=tmp_path / "gw.db", tariff_file=tariff)
    for _ in range(2):  # two restarts with the same file: one entry
        app = GatewayApp(config, clock=ManualClock(NOON))
        app.audit_tariff()
        app.store.close()
    dearer = tariff.read_text(encoding="utf-8").replace("flat_fen = 500", "flat_fen = 600", 1)
    tariff.write_text(dearer, encoding="utf-8")
    app = GatewayApp(config, clock=ManualClock(NOON))
    app.audit_tariff()
    changes = tariff_actions(app)
    entries = [e for e in app.audit.entries() if e.action == TARIFF_ACTION]
    assert len(changes) == 2
    assert entries[1].before == entries[0].after != entries[1].after
    assert app.audit.verify().ok
    app.store.close()


def test_a_tariff_file_that_does_not_load_stops_the_gateway_naming_the_field(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "tariff.toml"
    bad.write_text(EXAMPLE_TARIFF.read_text(encoding="utf-8").replace(
        'mode = "threshold"', 'mode = "sometimes"', 1), encoding="utf-8")
    config = GatewayConfig(site="test", database=tmp_path / "gw.db", tariff_file=bad)
    with pytest.raises(ParkGuardError, match=r"free\.mode"):
        GatewayApp(config, clock=ManualClock(NOON))


@pytest.mark.parametrize(("plate", "expected"), [
    ("粤B12345", "small"), ("沪AD12345", "new_energy"), ("粤B12345D", "small"), ("???", "small"),
])
def test_a_plate_picks_the_class_it_is_priced_as(plate: str, expected: str) -> None:
    assert vehicle_class_for(plate, {"small", "large", "new_energy"}) == expected


def test_duty_vehicles_and_new_energy_cars_pay_what_the_tariff_says() -> None:
    pricing = SitePricing.from_file(EXAMPLE_TARIFF)
    out = datetime(2026, 5, 6, 5, 30, tzinfo=UTC)  # 90 minutes by day
    assert pricing.quote(plate="粤B12345", entry=NOON, exit=out).total_fen == 700
    assert pricing.quote(plate="沪AD12345", entry=NOON, exit=out).total_fen == 350
    assert pricing.quote(plate="浙O1234警", entry=NOON, exit=out).total_fen == 0
