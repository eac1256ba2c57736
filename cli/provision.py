"""``parkguard broker init`` and ``parkguard broker rotate``: provision a site, rotate a secret.

Both are plain click commands so ``cli/main.py`` can mount them on its ``broker``
group with ``broker.add_command(init_command)`` (or ``for c in COMMANDS: ...``). Errors
are ParkGuard errors (``ConfigError`` for the inventory, ``ProvisionError`` otherwise) and
reach the user through ``cli.main.run``'s one handler, like every other command.
"""

from __future__ import annotations

from pathlib import Path

import click

from broker.provision.generate import (
    HMAC_SUFFIX,
    ProvisionResult,
    provision_site,
    rotate_secret,
    stored_run,
)
from broker.provision.inventory import load_inventory


def _report(result: ProvisionResult) -> None:
    """Say what changed and what to do next: an installer reads this once, at the site."""
    click.echo(f"site {result.site}: {len(result.devices)} devices provisioned in {result.out_dir}")
    if result.changed:
        click.echo("new or rotated: " + ", ".join(result.changed))
    else:
        click.echo("no secret changed")
    if result.removed:
        click.echo("removed (can no longer log in): " + ", ".join(result.removed))
    click.echo(f"broker config: {result.conf_path}  (mosquitto -c {result.conf_path})")
    click.echo(f"device bundles: {result.out_dir / 'devices'}/<device>/  (copy onto each device)")
    if result.bridge is not None:
        click.echo(
            f"fleet operator: append {result.bridge.fleet_password_line} to the fleet password "
            f"file and {result.bridge.fleet_acl_block} to its ACL file"
        )
    click.echo(f"keep {result.out_dir / 'state'} secret and backed up: it holds every secret")


@click.command("init")
@click.option("--site", "site_file", required=True,
              type=click.Path(path_type=Path, dir_okay=False),
              help="Site inventory TOML (see docs/examples/site-inventory.toml).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Where the broker config, device bundles and secret state go.")
@click.option("--rotate", "rotate", multiple=True, metavar="SECRET",
              help="Also replace this secret (repeatable); see `parkguard broker rotate`.")
@click.option("--broker-user", default=None, metavar="USER",
              help="User a root-started Mosquitto runs as; broker/ is handed to it "
                   "(default: as on the last run, else none).")
def init_command(site_file: Path, out_dir: Path, rotate: tuple[str, ...],
                 broker_user: str | None) -> None:
    """Generate (or bring up to date) a site's CA, broker certificate, users, ACLs,
    mosquitto.conf, bridge and device bundles from its inventory.

    Re-running keeps every existing secret: only new devices get new ones. Devices removed
    from the inventory lose their login.
    """
    inventory = load_inventory(site_file)
    if broker_user is None:
        previous = stored_run(out_dir)
        broker_user = previous.broker_user if previous is not None else None
    _report(provision_site(inventory, out_dir, rotate=rotate, broker_user=broker_user))


@click.command("rotate")
@click.option("--out", "out_dir", required=True,
              type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="A directory `parkguard broker init` provisioned.")
@click.option("--all-lane-keys", is_flag=True,
              help="Rotate every lane's HMAC key (the gateway's bundle gets them all).")
@click.argument("secrets", nargs=-1)
def rotate_command(out_dir: Path, all_lane_keys: bool, secrets: tuple[str, ...]) -> None:
    """Replace secrets of a provisioned site and re-derive what depends on them.

    \b
    SECRET is one of:
      DEVICE             its password, and for a lane its HMAC key (e.g. lane-in1)
      DEVICE/password    only the password
      LANE/hmac-key      only a lane's command-signing key (e.g. lane-in1/hmac-key)
      bridge             the site's password on the fleet broker
      broker-cert        a new broker key and certificate (devices are unaffected)
      ca                 a new site CA: every device needs its new bundle

    Then copy the changed bundles onto their devices and reload the broker
    (`kill -HUP` re-reads the password and ACL files; a new certificate needs a restart).
    """
    stored = stored_run(out_dir)
    if stored is None:
        raise click.UsageError(f"{out_dir} has not been provisioned: run `parkguard broker init`")
    targets = list(secrets)
    if all_lane_keys:
        targets += [f"lane-{lane.id}{HMAC_SUFFIX}" for lane in stored.inventory.lanes]
    if not targets:
        raise click.UsageError("name a SECRET to rotate (or --all-lane-keys)")
    result = provision_site(stored.inventory, out_dir, rotate=targets,
                            broker_user=stored.broker_user)
    _report(result)


#: Everything this module adds to ``parkguard broker``.
COMMANDS: tuple[click.Command, ...] = (init_command, rotate_command)

__all__ = ["COMMANDS", "init_command", "rotate_command", "rotate_secret"]
