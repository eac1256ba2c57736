"""Shared fixtures: a real Mosquitto per test, or one per session for tests that only need a bus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.runner import MosquittoBroker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A private broker this test may stop, kill, restart or fill with retained state."""
    with MosquittoBroker(tmp_path / "mosquitto") as running:
        yield running


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """One broker shared by the whole run: use unique topics and never stop or restart it."""
    with MosquittoBroker(tmp_path_factory.mktemp("session-mosquitto")) as running:
        yield running
