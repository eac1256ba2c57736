"""Fleet ingestion bench: events/s from N sites through JetStream into PostgreSQL, beside a bare
nats-py publish → consume baseline measured in the same run (docs/fleet.md, "Scale").

A private 3-node NATS cluster (the project's template, replicas 3) and a private PostgreSQL
are started for the run. For each N (sites): N × ``--events`` lane ``passed`` events are
published into the stream with acknowledged JetStream publishes, then

1. **baseline** — a bare nats-py durable pull consumer fetches them in batches of ``--batch``
   and acks each one, writing nothing;
2. **fleet** — :class:`fleet.service.FleetService` reads the same stream into PostgreSQL (one
   transaction per batch, ack after commit), timed until every event is in ``events``.

Both consume a stream that is already full, so the ratio is the cost of the database. The sites
are publishers in this process (our own simulator's events), not Mosquitto bridges: the
bridge's own throughput is Mosquitto's. Not part of ``make bench`` yet: run
``python -m simulator.bench_fleet``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from fleet.stream import SUBJECTS, ensure_stream

START = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    sites: int
    events: int
    baseline_per_s: float
    fleet_per_s: float

    @property
    def ratio(self) -> float:
        return self.fleet_per_s / self.baseline_per_s


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


async def _baseline(settings: NatsSettings, password: str, total: int, batch: int) -> float:
    nc = await nats.connect(servers=list(settings.servers), user="admin", password=password)
    js = nc.jetstream()
    sub = await js.pull_subscribe(SUBJECTS, durable="bench-bare", stream=settings.stream,
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
    service = FleetService(config)
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


def run_bench(site_counts: list[int], events: int, batch: int, workdir: Path) -> list[Row]:
    admin = secrets.token_urlsafe(12)
    service_password = secrets.token_urlsafe(12)
    users = [NatsUser("admin", admin, "admin"), NatsUser("fleet", service_password, "service")]
    rows = []
    with NatsCluster(workdir / "nats", users) as cluster, PostgresServer() as pg:
        migrate(pg.dsn)
        for sites in site_counts:
            per_site = max(1, events // sites)
            settings = NatsSettings.model_validate({
                "servers": tuple(cluster.client_urls), "password": service_password,
                "batch": batch, "durable": f"fleet-{sites}"})
            config = FleetConfig(nats=settings,
                                 postgres=PostgresSettings.model_validate({"dsn": pg.dsn}))
            total = asyncio.run(_fill(settings, admin, sites, per_site))
            bare = asyncio.run(_baseline(settings, admin, total, batch))
            into_pg = asyncio.run(_fleet(config, pg.dsn, total))
            rows.append(Row(sites, total, bare, into_pg))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--events", type=int, default=5000, help="events per run, all sites")
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as folder:
        rows = run_bench(args.sites, args.events, args.batch, Path(folder))
    table = Table(title="Fleet ingestion: JetStream → PostgreSQL (own simulator's events)")
    for column in ("sites", "events", "bare nats-py consume /s", "fleet into PostgreSQL /s",
                   "ratio (target ≥ 0.50)"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row.sites), str(row.events), f"{row.baseline_per_s:,.0f}",
                      f"{row.fleet_per_s:,.0f}", f"{row.ratio:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
