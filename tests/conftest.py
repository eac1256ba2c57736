"""Shared fixtures: a real, locked-down Mosquitto per test (or per session) for a provisioned
test site.

The test site is provisioned once per run exactly as an installer would provision a real
one (CA, TLS, one user per device, least-privilege ACLs); every broker the tests start runs
that config, so every test also exercises the ACLs. Devices log in with
``broker.address("lane-in1")``, ``broker.address("gateway")`` or a read-only watcher such
as ``broker.address("monitor-watch1")``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from parkguard.clock import ManualClock
from simulator.provisioned import provision_simulated_site
from simulator.site import SimulatedSite
from tests.sms_peer import SmsEagle
from wire.memory import MemoryBroker

TEST_SITE = "test"
ENTRY_LANES = ("in1", "in2", "in9")
EXIT_LANES = ("out1", "out2")
WATCHERS = ("watch1", "watch2", "watch3")
#: When simulated time starts in the site fixture: 10:00 in Shanghai, a Wednesday.
SITE_START = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def test_site(tmp_path_factory: pytest.TempPathFactory) -> ProvisionResult:
    """The provisioned test site: its lanes, a gateway, sensors and read-only watchers."""
    return provision_simulated_site(
        tmp_path_factory.mktemp("test-site"), TEST_SITE, entry_lanes=ENTRY_LANES,
        exit_lanes=EXIT_LANES, monitors=WATCHERS,
    )


@pytest.fixture
def broker(tmp_path: Path, test_site: ProvisionResult) -> Iterator[MosquittoBroker]:
    """A private locked-down broker this test may stop, kill, restart or fill with retained
    state."""
    with MosquittoBroker(tmp_path / "mosquitto", site=test_site) as running:
        yield running


@pytest.fixture(scope="session")
def session_broker(
    tmp_path_factory: pytest.TempPathFactory, test_site: ProvisionResult
) -> Iterator[MosquittoBroker]:
    """One locked-down broker shared by the whole run: use unique topics, never stop it."""
    with MosquittoBroker(tmp_path_factory.mktemp("session-mosquitto"), site=test_site) as running:
        yield running


@pytest.fixture
def site(broker: MosquittoBroker, tmp_path: Path,
         test_site: ProvisionResult) -> Iterator[SimulatedSite]:
    """The gateway and one entry (in1) and one exit (out1) lane on mock boards, on a
    manual clock starting at :data:`SITE_START`."""
    with SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=tmp_path,
                       clock=ManualClock(SITE_START), entry_lanes=("in1",),
                       exit_lanes=("out1",),
                       lane_keys=test_site.device("gateway").lane_keys) as running:
        yield running


@pytest.fixture
def memory() -> Iterator[MemoryBroker]:
    """An in-memory broker for tests that play the lanes or the gateway without Mosquitto."""
    broker = MemoryBroker()
    yield broker
    broker.close()


@pytest.fixture
def eagle() -> Iterator[SmsEagle]:
    """A local SMSEagle box (tests/sms_peer.py) for tests whose texts leave through Apprise."""
    server = SmsEagle()
    yield server
    server.close()
