"""Fleet ingestion bench: events/s from N sites through JetStream into PostgreSQL, beside a bare
nats-py publish → consume baseline measured in the same run (docs/fleet.md, "Scale").

A private 3-node NATS cluster (the project's template, replicas 3) and a private PostgreSQL
are started for the run. For each N (sites, 1, 10 and 50 by default): ``--events`` lane
``passed`` events shared among the N sites are published into the stream with acknowledged
JetStream publishes, then, each the best of ``--repeat`` runs with a fresh durable consumer

1. **baseline** — a bare nats-py durable pull consumer fetches them in batches of ``--batch``
   and acks each one, writing nothing;
2. **fleet** — :class:`fleet.service.FleetService` reads the same stream into PostgreSQL (one
   transaction per batch, ack after commit), timed until every event is in ``events``.

Both consume a stream that is already full, so the ratio is the cost of the database. The sites
are publishers in this process (our own simulator's events), not Mosquitto bridges: the
bridge's own throughput is Mosquitto's. Each row also gives the fleet's wall µs per event and
its multiple of the one-site row: flat means the cost grows linearly with the events, whatever
the number of sites. Part of ``make bench`` (about a minute here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import psycopg
from nats.js.api import AckPolicy, ConsumerConfig
from rich.console import Console
from rich.table import Table

from fleet.cluster import NatsCluster
from fleet.config import FleetConfig, NatsSettings, PostgresSettings
from fleet.natsconf import NatsUser
from fleet.postgres import PostgresServer
from fleet.schema import migrate
from fleet.service import FleetService
from fleet.stream import SUBJECTS, archive_source, ensure_stream

START = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    sites: int
    events: int
    baseline_per_s: float
    fleet_per_s: float

    load: float = 0.0  # the 1-minute load average when the row was measured

    @property
    def ratio(self) -> float:
        return self.fleet_per_s / self.baseline_per_s

    @property
    def fleet_us_per_event(self) -> float:
        """Wall time per event into PostgreSQL: flat across N means total cost grows
        linearly with the number of sites' events."""
        return 1e6 / self.fleet_per_s


def _event(site: str, seq: int) -> tuple[str, bytes]:
    lane = "out1" if seq % 2 == 0 else "in1"
    body = {"v": 1, "event_id": f"{site}-{lane}-{seq:07d}", "seq": seq,
            "ts": (START + timedelta(seconds=seq)).isoformat().replace("+00:00", "Z"),
            "lane": lane, "type": "passed", "direction": "exit" if lane == "out1" else "entry",
            "plate": f"粤B{seq % 100000:05d}", "correlation_id": f"c{site}{seq:07d}",
            "session_id": f"{site}-s{seq // 2:07d}", "fee_fen": 500 if lane == "out1" else 0,
            "settled": "paid_online" if lane == "out1" else "decision"}
    subject = f"parkguard.v1.{site}.lane.{lane}.event"
    return subject, json.dumps(body, ensure_ascii=False).encode()


async def _fill(settings: NatsSettings, password: str, sites: int, per_site: int) -> int:
    nc = await nats.connect(servers=list(settings.servers), user="admin", password=password)
    js = nc.jetstream()
    try:
        await js.delete_stream(settings.stream)
    except nats.js.errors.NotFoundError:
        pass
    await ensure_stream(js, settings)
    messages = [_event(f"site{s:02d}", seq) for s in range(sites)
                for seq in range(1, per_site + 1)]
    for start in range(0, len(messages), 500):
        await asyncio.gather(*(js.publish(subject, data)
                               for subject, data in messages[start:start + 500]))
    await nc.close()
    return len(messages)


async def _baseline(settings: NatsSettings, password: str, total: int, batch: int,
                    durable: str) -> float:
    nc = await nats.connect(servers=list(settings.servers), user="admin", password=password)
    js = nc.jetstream()
    sub = await js.pull_subscribe(SUBJECTS, durable=durable, stream=settings.stream,
                                  config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT,
                                                        max_ack_pending=100_000))
    started = time.perf_counter()
    seen = 0
    while seen < total:
        for message in await sub.fetch(batch, timeout=5):
            await message.ack()
            seen += 1
    await nc.flush()
    elapsed = time.perf_counter() - started
    await nc.close()
    return total / elapsed


async def _fleet(config: FleetConfig, dsn: str, total: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE events, sessions, payments, patrol_taps, audit_heads, "
                     "dead_letters, alarms, device_health")
    # PARKGUARD, which the bench fills directly (no MQTT bridges): fleet/stream.py.
    service = FleetService(config, archive_source(config.nats))
    task = asyncio.create_task(service.run())
    ready = asyncio.create_task(service.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    started = time.perf_counter()
    while service.counters.new < total:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    service.stop()
    await task
    return total / elapsed


def run_bench(site_counts: list[int], events: int, batch: int, workdir: Path,
              repeat: int = 2) -> list[Row]:
    """Each side's best of ``repeat`` runs (a fresh durable consumer each) on the same stream:
    the machine is shared, and a run that another process slowed says nothing about ours."""
    admin = secrets.token_urlsafe(12)
    service_password = secrets.token_urlsafe(12)
    users = [NatsUser("admin", admin, "admin"), NatsUser("fleet", service_password, "service")]
    rows = []
    with NatsCluster(workdir / "nats", users, repick_ports=True) as cluster, \
            PostgresServer() as pg:
        migrate(pg.dsn)
        # Warm up, not recorded: the first run on a fresh cluster and database (connections,
        # catalogue caches, consumers' leaders) was the slowest whatever N it had.
        counts = [min(site_counts), *site_counts]
        for index, sites in enumerate(counts):
            per_site = max(1, (events if index > 0 else 1000) // sites)
            settings = NatsSettings.model_validate({
                "servers": tuple(cluster.client_urls), "password": service_password,
                "batch": batch})
            total = asyncio.run(_fill(settings, admin, sites, per_site))
            bare = into_pg = 0.0
            for attempt in range(repeat):
                bare = max(bare, asyncio.run(_baseline(settings, admin, total, batch,
                                                       f"bench-bare-{index}-{attempt}")))
                config = FleetConfig(
                    nats=settings.model_copy(update={"durable": f"fleet-{index}-{attempt}"}),
                    postgres=PostgresSettings.model_validate({"dsn": pg.dsn}))
                into_pg = max(into_pg, asyncio.run(_fleet(config, pg.dsn, total)))
            if index > 0:
                rows.append(Row(sites, total, bare, into_pg, os.getloadavg()[0]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--events", type=int, default=10000, help="events per run, all sites")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as folder:
        rows = run_bench(args.sites, args.events, args.batch, Path(folder), args.repeat)
    table = Table(title="Fleet ingestion: JetStream → PostgreSQL (own simulator's events)")
    for column in ("sites", "events", "bare nats-py consume /s", "fleet into PostgreSQL /s",
                   "ratio (target ≥ 0.50)", "fleet µs/event", "× 1 site's", "load"):
        table.add_column(column, justify="right")
    first = rows[0].fleet_us_per_event if rows else 1.0
    for row in rows:
        met = "met" if row.ratio >= 0.5 else "NOT met"
        table.add_row(str(row.sites), str(row.events), f"{row.baseline_per_s:,.0f}",
                      f"{row.fleet_per_s:,.0f}", f"{row.ratio:.2f} {met}",
                      f"{row.fleet_us_per_event:,.0f}", f"{row.fleet_us_per_event / first:.2f}",
                      f"{row.load:.1f}")
    console = Console()
    console.print(table)
    console.print(f"{os.cpu_count()} cores; events from our own simulator (simulator/"
                  "bench_fleet.py), nothing from outside. Linear growth in cost: µs/event flat "
                  "(× 1 site's ≈ 1) as N grows.")


if __name__ == "__main__":
    main()
