"""One patrol day on the example regime (docs/examples/patrols.toml), tapped into a real
gateway database through :class:`~gateway.patrols.desk.PatrolDesk` as the readers' taps
arrive: the figures the patrol page, ``parkguard patrol report`` and the pure summary are
checked against (tests/test_patrol_summary.py, tests/test_patrol_browser.py).

2026-05-06, site-local (Asia/Shanghai):

* 01:00-01:12 zhao (guard, shift c) walks B1 in order; at 01:05 a cloned booth tag (a
  message not made with the tag's key) is tapped with his badge: refused, flagged.
* 08:30-09:15 wang (guard, shift a) walks B1 in 45 minutes: late (limit 30).
* 10:00-10:16 chen (squad leader) walks the whole car park; at 13:00 again, but B1 pump to
  B2 west (70 m and a level) in 10 s: walked too fast.
* 14:00-14:05 zhou (captain) spot-checks three checkpoints: done.
* 17:00-17:10 li (guard, shift b) walks B2 but skips the east ramp: missed.
* nobody cleans the booth floor (a team duty): not walked.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from gateway.patrols.desk import PatrolDesk
from parkguard.core.patrol import PatrolConfig, load_patrol_config, simulate_tap
from wire.contract.messages import PatrolTap

EXAMPLE = Path(__file__).resolve().parents[1] / "docs/examples/patrols.toml"
CONFIG: PatrolConfig = load_patrol_config(EXAMPLE)
DAY = date(2026, 5, 6)
MIDNIGHT = datetime(2026, 5, 5, 16, 0, tzinfo=UTC)  # 2026-05-06 00:00 in Shanghai
AFTER = MIDNIGHT + timedelta(days=1, seconds=1)  # every window of the day has ended

#: (reader, badge, [(hh, mm, ss, checkpoint)]) in the order they happened.
WALKS: list[tuple[str, str, list[tuple[int, int, int, str]]]] = [
    ("r3", "G003", [(1, 0, 0, "b1-ramp"), (1, 3, 0, "b1-booth"), (1, 7, 0, "b1-east"),
                    (1, 12, 0, "b1-pump")]),
    ("r1", "G001", [(8, 30, 0, "b1-ramp"), (8, 45, 0, "b1-booth"), (9, 0, 0, "b1-east"),
                    (9, 15, 0, "b1-pump")]),
    ("r2", "S001", [(10, 0, 0, "b1-ramp"), (10, 2, 0, "b1-booth"), (10, 5, 0, "b1-east"),
                    (10, 8, 0, "b1-pump"), (10, 12, 0, "b2-west"), (10, 16, 0, "b2-east")]),
    ("r2", "S001", [(13, 0, 0, "b1-ramp"), (13, 2, 0, "b1-booth"), (13, 5, 0, "b1-east"),
                    (13, 8, 0, "b1-pump"), (13, 8, 10, "b2-west"), (13, 12, 0, "b2-east")]),
    ("r2", "C001", [(14, 0, 0, "b1-ramp"), (14, 2, 0, "b1-booth"), (14, 5, 0, "b1-east")]),
    ("r3", "G002", [(17, 0, 0, "b2-west"), (17, 3, 0, "b2-extinguisher"),
                    (17, 10, 0, "b2-hydrant")]),
]
CLONED_AT = (1, 5, 0)


def tap_the_day(desk: PatrolDesk) -> None:
    """Every tap of the day, ingested as it arrives (each received when tapped)."""
    counters = {c.id: 100 for c in CONFIG.checkpoints}
    seqs: dict[str, int] = {}
    taps: list[tuple[datetime, str, str, str, str]] = []  # at, reader, badge, tag, sun
    for reader, badge, stops in WALKS:
        for hh, mm, ss, point in stops:
            at = MIDNIGHT + timedelta(hours=hh, minutes=mm, seconds=ss)
            taps.append((at, reader, badge, point, ""))
    booth = CONFIG.checkpoint["b1-booth"]
    cloned_at = MIDNIGHT + timedelta(hours=CLONED_AT[0], minutes=CLONED_AT[1])
    taps.append((cloned_at, "r3", "G003", "b1-booth",
                 simulate_tap(bytes(16), booth.tag, 900)))  # made without the tag's key
    for at, reader, badge, point, forged in sorted(taps):
        checkpoint = CONFIG.checkpoint[point]
        assert checkpoint.key is not None
        counters[point] += 1
        sun = forged or simulate_tap(bytes.fromhex(checkpoint.key.get_secret_value()),
                                     checkpoint.tag, counters[point])
        seqs[reader] = seqs.get(reader, 0) + 1
        local = at.astimezone(CONFIG.zone).replace(tzinfo=None)
        desk.ingest(PatrolTap(reader=reader, seq=seqs[reader], tag_id=checkpoint.tag, sun=sun,
                              badge=badge, reader_time=local), at)
