"""Is the uplink broker alive? One MQTT CONNECT to its loopback listener, one CONNACK back.

Why: Mosquitto 2.0.11 can spin for good after its TLS bridge meets an accept-then-close peer
(docs/fleet.md, failure model). Its process stays up, so systemd never restarts it; its
listening socket still completes the TCP handshake (the kernel does that), but the broker
never reads the CONNECT. A CONNACK therefore tells a live broker from a hung one, and any
CONNACK counts: nobody may log in to the uplink broker, so "not authorised" is its normal
answer. The watchdog unit (``hardware/parkguard-uplink-watchdog@.service``) runs
``parkguard broker probe`` and restarts the uplink broker when it fails.

The packet work is pure (:func:`connect_packet`, :func:`read_connack`); :func:`probe` is the
socket around it.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

#: MQTT 3.1.1 CONNACK return codes (spec 3.2.2.3), for the one-line report.
CONNACK_CODES = {
    0: "accepted",
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}
#: CONNACK: packet type 2, flags 0, remaining length 2.
_CONNACK_HEADER = b"\x20\x02"
_DISCONNECT = b"\xe0\x00"


class ProbeFailed(Exception):
    """The broker did not answer the CONNECT: the message is the one-line reason."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The broker answered: its CONNACK return code and how long it took."""

    code: int
    elapsed_s: float

    @property
    def meaning(self) -> str:
        return CONNACK_CODES.get(self.code, f"return code {self.code}")


def connect_packet(client_id: str = "parkguard-probe", keepalive_s: int = 10) -> bytes:
    """A bare MQTT 3.1.1 CONNECT: clean session, no user name (nobody may log in anyway),
    so the broker keeps no state for the probe."""
    ident = client_id.encode()
    if len(ident) > 23 or not 0 <= keepalive_s < 65536:
        raise ValueError("client id at most 23 bytes, keepalive 0..65535")
    body = (b"\x00\x04MQTT\x04\x02" + keepalive_s.to_bytes(2, "big")
            + len(ident).to_bytes(2, "big") + ident)
    return bytes([0x10, len(body)]) + body  # < 128 bytes: a one-byte remaining length


def read_connack(data: bytes) -> int | None:
    """The return code of the CONNACK at the start of ``data``; None while it is incomplete.
    Raises :class:`ProbeFailed` for anything that is not a CONNACK (not an MQTT broker)."""
    if len(data) < 4:
        if _CONNACK_HEADER.startswith(data[:2]):
            return None
        raise ProbeFailed(f"answered with something other than a CONNACK ({data[:4].hex()})")
    if data[:2] != _CONNACK_HEADER:
        raise ProbeFailed(f"answered with something other than a CONNACK ({data[:4].hex()})")
    return data[3]


def probe(host: str, port: int, timeout_s: float) -> Answer:
    """CONNECT to ``host:port`` and wait at most ``timeout_s`` in all for the CONNACK.
    Raises :class:`ProbeFailed` with the reason when there is none."""
    where = f"{host}:{port}"
    started = time.monotonic()
    deadline = started + timeout_s
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except ConnectionRefusedError:
        raise ProbeFailed(f"{where} refused the connection (no broker listening)") from None
    except TimeoutError:
        raise ProbeFailed(f"no TCP connection to {where} in {timeout_s:g} s") from None
    except OSError as error:
        raise ProbeFailed(f"cannot connect to {where}: {error.strerror or error}") from None
    with sock:
        data = b""
        try:
            sock.sendall(connect_packet())
            while (code := read_connack(data)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                chunk = sock.recv(4 - len(data))
                if not chunk:
                    raise ProbeFailed(f"{where} closed the connection without a CONNACK")
                data += chunk
        except TimeoutError:
            raise ProbeFailed(f"no CONNACK from {where} in {timeout_s:g} s "
                              "(connection accepted, broker not answering: hung?)") from None
        except OSError as error:
            raise ProbeFailed(f"{where} dropped the connection without a CONNACK "
                              f"({error.strerror or error})") from None
        try:
            sock.sendall(_DISCONNECT)  # a clean goodbye, so the broker logs no error
        except OSError:
            pass  # it answered: alive, whatever happens to the goodbye
    return Answer(code, time.monotonic() - started)
