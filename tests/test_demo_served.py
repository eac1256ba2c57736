"""``parkguard demo --serve`` as a newcomer runs it: after the day, the site stays alive —
cars inside owing money, the dashboard answering — and Ctrl-C (SIGTERM here) ends it cleanly."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import eventually

PARKGUARD = str(Path(sys.executable).with_name("parkguard"))

pytestmark = pytest.mark.integration


def open_sessions(database: Path) -> int:
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            return int(db.execute(
                "SELECT count(*) FROM sessions WHERE state = 'open'").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_the_served_demo_keeps_cars_coming_and_stops_on_a_signal(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    errors = (tmp_path / "stderr.txt").open("w")  # a file: a full pipe would block the demo
    demo = subprocess.Popen(
        [PARKGUARD, "demo", "--cars", "10", "--no-plot", "--serve", "--reader", "ground_truth",
         "--out", str(out)], stdout=subprocess.PIPE, stderr=errors, text=True)
    try:
        assert demo.stdout is not None
        url = None
        for line in demo.stdout:
            found = re.search(r"dashboard:\s+(http://\S+?)/\s*$", line)
            if found:
                url = found.group(1)
            if "live traffic" in line:
                break
        assert url is not None, (tmp_path / "stderr.txt").read_text()
        eventually(lambda: open_sessions(out / "gateway.db") >= 6, timeout=60,
                   what="the live traffic's first cars inside")
        assert httpx.get(f"{url}/login", timeout=10).status_code == 200
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        errors.close()
