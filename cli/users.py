"""``parkguard users``: the dashboard's accounts in the gateway's database.

Passwords are read from a hidden prompt (typed twice) or, for scripts, from standard
input with ``--password-stdin``; they are never echoed, logged or passed on a command line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import sqlite_utils

from cli.errors import OneStyleGroup
from gateway.storage.database import open_database
from gateway.web.users import ROLES, UserError, UserStore, check_username

_config_option = click.option(
    "-c", "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
    required=True, help="Gateway TOML file: its database holds the users.")


@contextmanager
def _store(config_path: Path) -> Iterator[UserStore]:
    from gateway.config import GatewayConfig
    from parkguard.configfile import load_config

    config = load_config(GatewayConfig, config_path)
    db: sqlite_utils.Database = open_database(config.database)
    try:
        UserStore.migrate(db)
        yield UserStore(db)
    except UserError as error:
        raise click.ClickException(str(error)) from error
    finally:
        db.close()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@click.group(name="users", cls=OneStyleGroup)
def users() -> None:
    """Dashboard accounts: guard, supervisor, manager, merchant."""


@users.command(name="add")
@_config_option
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--merchant", "merchant_id", help="Merchant id (merchant users only).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def add(config_path: Path, username: str, role: str, merchant_id: str | None,
        password_stdin: bool) -> None:
    """Add USERNAME with a role and a password."""
    try:
        check_username(username)  # before the config, and before the password is typed
    except UserError as error:
        raise click.ClickException(str(error)) from error
    with _store(config_path) as store:
        store.check_new(username, role, merchant_id)  # a taken name, a missing merchant
        password = _read_password(password_stdin)
        user = store.add(username, role, password, merchant_id=merchant_id)
    click.echo(f"added {user.username} ({user.role})")


@users.command(name="list")
@_config_option
def list_users(config_path: Path) -> None:
    """List every account: name, role, merchant, enabled or disabled."""
    with _store(config_path) as store:
        for user in store.all():
            state = "disabled" if user.disabled else "enabled"
            click.echo(f"{user.username}\t{user.role}\t{user.merchant_id or '-'}\t{state}")


@users.command(name="passwd")
@_config_option
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def passwd(config_path: Path, username: str, password_stdin: bool) -> None:
    """Set USERNAME's password (its open sessions end)."""
    with _store(config_path) as store:
        if store.get(username) is None:  # before the password is typed
            raise UserError(f"no user {username!r}")
        password = _read_password(password_stdin)
        store.set_password(username, password)
    click.echo(f"password of {username} changed")


@users.command(name="disable")
@_config_option
@click.argument("username")
@click.option("--enable", is_flag=True, help="Enable the account again instead.")
def disable(config_path: Path, username: str, enable: bool) -> None:
    """Disable USERNAME (it can no longer log in; open sessions end at once)."""
    with _store(config_path) as store:
        store.set_disabled(username, not enable)
    click.echo(f"{username} {'enabled' if enable else 'disabled'}")
