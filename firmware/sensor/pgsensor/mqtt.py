# A small MQTT 3.1.1 client for MicroPython (and importable by CPython for its packet tests).
#
# Packet builders and the parser are plain functions over bytes; MQTTClient adds one socket
# (plain or TLS), non-blocking reads through select.poll, keep-alive and QoS 1 acknowledgement
# tracking. Retries, the outbox and reconnect back-off live in pgsensor.link: this module
# sends what it is told and reports what arrives.
import select
import socket

# MicroPython has no `typing` module: mypy treats any name TYPE_CHECKING as true, the runtime
# sees False, and the annotations that use these names are strings (never evaluated).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from _mpy_shed.time_mp import _TicksMs

try:
    import time

    _ticks_ms = time.ticks_ms
    _ticks_diff = time.ticks_diff
except AttributeError:  # CPython: only the packet functions are used there
    # The stubs describe MicroPython's time; this branch runs only under CPython, whose packet
    # tests never call the clock.
    _ticks_ms = None  # type: ignore[assignment]  # CPython-only branch
    _ticks_diff = None  # type: ignore[assignment]  # CPython-only branch

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82  # fixed header flags 0b0010 are mandatory
SUBACK = 0x90
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class MQTTError(Exception):
    pass


def _b(value):
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def encode_remaining_length(length):
    if length < 0 or length > 268435455:
        raise MQTTError("remaining length out of range: %d" % length)
    out = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_remaining_length(buf, offset=1):
    """(length, header_size) from a buffer that starts with a fixed header, or None if the
    buffer does not hold the whole length field yet."""
    multiplier = 1
    value = 0
    pos = offset
    while True:
        if pos >= len(buf):
            return None
        byte = buf[pos]
        value += (byte & 0x7F) * multiplier
        pos += 1
        if not byte & 0x80:
            return value, pos
        multiplier *= 128
        if multiplier > 128 * 128 * 128:
            raise MQTTError("malformed remaining length")


def _str(value):
    data = _b(value)
    if len(data) > 65535:
        raise MQTTError("string too long for MQTT")
    return bytes((len(data) >> 8, len(data) & 0xFF)) + data


def _u16(value):
    return bytes((value >> 8 & 0xFF, value & 0xFF))


def _packet(first, body):
    return bytes((first,)) + encode_remaining_length(len(body)) + body


def connect_packet(client_id, keepalive=30, user=None, password=None, clean=False,
                   will_topic=None, will_payload=b"", will_qos=1, will_retain=True):
    flags = 0
    if clean:
        flags |= 0x02
    payload = _str(client_id)
    if will_topic is not None:
        flags |= 0x04 | (will_qos & 3) << 3
        if will_retain:
            flags |= 0x20
        payload += _str(will_topic) + _str(will_payload)
    if user is not None:
        flags |= 0x80
        payload += _str(user)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    body = _str("MQTT") + bytes((4, flags)) + _u16(keepalive) + payload
    return _packet(CONNECT, body)


def publish_packet(topic, payload, qos=0, retain=False, pid=0, dup=False):
    first = PUBLISH | (qos & 3) << 1
    if retain:
        first |= 0x01
    if dup:
        first |= 0x08
    body = _str(topic)
    if qos:
        if not 0 < pid < 65536:
            raise MQTTError("QoS %d needs a packet id 1..65535" % qos)
        body += _u16(pid)
    return _packet(first, body + _b(payload))


def puback_packet(pid):
    return bytes((PUBACK, 2)) + _u16(pid)


def subscribe_packet(pid, filters):
    body = _u16(pid)
    for topic, qos in filters:
        body += _str(topic) + bytes((qos,))
    return _packet(SUBSCRIBE, body)


def pingreq_packet():
    return bytes((PINGREQ, 0))


def disconnect_packet():
    return bytes((DISCONNECT, 0))


def split_packet(buf):
    """(packet_type_byte, body, used) for the first whole packet in ``buf``, or None."""
    if not buf:
        return None
    got = decode_remaining_length(buf, 1)
    if got is None:
        return None
    length, start = got
    if len(buf) < start + length:
        return None
    return buf[0], bytes(buf[start:start + length]), start + length


def parse_publish(first, body):
    """(topic, payload, qos, retain, dup, pid) of a PUBLISH packet body."""
    qos = first >> 1 & 3
    tlen = body[0] << 8 | body[1]
    topic = bytes(body[2:2 + tlen]).decode("utf-8")
    pos = 2 + tlen
    pid = 0
    if qos:
        pid = body[pos] << 8 | body[pos + 1]
        pos += 2
    return topic, bytes(body[pos:]), qos, bool(first & 1), bool(first & 8), pid


def der_from_pem(pem):
    """The first certificate of a PEM file as DER (MicroPython's mbedTLS wants DER)."""
    import binascii

    text = pem.decode() if isinstance(pem, bytes) else pem
    lines = []
    inside = False
    for line in text.split("\n"):
        line = line.strip()
        if line.startswith("-----BEGIN"):
            inside = True
        elif line.startswith("-----END"):
            break
        elif inside and line:
            lines.append(line)
    return binascii.a2b_base64("".join(lines))


class MQTTClient:
    """One MQTT 3.1.1 session over one socket. Not thread-safe; call ``poll`` often.

    Callbacks: ``on_message(topic, payload, retain)`` and ``on_puback(pid)``.
    """

    def __init__(self, client_id, host, port, user=None, password=None, keepalive=30,
                 tls=False, cadata=None, server_hostname=None, timeout_s=5):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.tls = tls
        self.cadata = cadata
        self.server_hostname = server_hostname or host
        self.timeout_s = timeout_s
        self.sock = None
        self._poller = None
        self._buf = bytearray()
        self._last_tx: "_TicksMs | int" = 0
        self._last_rx: "_TicksMs | int" = 0
        self._ping_out = False
        self.on_message = None
        self.on_puback = None
        self.on_suback = None

    # -- connection ------------------------------------------------------------------------

    def connect(self, clean=False, will_topic=None, will_payload=b"", will_qos=1,
                will_retain=True):
        """Open the socket, shake hands (TLS if asked), CONNECT; return session_present."""
        self.close()
        addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0]
        raw = socket.socket(addr[0], socket.SOCK_STREAM, addr[2])
        try:
            raw.settimeout(self.timeout_s)
            raw.connect(addr[-1])
            try:
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (AttributeError, OSError):
                pass  # not every port has it; Mosquitto sets it on its side
            sock = raw
            if self.tls:
                import ssl

                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                # The stub's SSLContext lacks verify_mode; MicroPython's ssl documents and
                # implements it (mbedTLS verification of the broker's certificate).
                ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]
                ctx.load_verify_locations(cadata=self.cadata)
                sock = ctx.wrap_socket(raw, server_hostname=self.server_hostname)
            self.sock = sock
            self._write(connect_packet(self.client_id, self.keepalive, self.user, self.password,
                                       clean, will_topic, will_payload, will_qos, will_retain))
            reply = self._read_exact(4)
        except Exception:
            self.close()
            try:
                raw.close()
            except OSError:
                pass
            raise
        if reply[0] != CONNACK or reply[1] != 2:
            self.close()
            raise MQTTError("expected CONNACK, got %r" % reply)
        if reply[3]:
            self.close()
            raise MQTTError("connection refused: %s" % CONNACK_REASONS.get(reply[3], reply[3]))
        self.sock.setblocking(False)
        self._poller = select.poll()
        self._poller.register(self.sock, select.POLLIN)
        now = _ticks_ms()
        self._last_tx = self._last_rx = now
        self._ping_out = False
        self._buf = bytearray()
        return bool(reply[2] & 1)

    def _read_exact(self, n):
        assert self.sock is not None  # only called by connect(), after the socket is open
        data = b""
        while len(data) < n:
            chunk = self.sock.read(n - len(data))
            if not chunk:
                raise OSError("connection closed by broker")
            data += chunk
        return data

    def _write(self, data):
        sock = self.sock
        if sock is None:
            raise OSError("not connected")
        view = memoryview(data)
        start = _ticks_ms()
        while len(view):
            try:
                n = sock.write(view)
            except OSError as exc:
                if exc.args and exc.args[0] == 11:  # EAGAIN on a non-blocking socket
                    n = None
                else:
                    raise
            if n:
                view = view[n:]
            elif _ticks_diff(_ticks_ms(), start) > self.timeout_s * 1000:
                raise OSError("send timed out")
            else:
                time.sleep_ms(1)
        self._last_tx = _ticks_ms()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self._poller = None

    def disconnect(self):
        """Leave politely: the broker does not publish the Last Will."""
        try:
            self._write(disconnect_packet())
        except OSError:
            pass
        self.close()

    @property
    def connected(self):
        return self.sock is not None

    # -- traffic ---------------------------------------------------------------------------

    def publish(self, topic, payload, qos=0, retain=False, pid=0, dup=False):
        self._write(publish_packet(topic, payload, qos, retain, pid, dup))

    def subscribe(self, filters, pid):
        self._write(subscribe_packet(pid, filters))

    def poll(self):
        """Read whatever has arrived, handle every whole packet, keep the session alive.

        Raises OSError when the connection is gone (closed, keep-alive lapsed)."""
        if self.sock is None:
            raise OSError("not connected")
        assert self._poller is not None  # connect() sets both; close() clears both
        closed = False
        while self._poller.poll(0):
            try:
                chunk = self.sock.read(512)
            except OSError as exc:
                if exc.args and exc.args[0] == 11:
                    break
                raise
            if chunk is None:
                break
            if not chunk:
                closed = True  # handle what came before the close (a last PUBACK) first
                break
            self._buf.extend(chunk)
            self._last_rx = _ticks_ms()
        while True:
            got = split_packet(self._buf)
            if got is None:
                break
            first, body, used = got
            self._buf = self._buf[used:]
            self._handle(first, body)
        if closed:
            self.close()
            raise OSError("connection closed by broker")
        now = _ticks_ms()
        if self.keepalive:
            if self._ping_out and _ticks_diff(now, self._last_rx) > self.keepalive * 1500:
                self.close()
                raise OSError("keep-alive lapsed: no answer from the broker")
            if _ticks_diff(now, self._last_tx) >= self.keepalive * 500:
                self._write(pingreq_packet())
                self._ping_out = True

    def _handle(self, first, body):
        kind = first & 0xF0
        if kind == PUBLISH:
            topic, payload, qos, retain, _dup, pid = parse_publish(first, body)
            if qos:
                self._write(puback_packet(pid))
            if self.on_message is not None:
                self.on_message(topic, payload, retain)
        elif kind == PUBACK:
            if self.on_puback is not None:
                self.on_puback(body[0] << 8 | body[1])
        elif kind == PINGRESP:
            self._ping_out = False
        elif kind == SUBACK:
            if self.on_suback is not None:
                self.on_suback(body[0] << 8 | body[1], bytes(body[2:]))
