"""Provision a site: from an inventory to a locked-down broker and one bundle per device.

``provision_site`` is idempotent: run it again with the same inventory and every file comes
out byte for byte the same; add a lane and only that lane's user, ACL block and bundle
appear (plus the gateway's bundle, which carries every lane's key). Secrets change only
when named in ``rotate``.

Output layout (``out_dir``)::

    state/            0700  secrets.json, ca.key, inventory.json: keep, back up, never ship
    broker/                 what the site broker needs (it never bridges)
      mosquitto.conf  0600
      ca.crt server.crt     site CA and broker certificate
      server.key      0600
      passwd          0600  Mosquitto $7$ hashes, one line per device (and the uplink)
      acl             0600
      data/           0700  persistence
    uplink/                 the uplink broker, only with a [fleet] section (uplink.py)
      mosquitto.conf  0600  both bridges: the site broker on loopback, the fleet over TLS
      fleet-ca.crt          the fleet broker's CA
      data/           0700  persistence (what waits for the fleet)
    devices/{id}/     0700  device.toml (0600) and ca.crt: copy onto the device
    fleet/                  bridge-{site}.passwd and .acl: for the fleet operator to append

>>> from broker.provision.inventory import SiteInventory
>>> import tempfile
>>> inv = SiteInventory.model_validate({"site": "s1", "broker": {"address": "gw.lan"},
...                                     "lanes": [{"id": "in1", "direction": "entry"}]})
>>> with tempfile.TemporaryDirectory() as tmp:
...     result = provision_site(inv, Path(tmp))
...     result.device("lane-in1").username, result.lane("in1").client_id
('lane-in1', 'lane-in1')
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from broker.provision.acl import UPLINK_USER, render_acl
from broker.provision.bridge import BridgeConf, render_fleet_acl_block
from broker.provision.bundle import (
    BUNDLE_FILE,
    CA_FILE,
    BundleBroker,
    DeviceBundle,
    write_bundle,
)
from broker.provision.conf import BrokerConf, render_mosquitto_conf
from broker.provision.errors import ProvisionError, UnknownSecretError
from broker.provision.files import make_private_dir, write_public, write_secret
from broker.provision.inventory import DeviceKind, DeviceSpec, FleetSpec, SiteInventory
from broker.provision.pki import KeyAndCert, issue_server_cert, load, new_ca, renewal_reason
from broker.provision.state import SecretStore
from broker.provision.uplink import UplinkConf, render_uplink_conf
from parkguard.errors import ConfigError

STATE_DIR = "state"
BROKER_DIR = "broker"
UPLINK_DIR = "uplink"
WATCHDOG_ENV = "watchdog.env"
DEVICES_DIR = "devices"
FLEET_DIR = "fleet"
INVENTORY_FILE = "inventory.json"

#: Rotation targets that are not devices.
CA_TARGET = "ca"
BROKER_CERT_TARGET = "broker-cert"
BRIDGE_TARGET = "bridge"
UPLINK_TARGET = UPLINK_USER
PASSWORD_SUFFIX = "/password"  # noqa: S105 - a rotation target name, not a password
HMAC_SUFFIX = "/hmac-key"


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    """One device's identity on the bus and where its bundle is."""

    device_id: str
    kind: DeviceKind
    node: str | None
    username: str
    password: str
    client_id: str
    bundle_dir: Path
    config_path: Path
    """The device's ``device.toml``."""
    ca_path: Path
    """The site CA certificate to verify the broker with (a copy in the bundle)."""
    hmac_key: bytes | None = None
    """A lane's command-signing key."""
    lane_keys: Mapping[str, bytes] = field(default_factory=dict)
    """The gateway's copy of every lane's key, by lane id."""
    sensors: Mapping[str, Literal["fire_panel", "flood"]] = field(default_factory=dict)
    """The gateway's copy of every sensor node's kind, by node id (the inventory's)."""


@dataclass(frozen=True, slots=True)
class BridgeCredentials:
    """The site's login on the fleet broker and the files the fleet operator must append."""

    username: str
    password: str
    fleet_password_line: Path
    fleet_acl_block: Path


@dataclass(frozen=True, slots=True)
class UplinkFiles:
    """The uplink broker (with ``[fleet]``): its directory, config and config as values."""

    directory: Path
    conf_path: Path
    conf: UplinkConf
    """Re-render with another port, site port or data directory for tests."""
    data_dir: Path

    def render_conf(self, **overrides: Any) -> str:
        """The uplink config with some values replaced (``port=``, ``site_port=``, ...)."""
        return render_uplink_conf(replace(self.conf, **overrides))

    def with_fleet(self, **overrides: Any) -> UplinkFiles:
        """The same uplink with its fleet bridge changed (e.g. faster reconnects in tests)."""
        return replace(self, conf=replace(self.conf, fleet=replace(self.conf.fleet,
                                                                    **overrides)))


@dataclass(frozen=True, slots=True)
class ProvisionResult:
    """What ``provision_site`` wrote and the credentials in it, for tests and the runner."""

    site: str
    out_dir: Path
    broker_dir: Path
    conf_path: Path
    conf: BrokerConf
    """The config as values: re-render it with another port or data directory for tests."""
    ca_path: Path
    server_cert_path: Path
    server_key_path: Path
    password_file: Path
    acl_file: Path
    data_dir: Path
    host: str
    """The address devices dial (the inventory's ``broker.address``)."""
    port: int
    devices: Mapping[str, DeviceCredentials]
    bridge: BridgeCredentials | None
    uplink: UplinkFiles | None
    """The uplink broker that carries the bridge; ``None`` without ``[fleet]``."""
    changed: tuple[str, ...]
    """Secrets created or rotated by this run (``lane-in1/password``, ``ca``, ...)."""
    removed: tuple[str, ...]
    """Devices whose secrets and bundles were removed because the inventory dropped them."""

    def device(self, device_id: str) -> DeviceCredentials:
        try:
            return self.devices[device_id]
        except KeyError:
            raise UnknownSecretError(
                f"site {self.site} has no device {device_id!r}; it has "
                f"{', '.join(self.devices)}"
            ) from None

    def lane(self, lane_id: str) -> DeviceCredentials:
        return self.device(f"lane-{lane_id}")

    @property
    def gateway(self) -> DeviceCredentials:
        return self.device("gateway")

    def render_conf(self, **overrides: Any) -> str:
        """The broker config with some values replaced, e.g. ``port=`` and ``bind_address=``
        for a test broker on a free loopback port, ``run_as_user="root"`` when root."""
        return render_mosquitto_conf(replace(self.conf, **overrides))


def rotation_targets(inventory: SiteInventory) -> list[str]:
    """Every name ``rotate`` accepts for this site."""
    targets = [CA_TARGET, BROKER_CERT_TARGET]
    if inventory.fleet is not None:
        targets += [BRIDGE_TARGET, UPLINK_TARGET]
    for device in inventory.devices():
        targets += [device.device_id, device.device_id + PASSWORD_SUFFIX]
        if device.kind == "lane":
            targets.append(device.device_id + HMAC_SUFFIX)
    return targets


@dataclass(frozen=True, slots=True)
class _Rotation:
    passwords: frozenset[str]
    hmac_keys: frozenset[str]
    ca: bool
    broker_cert: bool


def _parse_rotation(inventory: SiteInventory, rotate: Iterable[str]) -> _Rotation:
    """Check every name before anything is written: a typo must not half-rotate a site."""
    valid = rotation_targets(inventory)
    passwords: set[str] = set()
    keys: set[str] = set()
    ca = broker_cert = False
    lanes = {d.device_id for d in inventory.devices() if d.kind == "lane"}
    for target in rotate:
        if target not in valid:
            raise UnknownSecretError(
                f"nothing called {target!r} to rotate at site {inventory.site}; "
                f"choose from: {', '.join(valid)}"
            )
        if target == CA_TARGET:
            ca = True
        elif target == BROKER_CERT_TARGET:
            broker_cert = True
        elif target == BRIDGE_TARGET:
            passwords.add(inventory.bridge_username())
        elif target == UPLINK_TARGET:
            passwords.add(UPLINK_USER)
        elif target.endswith(PASSWORD_SUFFIX):
            passwords.add(target.removesuffix(PASSWORD_SUFFIX))
        elif target.endswith(HMAC_SUFFIX):
            keys.add(target.removesuffix(HMAC_SUFFIX))
        else:
            passwords.add(target)
            if target in lanes:
                keys.add(target)
    return _Rotation(frozenset(passwords), frozenset(keys), ca, broker_cert)


def _client_id(device: DeviceSpec) -> str:
    """The broker sets the client id to the user name (use_username_as_clientid)."""
    return device.device_id


def _save_inventory(state_dir: Path, inventory: SiteInventory, broker_user: str | None) -> None:
    data = {"inventory": inventory.model_dump(mode="json"), "broker_user": broker_user}
    write_secret(state_dir / INVENTORY_FILE, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@dataclass(frozen=True, slots=True)
class StoredRun:
    """What ``out_dir`` was last provisioned from: enough to re-run without the inventory."""

    inventory: SiteInventory
    broker_user: str | None


def stored_run(out_dir: Path) -> StoredRun | None:
    """The inventory and options of the last run in ``out_dir``, or ``None`` if there was none."""
    path = Path(out_dir) / STATE_DIR / INVENTORY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ProvisionError(f"{path}: cannot read the stored inventory: {error}") from error
    try:
        inventory = SiteInventory.model_validate(data["inventory"])
        user = data["broker_user"]
    except (KeyError, TypeError, ValueError) as error:
        raise ProvisionError(f"{path}: damaged stored inventory: {error}") from error
    return StoredRun(inventory, user if isinstance(user, str) else None)


def _require_stored(out_dir: Path) -> StoredRun:
    stored = stored_run(out_dir)
    if stored is None:
        raise ProvisionError(f"{out_dir} has not been provisioned: run `parkguard broker init`")
    return stored


def _pki(
    inventory: SiteInventory,
    state_dir: Path,
    broker_dir: Path,
    rotation: _Rotation,
    *,
    now: datetime,
    changed: list[str],
) -> None:
    """Load or create the site CA and the broker certificate; re-issue only when needed."""
    ca_key, ca_cert = state_dir / "ca.key", broker_dir / "ca.crt"
    if rotation.ca or not ca_key.exists():
        ca = new_ca(inventory.site, now=now)
        ca.write(key_path=ca_key, cert_path=ca_cert)
        changed.append(CA_TARGET)
    else:
        ca = load(ca_key, ca_cert)
        write_public(ca_cert, ca.cert_pem())  # restore a deleted copy
    names = inventory.broker.certificate_names()
    key_path, cert_path = broker_dir / "server.key", broker_dir / "server.crt"
    server: KeyAndCert | None = None
    if not rotation.broker_cert and key_path.exists() and cert_path.exists():
        server = load(key_path, cert_path)
        if renewal_reason(server, ca, names, now=now) is not None:
            server = None
    if server is None:
        issue_server_cert(ca, names, now=now).write(key_path=key_path, cert_path=cert_path)
        changed.append(BROKER_CERT_TARGET)


def _fleet_ca(fleet: FleetSpec, uplink_dir: Path) -> Path:
    """Copy the fleet CA next to the uplink's config; keep the copy if the source moved."""
    copy = uplink_dir / "fleet-ca.crt"
    source = fleet.ca_file
    if source.is_file():
        write_public(copy, source.read_bytes())
    elif not copy.is_file():
        raise ConfigError(f"fleet.ca_file: {source} does not exist")
    return copy


def _remove_stale_bundles(devices_dir: Path, keep: set[str]) -> list[str]:
    """Delete bundles of devices no longer in the inventory (only directories we made)."""
    removed: list[str] = []
    if not devices_dir.is_dir():
        return removed
    for child in sorted(devices_dir.iterdir()):
        if child.name not in keep and (child / BUNDLE_FILE).is_file():
            shutil.rmtree(child)
            removed.append(child.name)
    return removed


def _hand_over(broker_dir: Path, user: str) -> None:
    """Give the broker's files to the user Mosquitto runs as, so it can read them.

    Mosquitto started as root switches user *before* it opens the password and ACL files,
    so root-owned 0600 files would stop it starting ("Unable to open pwfile").
    """
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ProvisionError(f"broker user {user!r} does not exist on this host") from None
    if entry.pw_uid == os.geteuid():
        return
    if os.geteuid() != 0:
        raise ProvisionError(
            f"only root can give the broker's files to {user!r}; run init as root or as {user}"
        )
    for path in [broker_dir, *broker_dir.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


@contextlib.contextmanager
def _exclusive(state_dir: Path) -> Iterator[None]:
    """One provisioning run per directory at a time: two runs interleaving could each
    generate a new secret for the same new device and leave files that disagree."""
    with (state_dir / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def provision_site(
    inventory: SiteInventory,
    out_dir: Path,
    *,
    rotate: Iterable[str] = (),
    broker_user: str | None = None,
    now: datetime | None = None,
) -> ProvisionResult:
    """Generate (or bring up to date) everything a site's bus needs in ``out_dir``.

    ``rotate`` names secrets to replace: a device id (its password, and a lane's HMAC key),
    ``{device}/password``, ``{lane-device}/hmac-key``, ``bridge``, ``broker-cert`` or
    ``ca`` (a new CA re-issues the broker certificate; every device then needs its new
    bundle). Everything else is kept.

    ``broker_user`` is the user a root-started Mosquitto runs as (its ``user`` directive);
    the ``broker/`` directory is handed to it. Leave it ``None`` when the broker is
    started as an ordinary user that owns ``out_dir``.
    """
    out_dir = Path(out_dir).resolve()
    state_dir = make_private_dir(out_dir / STATE_DIR)
    with _exclusive(state_dir):
        return _provision(inventory, out_dir, rotate=rotate, broker_user=broker_user,
                          now=now or datetime.now(UTC))


def _provision(
    inventory: SiteInventory,
    out_dir: Path,
    *,
    rotate: Iterable[str],
    broker_user: str | None,
    now: datetime,
) -> ProvisionResult:
    if inventory.fleet is not None and not inventory.fleet.ca_file.is_absolute():
        # Stored for later runs (rotate), which may start from another directory.
        fleet = inventory.fleet.model_copy(update={"ca_file": inventory.fleet.ca_file.resolve()})
        inventory = inventory.model_copy(update={"fleet": fleet})
    rotation = _parse_rotation(inventory, rotate)
    state_dir = out_dir / STATE_DIR
    broker_dir = out_dir / BROKER_DIR
    broker_dir.mkdir(parents=True, exist_ok=True)
    data_dir = make_private_dir(broker_dir / "data")
    devices_dir = out_dir / DEVICES_DIR
    changed: list[str] = []

    # Secrets first, saved before anything derived from them is written: a run cut short
    # leaves state that the next run completes, never files that disagree with the state.
    store = SecretStore.load(state_dir, site=inventory.site)
    devices = list(inventory.devices())
    lane_devices = {d.device_id for d in devices if d.kind == "lane"}
    users = {d.device_id for d in devices}
    bridge_user = inventory.bridge_username() if inventory.fleet is not None else None
    if bridge_user is not None:
        users |= {bridge_user, UPLINK_USER}
    for user in sorted(users):
        is_new = user not in store.passwords
        store.password(user, rotate=user in rotation.passwords)
        if is_new or user in rotation.passwords:
            changed.append(user + PASSWORD_SUFFIX)
    for lane in sorted(lane_devices):
        is_new = lane not in store.hmac_keys
        store.hmac_key(lane, rotate=lane in rotation.hmac_keys)
        if is_new or lane in rotation.hmac_keys:
            changed.append(lane + HMAC_SUFFIX)
    removed = store.forget_all_but(users, lane_devices)
    store.save(state_dir)
    _save_inventory(state_dir, inventory, broker_user)

    _pki(inventory, state_dir, broker_dir, rotation, now=now, changed=changed)
    ca_pem = (broker_dir / "ca.crt").read_bytes()
    (broker_dir / "fleet-ca.crt").unlink(missing_ok=True)  # where the old layout kept it

    # The broker's files.
    password_file = broker_dir / "passwd"
    site_users = [d.device_id for d in devices]
    if bridge_user is not None:
        site_users.append(UPLINK_USER)
    lines = [password_line_for(store, user) for user in site_users]
    write_secret(password_file, "\n".join(lines) + "\n")
    store.save(state_dir)  # hashes made for new or rotated passwords
    acl_file = broker_dir / "acl"
    write_secret(acl_file, render_acl(inventory))
    conf = BrokerConf(
        port=inventory.broker.port,
        cafile=broker_dir / "ca.crt",
        certfile=broker_dir / "server.crt",
        keyfile=broker_dir / "server.key",
        password_file=password_file,
        acl_file=acl_file,
        persistence_dir=data_dir,
        local_port=inventory.site_local_port(),
        max_packet_size=inventory.broker.max_packet_size,
        max_queued_messages=inventory.broker.max_queued_messages,
        run_as_user=broker_user,
    )
    conf_path = broker_dir / "mosquitto.conf"
    write_secret(conf_path, render_mosquitto_conf(conf))
    uplink = _uplink(inventory, out_dir / UPLINK_DIR, conf, store, broker_user)

    # One bundle per device.
    lane_keys = {
        d.node: bytes.fromhex(store.hmac_keys[d.device_id])
        for d in devices
        if d.kind == "lane" and d.node is not None
    }
    sensor_kinds = {s.id: s.kind for s in inventory.sensors}
    credentials: dict[str, DeviceCredentials] = {}
    for device in devices:
        directory = devices_dir / device.device_id
        key = lane_keys.get(device.node or "") if device.kind == "lane" else None
        keys = lane_keys if device.kind == "gateway" else {}
        kinds = sensor_kinds if device.kind == "gateway" else {}
        bundle = DeviceBundle(
            site=inventory.site,
            device=device.device_id,
            kind=device.kind,
            node=device.node,
            broker=BundleBroker(
                host=inventory.broker.address,
                port=inventory.broker.port,
                client_id=_client_id(device),
                username=device.device_id,
                password=SecretStr(store.passwords[device.device_id]),
                max_packet_size=inventory.broker.max_packet_size,
            ),
            hmac_key=None if key is None else SecretStr(key.hex()),
            lane_keys={lane: SecretStr(k.hex()) for lane, k in keys.items()},
            sensors=kinds,
        )
        config_path = write_bundle(directory, bundle, ca_pem=ca_pem)
        credentials[device.device_id] = DeviceCredentials(
            device_id=device.device_id,
            kind=device.kind,
            node=device.node,
            username=device.device_id,
            password=store.passwords[device.device_id],
            client_id=_client_id(device),
            bundle_dir=directory,
            config_path=config_path,
            ca_path=directory / CA_FILE,
            hmac_key=key,
            lane_keys=dict(keys),
            sensors=dict(kinds),
        )
    removed_bundles = _remove_stale_bundles(devices_dir, {d.device_id for d in devices})
    if broker_user is not None:
        _hand_over(broker_dir, broker_user)
        if uplink is not None:
            _hand_over(uplink.directory, broker_user)

    bridge = None
    fleet_dir = out_dir / FLEET_DIR
    if bridge_user is None and fleet_dir.is_dir():
        for stale in fleet_dir.glob(f"bridge-{inventory.site}.*"):
            stale.unlink()  # the [fleet] section is gone: nothing to hand the operator
    if bridge_user is not None:
        passwd_path = fleet_dir / f"{bridge_user}.passwd"
        acl_path = fleet_dir / f"{bridge_user}.acl"
        write_secret(passwd_path, password_line_for(store, bridge_user) + "\n")
        write_public(acl_path, render_fleet_acl_block(inventory.site, bridge_user))
        bridge = BridgeCredentials(
            username=bridge_user,
            password=store.passwords[bridge_user],
            fleet_password_line=passwd_path,
            fleet_acl_block=acl_path,
        )
        store.save(state_dir)

    return ProvisionResult(
        site=inventory.site,
        out_dir=out_dir,
        broker_dir=broker_dir,
        conf_path=conf_path,
        conf=conf,
        ca_path=broker_dir / "ca.crt",
        server_cert_path=broker_dir / "server.crt",
        server_key_path=broker_dir / "server.key",
        password_file=password_file,
        acl_file=acl_file,
        data_dir=data_dir,
        host=inventory.broker.address,
        port=inventory.broker.port,
        devices=credentials,
        bridge=bridge,
        uplink=uplink,
        changed=tuple(changed),
        removed=tuple(sorted(set(removed) | set(removed_bundles))),
    )


def _uplink(inventory: SiteInventory, uplink_dir: Path, site: BrokerConf, store: SecretStore,
            broker_user: str | None) -> UplinkFiles | None:
    """Write the uplink broker's directory, or remove it when the site has no fleet (its
    config holds the bridge password: it must not outlive the ``[fleet]`` section)."""
    if inventory.fleet is None:
        if (uplink_dir / "mosquitto.conf").is_file():
            shutil.rmtree(uplink_dir)
        return None
    if site.local_port is None:  # pragma: no cover - site_local_port() is set with a fleet
        raise ProvisionError("the site broker has no loopback listener for the uplink")
    uplink_dir.mkdir(parents=True, exist_ok=True)
    uplink_dir.chmod(0o700)
    bridge_user = inventory.bridge_username()
    fleet = BridgeConf(
        site=inventory.site,
        address=inventory.fleet.address,
        port=inventory.fleet.port,
        cafile=_fleet_ca(inventory.fleet, uplink_dir),
        username=bridge_user,
        password=store.passwords[bridge_user],
        fleet_kind=inventory.fleet.kind,
        other_nodes=inventory.fleet.other_nodes,
    )
    data_dir = make_private_dir(uplink_dir / "data")
    conf = UplinkConf(
        site=inventory.site,
        port=inventory.fleet.uplink_port,
        site_port=site.local_port,
        password=store.passwords[UPLINK_USER],
        persistence_dir=data_dir,
        fleet=fleet,
        max_queued_messages=site.max_queued_messages,
        max_inflight_messages=site.max_inflight_messages,
        autosave_interval_s=site.autosave_interval_s,
        run_as_user=broker_user,
    )
    conf_path = uplink_dir / "mosquitto.conf"
    write_secret(conf_path, render_uplink_conf(conf))
    # The watchdog unit probes this port (hardware/parkguard-uplink-watchdog@.service).
    (uplink_dir / WATCHDOG_ENV).write_text(
        f"# Generated by `parkguard broker init`: the port the uplink watchdog probes.\n"
        f"UPLINK_PORT={conf.port}\n")
    return UplinkFiles(uplink_dir, conf_path, conf, data_dir)


def password_line_for(store: SecretStore, user: str) -> str:
    """The password-file line of ``user``, reusing its stored hash while the password holds."""
    return f"{user}:{store.password_hash(user)}"


def rotate_secret(
    out_dir: Path, target: str, *, now: datetime | None = None
) -> ProvisionResult:
    """Replace one secret of an already provisioned site and re-derive what depends on it.

    Uses the inventory (and broker user) stored at the last ``init``, so nobody needs the
    original file at hand. See :func:`provision_site` for the names ``target`` may take.
    """
    stored = _require_stored(out_dir)
    return provision_site(
        stored.inventory, out_dir, rotate=(target,), broker_user=stored.broker_user, now=now
    )


def load_site(out_dir: Path, *, now: datetime | None = None) -> ProvisionResult:
    """The result of the last provisioning of ``out_dir``, re-derived without rotating."""
    stored = _require_stored(out_dir)
    return provision_site(stored.inventory, out_dir, broker_user=stored.broker_user, now=now)


__all__ = [
    "BridgeCredentials",
    "DeviceCredentials",
    "ProvisionResult",
    "StoredRun",
    "UplinkFiles",
    "load_site",
    "provision_site",
    "rotate_secret",
    "rotation_targets",
    "stored_run",
]
