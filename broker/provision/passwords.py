"""Mosquitto 2.0 password-file lines: ``user:$7$iterations$salt$hash`` (PBKDF2-HMAC-SHA512).

Written here rather than by shelling out to ``mosquitto_passwd`` so that provisioning runs on
a laptop without Mosquitto installed, and so that an unchanged password keeps its exact line
(a new salt on every run would make the generated file churn under config management).
The format matches ``mosquitto_passwd -H sha512-pbkdf2``: a 12-byte salt and the 64-byte
derived key, both standard base64, and mosquitto_passwd's 101 iterations.

>>> line = password_line("lane-in1", "s3cret", salt=bytes(12))
>>> line.split("$")[:3]
['lane-in1:', '7', '101']
>>> verify_line(line, "s3cret"), verify_line(line, "guess")
(True, False)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

#: mosquitto_passwd's default. Device passwords here are 192-bit random tokens, so stretching
#: adds nothing against guessing; what matters is that the broker hashes every CONNECT fast.
ITERATIONS = 101
SALT_BYTES = 12
_HASH_BYTES = 64
_FORMAT_ID = "7"


def new_password() -> str:
    """A random password of 32 URL-safe characters (192 bits): safe in TOML and shells."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """Return ``$7$iterations$salt$hash`` for ``password`` (a fresh salt unless given)."""
    if iterations < 1:
        raise ValueError(f"iterations must be positive, got {iterations}")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, _HASH_BYTES)
    salt_b64 = base64.b64encode(salt).decode("ascii")
    digest_b64 = base64.b64encode(digest).decode("ascii")
    return f"${_FORMAT_ID}${iterations}${salt_b64}${digest_b64}"


def check_username(username: str) -> str:
    """Mosquitto splits each line at the first ``:``; a newline would start another entry."""
    if not username or any(c in username for c in ":\r\n"):
        raise ValueError(f"user name {username!r} cannot go into a Mosquitto password file")
    return username


def password_line(username: str, password: str, *, salt: bytes | None = None) -> str:
    """One line of a Mosquitto password file, without the trailing newline."""
    return f"{check_username(username)}:{hash_password(password, salt=salt)}"


def verify_hash(encoded: str, password: str) -> bool:
    """True if ``encoded`` (``$7$...``) is the hash of ``password``; False for anything else."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != _FORMAT_ID:
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except (ValueError, binascii.Error):
        return False
    if iterations < 1:
        return False
    digest = hashlib.pbkdf2_hmac(
        "sha512", password.encode("utf-8"), salt, iterations, len(expected)
    )
    return hmac.compare_digest(digest, expected)


def verify_line(line: str, password: str) -> bool:
    """True if a password-file line holds ``password`` for its user."""
    _user, sep, encoded = line.strip().partition(":")
    return bool(sep) and verify_hash(encoded, password)


def parse_password_file(text: str) -> dict[str, str]:
    """Map user name to its ``$7$`` hash; blank lines and ``#`` comments are skipped."""
    entries: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, encoded = line.partition(":")
        if sep:
            entries[user] = encoded
    return entries
