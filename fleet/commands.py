"""``parkguard fleet``: run the fleet service, make its stream, migrate, check audit anchors.

Added to the command lazily (``cli/main.py``): it needs the ``fleet`` extra (nats-py,
psycopg, yoyo), which a lane or a site gateway does not install.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import nats
import psycopg

from fleet.anchor import check_site
from fleet.config import FleetConfig
from fleet.orders import build, create_key, load_key, public_hex, publish, record, tariff_versions
from fleet.schema import migrate
from fleet.service import FleetService
from fleet.stream import ensure_stream
from parkguard.configfile import load_config, reveal
from parkguard.core.tariffs import parse_tariff_document
from wire.fleet_command import CommandKind

_CONFIG = click.option("-c", "--config", "config_path", required=True,
                       type=click.Path(exists=True, dir_okay=False, path_type=Path),
                       help="fleet.toml: [nats] and [postgres] (docs/fleet.md)")


@click.group(name="fleet")
def fleet() -> None:
    """The fleet: many sites' events from NATS JetStream into PostgreSQL (docs/fleet.md)."""


@fleet.command(name="run")
@_CONFIG
def run_command(config_path: Path) -> None:
    """Consume every site's subjects into PostgreSQL until SIGTERM or Ctrl-C."""
    config = load_config(FleetConfig, config_path)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    service = FleetService(config)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, service.stop)
        await service.run()

    asyncio.run(main())
    counters = service.counters
    click.echo(f"fleet: {counters.new} new, {counters.repeated} repeated, "
               f"{counters.dead} dead letters")


@fleet.command(name="migrate")
@_CONFIG
def migrate_command(config_path: Path) -> None:
    """Bring the fleet database to the newest schema (yoyo, fleet/migrations/)."""
    config = load_config(FleetConfig, config_path)
    applied = migrate(reveal(config.postgres.dsn) or "")
    click.echo(f"fleet database: {applied} migrations applied")


@fleet.command(name="stream")
@_CONFIG
def stream_command(config_path: Path) -> None:
    """Create (or update) the JetStream stream. Do it before any site bridges in."""
    settings = load_config(FleetConfig, config_path).nats

    async def main() -> None:
        nc = await nats.connect(servers=list(settings.servers), user=settings.user,
                                password=reveal(settings.password))
        try:
            await ensure_stream(nc.jetstream(), settings)
        finally:
            await nc.close()

    asyncio.run(main())
    click.echo(f"stream {settings.stream} ready")


@fleet.command(name="anchors")
@_CONFIG
@click.option("--site", required=True, help="the site's slug, as in its topics")
@click.argument("db_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def anchors_command(config_path: Path, site: str, db_path: Path) -> None:
    """Check the site's audit chain in DB_PATH against every head the fleet kept.

    Exit 0: every anchor matches; 1: the chain was rewritten or cut (the first named).
    """
    config = load_config(FleetConfig, config_path)
    with psycopg.connect(reveal(config.postgres.dsn) or "") as conn:
        compared, problems = check_site(conn, site, db_path)
    if problems:
        first = problems[0]
        click.echo(f"audit chain of {site} does NOT match the fleet's copy: {first.kind} "
                   f"({first.detail}); {len(problems)} of {compared} anchors differ", err=True)
        sys.exit(1)
    click.echo(f"audit chain of {site} matches the fleet's {compared} anchors")


@fleet.command(name="keygen")
@click.argument("key_path", type=click.Path(dir_okay=False, path_type=Path))
def keygen_command(key_path: Path) -> None:
    """Make the fleet's Ed25519 signing key in KEY_PATH; print the public key for the sites."""
    key = create_key(key_path)
    click.echo(f"fleet signing key written to {key_path} (keep it secret)")
    click.echo(f"each site's gateway config: [fleet] public_key = \"{public_hex(key)}\"")


@fleet.group(name="command")
def command_group() -> None:
    """Send a signed command to sites; each answers applied or refused (docs/fleet.md)."""


_SITES = click.option("--site", "sites", multiple=True, required=True,
                      help="a site slug (repeat for several)")
_REASON = click.option("--reason", required=True, help="why: goes into every site's audit log")
_ISSUER = click.option("--issuer", required=True, help="who at the fleet is sending it")


def _send(config_path: Path, sites: tuple[str, ...], kind: CommandKind,
          body: dict[str, Any], issuer: str, reason: str) -> None:
    config = load_config(FleetConfig, config_path)
    if config.commands is None:
        raise click.UsageError(f"{config_path}: no [commands] section (key_file): cannot sign")
    key = load_key(config.commands.key_file)
    now = datetime.now(UTC)
    sent = [build(key, site=site, kind=kind, body=body, issuer=issuer, reason=reason, now=now,
                  ttl=timedelta(seconds=config.commands.ttl_s)) for site in sites]
    with psycopg.connect(reveal(config.postgres.dsn) or "") as conn:
        record(conn, sent)  # accounted for before it leaves

    async def main() -> None:
        settings = config.nats
        nc = await nats.connect(servers=list(settings.servers), user=settings.user,
                                password=reveal(settings.password))
        try:
            for command in sent:
                await publish(nc.jetstream(), command)
        finally:
            await nc.close()

    asyncio.run(main())
    for command in sent:
        click.echo(f"{command.site}: {kind} command {command.command_id} sent")


@command_group.command(name="tariff")
@_CONFIG
@_SITES
@click.option("--file", "tariff_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--version", required=True, help="the version in the file the sites must apply")
@_ISSUER
@_REASON
def tariff_command(config_path: Path, sites: tuple[str, ...], tariff_path: Path, version: str,
                   issuer: str, reason: str) -> None:
    """A new tariff file (checked here first) for the sites to put in force."""
    text = tariff_path.read_text(encoding="utf-8")
    document = parse_tariff_document(text, source=str(tariff_path))
    if version not in {t.version for t in document.tariffs}:
        raise click.UsageError(f"--version {version!r} is not a version in {tariff_path}")
    _send(config_path, sites, "tariff", {"tariff_toml": text, "version": version}, issuer,
          reason)


@command_group.command(name="pass")
@_CONFIG
@_SITES
@click.option("--body", required=True, help='JSON, e.g. {"action": "revoke", "pass_id": "…"}')
@_ISSUER
@_REASON
def pass_command(config_path: Path, sites: tuple[str, ...], body: str, issuer: str,
                 reason: str) -> None:
    """Issue, renew or revoke a pass (docs/fleet.md names the fields)."""
    _send(config_path, sites, "pass", _json_object(body), issuer, reason)


@command_group.command(name="list")
@_CONFIG
@_SITES
@click.option("--action", type=click.Choice(["add", "remove"]), required=True)
@click.option("--list", "list_name", type=click.Choice(["whitelist", "blacklist"]),
              required=True)
@click.option("--plate", required=True)
@_ISSUER
@_REASON
def list_command(config_path: Path, sites: tuple[str, ...], action: str, list_name: str,
                 plate: str, issuer: str, reason: str) -> None:
    """Put a plate on (or take it off) a site's whitelist or blacklist."""
    _send(config_path, sites, "list", {"action": action, "list": list_name, "plate": plate},
          issuer, reason)


@command_group.command(name="open")
@_CONFIG
@click.option("--site", required=True)
@click.option("--lane", required=True)
@_ISSUER
@_REASON
def open_command(config_path: Path, site: str, lane: str, issuer: str, reason: str) -> None:
    """Open one lane's barrier once, remotely; the reason is audited at the site."""
    _send(config_path, (site,), "open", {"lane": lane}, issuer, reason)


@fleet.command(name="versions")
@_CONFIG
def versions_command(config_path: Path) -> None:
    """Which tariff version each commanded site last acknowledged as applied."""
    config = load_config(FleetConfig, config_path)
    with psycopg.connect(reveal(config.postgres.dsn) or "") as conn:
        for site, version, ts in tariff_versions(conn):
            shown = "none applied" if version is None else f"{version} (acked {ts})"
            click.echo(f"{site}: {shown}")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error.msg}", param_hint="--body") from error
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--body")
    return value


@fleet.command(name="web")
@_CONFIG
def web_command(config_path: Path) -> None:
    """Serve the fleet dashboard ([web] in fleet.toml) until Ctrl-C."""
    import secrets as _secrets

    import uvicorn

    from fleet.web.app import create_fleet_app

    config = load_config(FleetConfig, config_path)
    if config.web is None:
        raise click.UsageError(f"{config_path}: no [web] section")
    web = config.web
    key_file = web.secret_key_file
    if not key_file.exists():
        key_file.write_text(_secrets.token_urlsafe(48), encoding="utf-8")
        key_file.chmod(0o600)
    app = create_fleet_app(reveal(config.postgres.dsn) or "",
                           secret_key=key_file.read_text(encoding="utf-8").strip(),
                           timezone=web.timezone, now=lambda: datetime.now(UTC),
                           https_only=web.https_only)
    uvicorn.run(app, host=web.host, port=web.port, log_level="info")


@fleet.command(name="user")
@_CONFIG
@click.argument("username")
@click.option("--role", type=click.Choice(["fleet_admin", "operator"]), required=True)
@click.option("--site", "sites", multiple=True, help="a site an operator sees (repeat)")
@click.password_option()
def user_command(config_path: Path, username: str, role: str, sites: tuple[str, ...],
                 password: str) -> None:
    """Add or replace a fleet dashboard user (an operator sees only the --site given)."""
    from fleet.web.users import add_user

    config = load_config(FleetConfig, config_path)
    with psycopg.connect(reveal(config.postgres.dsn) or "") as conn:
        try:
            add_user(conn, username, password, "fleet_admin" if role == "fleet_admin"
                     else "operator", sites)
        except ValueError as error:
            raise click.BadParameter(str(error)) from error
    click.echo(f"{username}: {role}" + (f" of {', '.join(sites)}" if sites else ""))


@fleet.command(name="demo")
@click.option("--cars", default=12, show_default=True, help="Cars at each site in the day.")
@click.option("--seed", default=7, show_default=True, help="Traffic seed (same seed, same day).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("var/fleet-demo"),
              show_default=True, help="Where the NATS stores, PostgreSQL and sites go.")
@click.option("--port", default=8090, show_default=True, help="The fleet dashboard's port.")
@click.option("--serve/--no-serve", default=None,
              help="After the day, serve the fleet dashboard until Ctrl-C [default: when run "
              "from a terminal and CI is not set].")
def demo_command(cars: int, seed: int, out: Path, port: int, serve: bool | None) -> None:
    """Three sites and a fleet on this machine: NATS cluster, PostgreSQL, dashboard."""
    import os
    import secrets as _secrets

    from rich.console import Console

    from simulator.fleet_demo import FleetDemoOptions, run_fleet_demo, summary_table

    console = Console()
    if serve is None:
        serve = sys.stdin.isatty() and not os.environ.get("CI")

    def ready(result: Any, config: FleetConfig) -> None:
        console.print(summary_table(result))
        if not result.complete:
            console.print("[red]not every site event reached the fleet in time, or the money "
                          "differs[/red]")
        if not serve:
            console.print("fleet dashboard not served: standard input is not a terminal (or "
                          "CI is set); `parkguard fleet demo --serve` serves it until Ctrl-C.")
            return
        import uvicorn

        from fleet.web.app import create_fleet_app

        app = create_fleet_app(result.dsn, secret_key=_secrets.token_urlsafe(48),
                               now=lambda: datetime.now(UTC))
        console.print(f"fleet dashboard 车队看板: http://127.0.0.1:{port}/  (Ctrl-C stops "
                      "the demo)")
        for name, (password, role) in result.logins.items():
            console.print(f"  login {name} / {password}  ({role})")
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")

    result = run_fleet_demo(FleetDemoOptions(workdir=out, cars=cars, seed=seed), console,
                            on_ready=ready)
    if not result.complete:
        sys.exit(1)
