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
from importlib.metadata import EntryPoint, entry_points
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
from fleet.stream import MQTT_STREAM, ensure_stream
from parkguard.configfile import load_config, reveal
from parkguard.core.tariffs import parse_tariff_document
from wire.fleet_command import CommandKind

_CONFIG = click.option("-c", "--config", "config_path", required=True,
                       type=click.Path(exists=True, dir_okay=False, path_type=Path),
                       help="fleet.toml: [nats] and [postgres] (docs/fleet.md)")


PLUGGED: str = "parkguard.fleet_commands"
"""Entry point group of ``fleet`` subcommands other packages add: the simulator's ``demo``
(three simulated sites and a fleet on one machine), which this package may not import."""


class _PluggableFleet(click.Group):
    """The ``fleet`` group, with the subcommands plugged in through :data:`PLUGGED`, loaded
    only when run or listed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_plugged()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        point = _plugged().get(cmd_name)
        if command is None and point is not None:
            loaded = point.load()
            return loaded if isinstance(loaded, click.Command) else None
        return command


def _plugged() -> dict[str, EntryPoint]:
    return {point.name: point for point in entry_points(group=PLUGGED)}


@click.group(name="fleet", cls=_PluggableFleet)
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
    """Create (or update) the JetStream streams and the ingest consumer (fleet/stream.py). Do it
    before any site bridges in."""
    settings = load_config(FleetConfig, config_path).nats

    async def main() -> None:
        nc = await nats.connect(servers=list(settings.servers), user=settings.user,
                                password=reveal(settings.password))
        try:
            await ensure_stream(nc.jetstream(), settings)
        finally:
            await nc.close()

    asyncio.run(main())
    click.echo(f"streams {settings.stream} and {MQTT_STREAM}, consumer {settings.durable} ready")


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

