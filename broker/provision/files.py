"""Write generated files atomically with the right mode from the first byte.

A secret must never exist on disk, even for a moment, with a looser mode than 0600 (another
user could open it in that window and keep the descriptor), and a half-written
``mosquitto.conf`` or password file must never be what a restarting broker reads. So every
file is written to a temporary sibling created with its final mode, flushed, and renamed
over the target.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

#: Private keys, passwords, HMAC keys, device bundles, anything with a secret in it.
SECRET_MODE = 0o600
#: Certificates and other files anyone on the host may read.
PUBLIC_MODE = 0o644
#: Directories holding secrets.
PRIVATE_DIR_MODE = 0o700


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make the leaf 0700 even if it already existed."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(PRIVATE_DIR_MODE)
    return path


def write_file(path: Path, data: str | bytes, *, mode: int) -> bool:
    """Atomically replace ``path`` with ``data`` at ``mode``; return False if nothing changed.

    Unchanged content is left alone (only its mode is corrected), so re-running the
    generator does not touch timestamps that config management or a broker reload watch.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if path.is_file():
        try:
            same = path.read_bytes() == payload
        except OSError:
            same = False
        if same:
            path.chmod(mode)
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)  # the umask may have narrowed it; never widened past `mode`
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    return True


def write_secret(path: Path, data: str | bytes) -> bool:
    """Write a file only its owner may read (0600)."""
    return write_file(path, data, mode=SECRET_MODE)


def write_public(path: Path, data: str | bytes) -> bool:
    """Write a file anyone may read (0644): certificates, README text."""
    return write_file(path, data, mode=PUBLIC_MODE)
