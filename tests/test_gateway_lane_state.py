"""What the gateway does with a lane's retained state: a lane that comes (back) online gets a
replica snapshot; one whose barrier merely moved does not (a snapshot per car made every day
of the soak slower than the one before, docs/scenarios.md). Real Mosquitto, real lanes."""

from __future__ import annotations

import pytest

from simulator.site import SimulatedSite
from tests.helpers import eventually

PLATE = "粤B12345"


@pytest.mark.integration
def test_a_lane_gets_a_snapshot_when_it_comes_online_not_when_its_barrier_moves(
    site: SimulatedSite,
) -> None:
    replicas, service = site.gateway.replicas, site.gateway.service
    assert replicas is not None
    # A first car: both lanes have asked the gateway since they said they were online (in
    # order on their connections), so their first snapshots are behind us.
    site.drive("in1", PLATE)
    site.drive("out1", PLATE)
    site.settle()
    service.wait_idle()
    before = replicas.chunks_sent
    for _ in range(3):  # each car: the barrier up and down, each a new retained state
        site.drive("in1", PLATE)
        site.drive("out1", PLATE)
        site.settle()
    service.wait_idle()
    assert replicas.chunks_sent == before, "no snapshot for a barrier that moved"

    status = site.lanes["in1"].node.controller.status
    status.publish_offline()  # as its Last Will says when it dies
    status.publish()  # and back
    eventually(lambda: replicas.chunks_sent > before, timeout=30,
               what="a snapshot for the lane back online")
