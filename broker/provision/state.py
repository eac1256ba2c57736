"""The secrets a site was provisioned with, kept between runs so ``init`` is idempotent.

Every generated file (password file, bundles, broker config) is derived from the inventory
plus this state. Re-running ``init`` re-derives them and changes nothing; only ``rotate``
replaces a secret. The state lives in ``{out}/state/`` (0700): ``secrets.json`` (0600:
passwords, their hashes, lane HMAC keys), ``ca.key`` (0600: the site CA's key, which
never needs to leave this directory) and ``inventory.json`` (what was provisioned last, so
``rotate`` needs no inventory file).

Hashes are kept with the passwords because a fresh salt on every run would rewrite the
password file each time, and a file that always changes hides the change that matters.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.provision.errors import ProvisionError
from broker.provision.files import make_private_dir, write_secret
from broker.provision.passwords import hash_password, new_password, verify_hash

FORMAT = 1
SECRETS_FILE = "secrets.json"
#: HMAC-SHA256 keys as long as the hash: 32 bytes.
HMAC_KEY_BYTES = 32


@dataclass
class SecretStore:
    """Passwords and HMAC keys by device id; loaded, updated in memory, saved once."""

    site: str
    passwords: dict[str, str] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    hmac_keys: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, state_dir: Path, *, site: str) -> SecretStore:
        """Read ``secrets.json``, or start empty for a new site; refuse another site's state."""
        path = state_dir / SECRETS_FILE
        if not path.exists():
            return cls(site=site)
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ProvisionError(f"{path}: cannot read provisioning state: {error}") from error
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ProvisionError(f"{path}: not a ParkGuard provisioning state (format {FORMAT})")
        if data.get("site") != site:
            raise ProvisionError(
                f"{path}: this directory was provisioned for site {data.get('site')!r}, "
                f"not {site!r}; use another --out directory"
            )
        try:
            return cls(
                site=site,
                passwords=_str_map(data["passwords"]),
                hashes=_str_map(data["hashes"]),
                hmac_keys=_str_map(data["hmac_keys"]),
            )
        except (KeyError, TypeError) as error:
            raise ProvisionError(f"{path}: damaged provisioning state ({error})") from error

    def save(self, state_dir: Path) -> None:
        make_private_dir(state_dir)
        data = {
            "format": FORMAT,
            "site": self.site,
            "passwords": dict(sorted(self.passwords.items())),
            "hashes": dict(sorted(self.hashes.items())),
            "hmac_keys": dict(sorted(self.hmac_keys.items())),
        }
        write_secret(state_dir / SECRETS_FILE, json.dumps(data, indent=2) + "\n")

    def password(self, user: str, *, rotate: bool = False) -> str:
        """The user's password, generated on first use or when rotated."""
        if rotate or user not in self.passwords:
            self.passwords[user] = new_password()
        return self.passwords[user]

    def password_hash(self, user: str) -> str:
        """A ``$7$`` hash of the current password, reusing the stored one if it still matches."""
        password = self.passwords[user]
        stored = self.hashes.get(user)
        if stored is None or not verify_hash(stored, password):
            stored = hash_password(password)
            self.hashes[user] = stored
        return stored

    def hmac_key(self, device: str, *, rotate: bool = False) -> bytes:
        """A lane's command-signing key, generated on first use or when rotated."""
        if rotate or device not in self.hmac_keys:
            self.hmac_keys[device] = secrets.token_hex(HMAC_KEY_BYTES)
        return bytes.fromhex(self.hmac_keys[device])

    def forget_all_but(self, users: set[str], lanes: set[str]) -> list[str]:
        """Drop secrets of devices no longer in the inventory; return who was dropped.

        A removed lane must stop being able to log in: its password leaves the password
        file with it.
        """
        gone = sorted((set(self.passwords) | set(self.hmac_keys)) - users)
        for user in set(self.passwords) - users:
            del self.passwords[user]
        for user in set(self.hashes) - users:
            del self.hashes[user]
        for lane in set(self.hmac_keys) - lanes:
            del self.hmac_keys[lane]
        return gone


def _str_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError("expected a table of strings")
    return dict(value)
