"""A NATS node whose picked port was taken before it bound it: the cluster starts again on new
ports when its caller reads them after the start (``repick_ports``), and fails, naming the
port, when the caller has already copied them (a site's bridge, the demo's provisioning).
Seen in a full test run: another worker's server took a node's MQTT port in between."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fleet.cluster import NatsCluster, NatsError


def _hold(port: int) -> socket.socket:
    """A listening socket on ``port``: what the other process did with it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_a_taken_port_starts_the_cluster_again_on_new_ports(tmp_path: Path) -> None:
    cluster = NatsCluster(tmp_path / "nats", (), size=3, repick_ports=True)
    taken = cluster.nodes[2].mqtt
    with _hold(taken), cluster:
        assert taken not in cluster.mqtt_ports
        assert all(cluster.running(index) for index in range(3))


def test_without_repicking_the_taken_port_is_an_error_that_names_it(tmp_path: Path) -> None:
    cluster = NatsCluster(tmp_path / "nats", (), size=3)
    taken = cluster.nodes[0].mqtt
    with _hold(taken), pytest.raises(NatsError, match=f"{taken}.*address already in use"):
        cluster.start()
    for node in cluster.nodes[1:]:  # the nodes that did start are gone: their ports are free
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", node.client))
