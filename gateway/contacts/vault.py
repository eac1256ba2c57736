"""Phone numbers at rest: Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) under
a key derived from the site's contact secret, and a keyed digest to find a number again
(dedup, deletion on request) without decrypting every row.

Why a derived pair and not the secret itself: one secret file to keep and rotate; the
encryption key and the lookup key never equal each other, so the digest column says
nothing an attacker could use against the ciphertext column.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from parkguard.errors import ConfigError

MIN_SECRET_BYTES = 32


def load_or_create_master_key(path: Path) -> bytes:
    """The contact secret kept in ``path`` (32 random bytes, made 0600 if missing). Its
    contents are never logged or shown; an error names the file only."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(MIN_SECRET_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigError(f"{path}: the contact key must be at least {MIN_SECRET_BYTES} bytes")
    return key


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"parkguard contacts " + purpose).derive(secret)


class PhoneVault:
    """Encrypts, decrypts and indexes phone numbers under one site secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(f"the contact key must be at least {MIN_SECRET_BYTES} bytes")
        import base64

        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(secret, b"fernet")))
        self._index_key = _derive(secret, b"index")

    def __repr__(self) -> str:  # never the key
        return "PhoneVault(<secret>)"

    def seal(self, phone: str) -> str:
        return self._fernet.encrypt(phone.encode("ascii")).decode("ascii")

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("ascii")
        except InvalidToken as error:
            raise ConfigError("a stored contact does not open with this site's contact key "
                              "(was the key file replaced?)") from error

    def index(self, phone: str) -> str:
        return hmac.new(self._index_key, phone.encode("ascii"), hashlib.sha256).hexdigest()
