"""The roster the site-operations tests share: a guard and a squad leader on the day shift
(the site fixture's clock starts at 10:00 in Shanghai) and a maintenance engineer always
reachable; no contact channels (who was told is read from the alert's escalation events).
A lane not heard from for two minutes is offline."""

from __future__ import annotations

from pathlib import Path

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from parkguard.clock import ManualClock
from simulator.site import SimulatedSite
from tests.conftest import SITE_START, TEST_SITE

ROSTER = """
lane_offline_after_s = 120

[alerts]
timezone = "Asia/Shanghai"
shifts = [{ name = "a", start = 08:00:00 }, { name = "b", start = 16:00:00 },
          { name = "c", start = 00:00:00 }]

[[alerts.people]]
id = "gina"
name = "Gina"
role = "guard"
shift = "a"

[[alerts.people]]
id = "sam"
name = "Sam"
role = "squad_leader"
shift = "a"

[[alerts.people]]
id = "mo"
name = "Mo"
teams = ["maintenance"]
"""


def rostered_site(broker: MosquittoBroker, tmp_path: Path,
                  test_site: ProvisionResult) -> SimulatedSite:
    """The site fixture's lanes (in1, out1) with :data:`ROSTER` as the safety file."""
    roster = tmp_path / "safety.toml"
    roster.write_text(ROSTER, encoding="utf-8")
    return SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=tmp_path,
                         clock=ManualClock(SITE_START), entry_lanes=("in1",),
                         exit_lanes=("out1",), safety_file=roster,
                         lane_keys=test_site.device("gateway").lane_keys)
