"""NTAG 424 DNA Secure Unique NFC (SUN) messages: verify, decrypt, and simulate (NXP AN12196).

A checkpoint tag in SUN mode answers each read with an NDEF URL carrying

* ``picc_data``: ``AES-128-CBC(SDMMetaReadKey, IV=0)`` of one block ``PICCDataTag (0xC7) ‖
  UID (7 bytes) ‖ SDMReadCtr (3 bytes, little-endian) ‖ random padding (5 bytes)``;
* ``cmac``: SDMMAC, the AES-CMAC under the session key
  ``KSesSDMFileReadMAC = CMAC(SDMFileReadKey, SV2)``, ``SV2 = 3CC3 0001 0080 ‖ UID ‖
  SDMReadCtr`` (zero-padded to 16 bytes), over the empty input (the MAC input offset equals
  the MAC offset), truncated to its odd-indexed bytes (8 bytes, "MACt").

The tag increments SDMReadCtr on every read, so each tap's message is new: whoever copies
one can only replay it (the counter gives it away) and whoever lacks the key cannot make a
new one (the MAC gives it away). Pure functions, no I/O; the counter rule lives here too
(:func:`counter_verdict`) but the last counters are kept by the gateway.

The wire form in ``PatrolTap.sun`` is the URL's query (or the whole URL):
``picc_data=<32 hex>&cmac=<16 hex>``, exactly what :func:`simulate_tap` returns.

>>> key = bytes(16)
>>> sun = "picc_data=EF963FF7828658A599F3041510671E88&cmac=94EED9EE65337086"  # AN12196 §3
>>> reading = verify_sun(sun, key)
>>> reading.uid_hex, reading.counter
('04DE5F1EACC040', 61)
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from parkguard.errors import ParkGuardError

__all__ = [
    "PICC_DATA_TAG",
    "SunError",
    "SunReading",
    "SunRefusal",
    "counter_verdict",
    "decrypt_picc_data",
    "encrypt_picc_data",
    "parse_sun",
    "sdm_mac",
    "session_mac_key",
    "simulate_tap",
    "verify_sun",
]

#: PICCDataTag for "UID mirrored, counter mirrored, UID 7 bytes" (AN12196 §3.3).
PICC_DATA_TAG: Final = 0xC7
_SV2_PREFIX: Final = bytes.fromhex("3CC300010080")
_MAX_COUNTER: Final = 0xFFFFFF
_FIELD = re.compile(r"(?:^|[?&])(picc_data|cmac)=([0-9A-Fa-f]*)(?=&|$)")

SunRefusal = Literal["malformed", "forged", "uid_mismatch"]


class SunError(ParkGuardError, ValueError):
    """A SUN message that must not be believed; ``reason`` says why, for the report."""

    def __init__(self, reason: SunRefusal, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: SunRefusal = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SunReading:
    """What a verified SUN message proves: this tag (UID) was read for the counter-th time."""

    uid: bytes
    counter: int

    @property
    def uid_hex(self) -> str:
        return self.uid.hex().upper()


def _check_key(key: bytes) -> None:
    if len(key) != 16:
        raise ValueError(f"an NTAG 424 DNA key is 16 bytes (AES-128), got {len(key)}")


def _aes_block(key: bytes, block: bytes, *, decrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(bytes(16)))
    op = cipher.decryptor() if decrypt else cipher.encryptor()
    return op.update(block) + op.finalize()


def _cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def _check_uid_counter(uid: bytes, counter: int) -> None:
    if len(uid) != 7:
        raise ValueError(f"an NTAG 424 DNA UID is 7 bytes, got {len(uid)}")
    if not 0 <= counter <= _MAX_COUNTER:
        raise ValueError(f"SDMReadCtr is 24 bits, got {counter}")


def session_mac_key(file_key: bytes, uid: bytes, counter: int) -> bytes:
    """KSesSDMFileReadMAC: CMAC(SDMFileReadKey, SV2) (AN12196 §3.4)."""
    _check_key(file_key)
    _check_uid_counter(uid, counter)
    sv2 = _SV2_PREFIX + uid + counter.to_bytes(3, "little")
    return _cmac(file_key, sv2.ljust(16, b"\x00"))


def sdm_mac(file_key: bytes, uid: bytes, counter: int, mac_input: bytes = b"") -> bytes:
    """SDMMAC: the session CMAC over ``mac_input`` truncated to bytes 1, 3, ..., 15."""
    return _cmac(session_mac_key(file_key, uid, counter), mac_input)[1::2]


def encrypt_picc_data(meta_key: bytes, uid: bytes, counter: int,
                      padding: bytes | None = None) -> bytes:
    """The encrypted PICCData block a tag mirrors; ``padding`` (5 bytes) is random by default,
    as on a real tag."""
    _check_key(meta_key)
    _check_uid_counter(uid, counter)
    pad = os.urandom(5) if padding is None else padding
    if len(pad) != 5:
        raise ValueError(f"PICCData padding is 5 bytes, got {len(pad)}")
    plain = bytes([PICC_DATA_TAG]) + uid + counter.to_bytes(3, "little") + pad
    return _aes_block(meta_key, plain, decrypt=False)


def decrypt_picc_data(meta_key: bytes, encrypted: bytes) -> SunReading:
    """UID and SDMReadCtr from the encrypted PICCData; :class:`SunError` if it is not one."""
    _check_key(meta_key)
    if len(encrypted) != 16:
        raise SunError("malformed", f"picc_data is 16 bytes, got {len(encrypted)}")
    plain = _aes_block(meta_key, encrypted, decrypt=True)
    if plain[0] != PICC_DATA_TAG:
        # Wrong key or not PICCData at all: either way nobody holding the key made it.
        raise SunError("forged", f"PICCDataTag is {plain[0]:#04x}, not {PICC_DATA_TAG:#04x}")
    return SunReading(uid=plain[1:8], counter=int.from_bytes(plain[8:11], "little"))


def parse_sun(text: str) -> tuple[bytes, bytes]:
    """``(picc_data, cmac)`` from ``picc_data=..&cmac=..`` (a query or a whole URL)."""
    fields: dict[str, str] = {}
    for name, value in _FIELD.findall(text.strip()):
        if name in fields:
            raise SunError("malformed", f"{name} appears twice")
        fields[name] = value
    missing = [n for n in ("picc_data", "cmac") if n not in fields]
    if missing:
        raise SunError("malformed", f"missing {' and '.join(missing)} in {text[:80]!r}")
    if len(fields["picc_data"]) != 32 or len(fields["cmac"]) != 16:
        raise SunError("malformed", "picc_data must be 32 hex digits and cmac 16")
    return bytes.fromhex(fields["picc_data"]), bytes.fromhex(fields["cmac"])


def verify_sun(text: str, meta_key: bytes, file_key: bytes | None = None, *,
               uid: bytes | None = None) -> SunReading:
    """Decrypt and authenticate one SUN message; the reading, or :class:`SunError`.

    ``file_key`` defaults to ``meta_key`` (one key per tag). ``uid``: the UID the reader saw
    in anticollision; a message carrying another UID was copied from another tag.
    """
    encrypted, mac = parse_sun(text)
    reading = decrypt_picc_data(meta_key, encrypted)
    expected = sdm_mac(meta_key if file_key is None else file_key, reading.uid,
                       reading.counter)
    if not hmac.compare_digest(expected, mac):
        raise SunError("forged", "SDMMAC does not match: not made with this tag's key")
    if uid is not None and not hmac.compare_digest(uid, reading.uid):
        raise SunError("uid_mismatch", f"the message is from tag {reading.uid_hex}, "
                                       f"the reader saw {uid.hex().upper()}")
    return reading


def simulate_tap(key: bytes, uid: bytes | str, counter: int, *,
                 file_key: bytes | None = None, padding: bytes | None = None) -> str:
    """What a real tag with ``key`` and ``uid`` says on its ``counter``-th read:
    ``picc_data=<32 hex>&cmac=<16 hex>`` (upper-case), the form ``PatrolTap.sun`` carries.

    >>> simulate_tap(bytes(16), "04DE5F1EACC040", 61,
    ...              padding=bytes.fromhex("DA5CF60941"))
    'picc_data=EF963FF7828658A599F3041510671E88&cmac=94EED9EE65337086'
    """
    raw_uid = bytes.fromhex(uid) if isinstance(uid, str) else uid
    encrypted = encrypt_picc_data(key, raw_uid, counter, padding)
    mac = sdm_mac(key if file_key is None else file_key, raw_uid, counter)
    return f"picc_data={encrypted.hex().upper()}&cmac={mac.hex().upper()}"


CounterVerdict = Literal["ok", "replayed", "stale"]


def counter_verdict(counter: int, at: datetime,
                    accepted: Iterable[tuple[int, datetime]]) -> CounterVerdict:
    """May a tap with this counter at this time join the tag's accepted taps?

    The counter only increases with time: the same counter again is ``replayed``; a counter
    lower than one accepted at an earlier time (or higher than one accepted later) is
    ``stale`` — a message harvested before and replayed now. A late upload of a genuinely
    older tap fits between its neighbours and is ``ok``.
    """
    for seen, seen_at in accepted:
        if seen == counter:
            return "replayed"
        if (seen < counter and seen_at > at) or (seen > counter and seen_at < at):
            return "stale"
    return "ok"
