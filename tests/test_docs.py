"""Docs that can be checked are checked: example configs load, the pin map matches the code."""

from __future__ import annotations

import re
from pathlib import Path

from firmware.lane.config import LaneConfig, PinMap
from gateway.config import GatewayConfig
from parkguard.configfile import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_the_example_gateway_config_loads() -> None:
    config = load_config(GatewayConfig, ROOT / "docs/examples/gateway.toml")
    assert config.site == "mall-b2"
    assert config.tariff_file.name == "tariff.toml"
    assert config.matching.max_distance == 1.0


def test_the_example_lane_config_loads() -> None:
    config = load_config(LaneConfig, ROOT / "docs/examples/lane-in1.toml")
    assert (config.lane, config.direction) == ("in1", "entry")


def test_the_hardware_pin_map_matches_the_lane_defaults() -> None:
    table = (ROOT / "hardware/lane-pins.md").read_text(encoding="utf-8")
    documented = {
        key: int(bcm)
        for key, bcm in re.findall(r"^\|[^|]+\| `(\w+)` \| (\d+) \|", table, flags=re.MULTILINE)
    }
    defaults = PinMap().model_dump()
    assert documented == defaults


def test_the_readme_starts_with_the_two_commands() -> None:
    head = "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:40])
    assert "make demo" in head and "make test" in head


def test_every_doc_the_readme_links_exists() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to missing {target}"


def test_every_link_in_the_hardware_docs_and_the_lane_doc_resolves() -> None:
    docs = [*sorted((ROOT / "hardware").glob("*.md")), ROOT / "docs/lane.md"]
    for doc in docs:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
