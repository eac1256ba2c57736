# The NFC seam of the patrol reader: "a tag was presented" -> Tag(uid, sun).
#
# Interface (what pgsensor.patrol uses; every backend has the same shape):
#   open_reader(cfg) -> reader            cfg is config.json's "patrol"."nfc" section
#   reader.poll(now_ms) -> Tag | None     must override: never blocks longer than one tag read
#                                         (a few tens of ms); a tag that stays in the field is
#                                         reported again on later polls (the caller debounces)
#   reader.close()                        may override
# Backends:
#   "i2c"  the real PN532 on the Pico W's I2C (PN532 board DIP switches / jumpers set to I2C),
#          PN532 class below. "spi"/"hsu" are not implemented: the frame layer is the same,
#          only _write/_read and the wake-up differ (see PN532 user manual UM0701-02, 6.2).
#   "sim"  tests only: sim/nfcsim.py on the unix port, driven by a control file.
#
# Frames (PN532 user manual UM0701-02, 6.2.1), host -> PN532:
#   00 00 FF LEN LCS D4 CMD DATA.. DCS 00   LEN = len(D4 CMD DATA), LCS = -LEN, DCS = -sum
# PN532 -> host is the same with D5 and CMD+1; an ACK is 00 00 FF 00 FF 00. Over I2C every
# read starts with a status byte: 0x01 when the PN532 has something to say (or IRQ goes low).
#
# Checkpoint tags are NTAG 424 DNA in SUN mode: ISO 14443-4 (SAK bit 0x20). Their NDEF file
# holds a URL whose query the tag rewrites at every tap with its SUN data, e.g.
#   https://pg.example/t?picc_data=EF963FF7828658A599F3041510E5D9D0&cmac=94EED9EE65337086
# (encrypted UID + tap counter, and the AES-CMAC; NXP AN12196). The reader does not
# interpret it: Tag.sun is the query string, verbatim, and the gateway verifies it. Plain tags
# (NTAG 21x, MIFARE: SAK without 0x20) give only their UID: Tag.sun is None.

CMD_GET_FIRMWARE_VERSION = 0x02
CMD_SAM_CONFIGURATION = 0x14
CMD_RF_CONFIGURATION = 0x32
CMD_IN_DATA_EXCHANGE = 0x40
CMD_IN_LIST_PASSIVE_TARGET = 0x4A
CMD_IN_RELEASE = 0x52

HOST_TO_PN532 = 0xD4
PN532_TO_HOST = 0xD5
ACK = b"\x00\x00\xff\x00\xff\x00"
I2C_ADDRESS = 0x24

# ISO 7816-4 APDUs that read the NDEF file of an NTAG 424 DNA (NFC Forum Type 4 Tag).
APDU_SELECT_NDEF_APP = b"\x00\xa4\x04\x00\x07\xd2\x76\x00\x00\x85\x01\x01\x00"
APDU_SELECT_NDEF_FILE = b"\x00\xa4\x00\x0c\x02\xe1\x04"
NDEF_CHUNK = 48  # bytes per READ BINARY: well inside the PN532's 262-byte frame

# NFC Forum URI record prefixes (URI RTD, table 3): the ones a SUN URL can start with.
URI_PREFIXES = {0: "", 1: "http://www.", 2: "https://www.", 3: "http://", 4: "https://"}


class NfcError(Exception):
    """The reader or the tag did not answer as expected (tag pulled away, bad frame)."""


class Tag:
    """One tag in the field: ``uid`` (bytes, 4/7/10), ``sun`` (str or None), ``sak``."""

    def __init__(self, uid, sun=None, sak=0):
        self.uid = bytes(uid)
        self.sun = sun
        self.sak = sak

    @property
    def uid_hex(self):
        return "".join("%02X" % b for b in self.uid)


# -- pure frame and NDEF functions (also imported by the CPython tests) ---------------------


def build_frame(cmd, data=b""):
    body = bytes([HOST_TO_PN532, cmd]) + bytes(data)
    length = len(body)
    if length > 255:
        raise NfcError("frame too long: %d" % length)
    return (b"\x00\x00\xff" + bytes([length, (-length) & 0xFF]) + body
            + bytes([(-sum(body)) & 0xFF, 0x00]))


def parse_frame(raw, cmd):
    """The data of the PN532's answer to ``cmd`` from a raw frame (preamble may be padded)."""
    start = raw.find(b"\x00\xff")
    if start < 0 or len(raw) < start + 4:
        raise NfcError("no frame start")
    length = raw[start + 2]
    if (length + raw[start + 3]) & 0xFF:
        raise NfcError("bad length checksum")
    body = raw[start + 4:start + 4 + length]
    if len(body) != length or len(raw) < start + 5 + length:
        raise NfcError("short frame")
    if (sum(body) + raw[start + 4 + length]) & 0xFF:
        raise NfcError("bad data checksum")
    if length < 2 or body[0] != PN532_TO_HOST or body[1] != cmd + 1:
        raise NfcError("unexpected answer %r to command 0x%02X" % (bytes(body[:2]), cmd))
    return bytes(body[2:])


def parse_target(data):
    """InListPassiveTarget (106 kbps type A) answer -> (uid, sak), or None when no target."""
    if not data or data[0] == 0:
        return None
    # NbTg, Tg, SENS_RES (2), SEL_RES, NFCIDLength, NFCID1..., [ATS]
    sak = data[4]
    n = data[5]
    uid = data[6:6 + n]
    if len(uid) != n:
        raise NfcError("truncated target")
    return bytes(uid), sak


def read_binary_apdu(offset, length):
    return bytes([0x00, 0xB0, offset >> 8 & 0xFF, offset & 0xFF, length])


def uri_from_ndef(message):
    """The URI of the first URI record ('U', TNF 1) of an NDEF message, or None."""
    pos = 0
    while pos + 3 <= len(message):
        header = message[pos]
        tnf = header & 0x07
        short = header & 0x10
        has_id = header & 0x08
        type_len = message[pos + 1]
        pos += 2
        if short:
            payload_len = message[pos]
            pos += 1
        else:
            payload_len = int.from_bytes(message[pos:pos + 4], "big")
            pos += 4
        id_len = 0
        if has_id:
            id_len = message[pos]
            pos += 1
        rtype = message[pos:pos + type_len]
        pos += type_len + id_len
        payload = message[pos:pos + payload_len]
        pos += payload_len
        if tnf == 1 and rtype == b"U" and payload:
            prefix = URI_PREFIXES.get(payload[0], "")
            return prefix + bytes(payload[1:]).decode()
        if header & 0x40:  # ME: last record
            break
    return None


def sun_from_url(url):
    """SUN data as sent on the wire: the URL's query string, verbatim (None if it has none)."""
    if not url:
        return None
    q = url.find("?")
    if q < 0 or q == len(url) - 1:
        return None
    return url[q + 1:]


# -- the real PN532 on I2C --------------------------------------------------------------------


class PN532:
    """PN532 over I2C, non-blocking detection: ``start_detect()`` arms InListPassiveTarget,
    ``ready()`` says when the answer is in (IRQ pin low, or the status byte), and
    ``finish_detect()`` reads it. Untested here: the unix port has no I2C (tests use "sim")."""

    def __init__(self, i2c, addr=I2C_ADDRESS, irq=None, reset=None, timeout_ms=100):
        self.i2c = i2c
        self.addr = addr
        self.irq = irq  # machine.Pin input, active low, or None to poll the status byte
        self.reset_pin = reset
        self.timeout_ms = timeout_ms

    # transport
    def _write(self, frame):
        self.i2c.writeto(self.addr, frame)

    def _status_ready(self):
        try:
            return self.i2c.readfrom(self.addr, 1)[0] == 0x01
        except OSError:
            return False  # the PN532 clock-stretches or NAKs while busy

    def ready(self):
        if self.irq is not None:
            return self.irq.value() == 0
        return self._status_ready()

    def _wait_ready(self, timeout_ms):
        import time

        start = time.ticks_ms()
        while not self.ready():
            if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
                raise NfcError("PN532 timeout")
            time.sleep_ms(1)

    def _read(self, n):
        raw = self.i2c.readfrom(self.addr, n + 1)
        if raw[0] != 0x01:
            raise NfcError("PN532 not ready")
        return raw[1:]

    def _send(self, cmd, data=b""):
        self._write(build_frame(cmd, data))
        self._wait_ready(self.timeout_ms)
        if self._read(6) != ACK:
            raise NfcError("no ACK for command 0x%02X" % cmd)

    def _answer(self, cmd, size=64):
        return parse_frame(self._read(size), cmd)

    def call(self, cmd, data=b"", size=64, timeout_ms=None):
        self._send(cmd, data)
        self._wait_ready(timeout_ms or self.timeout_ms)
        return self._answer(cmd, size)

    # commands
    def begin(self):
        import time

        if self.reset_pin is not None:
            self.reset_pin.value(0)
            time.sleep_ms(10)
            self.reset_pin.value(1)
            time.sleep_ms(20)
        version = self.call(CMD_GET_FIRMWARE_VERSION, size=12)  # IC 0x32, Ver, Rev, Support
        self.call(CMD_SAM_CONFIGURATION, b"\x01\x14\x01")  # normal mode, use IRQ
        # MxRtyATR, MxRtyPSL default; MxRtyPassiveActivation 0xFF: InListPassiveTarget waits
        # for a tag (we never block on it: start_detect/ready/finish_detect).
        self.call(CMD_RF_CONFIGURATION, b"\x05\xff\x01\xff")
        return version

    def start_detect(self):
        self._send(CMD_IN_LIST_PASSIVE_TARGET, b"\x01\x00")  # one target, 106 kbps type A

    def finish_detect(self):
        return parse_target(self._answer(CMD_IN_LIST_PASSIVE_TARGET, 64))

    def apdu(self, apdu, size=64):
        """One ISO-DEP exchange with target 1: (response data, SW1SW2)."""
        data = self.call(CMD_IN_DATA_EXCHANGE, b"\x01" + apdu, size + 4, 200)
        if not data or data[0] & 0x3F:
            raise NfcError("InDataExchange status 0x%02X" % (data[0] if data else 0xFF))
        resp = data[1:]
        if len(resp) < 2:
            raise NfcError("short APDU response")
        return resp[:-2], resp[-2] << 8 | resp[-1]

    def read_ndef(self):
        """The NDEF message of a Type 4 tag (NTAG 424 DNA): select app, file, read binary."""
        for cmd in (APDU_SELECT_NDEF_APP, APDU_SELECT_NDEF_FILE):
            _data, sw = self.apdu(cmd)
            if sw != 0x9000:
                raise NfcError("select failed: SW %04X" % sw)
        head, sw = self.apdu(read_binary_apdu(0, 2))
        if sw != 0x9000 or len(head) != 2:
            raise NfcError("NLEN read failed: SW %04X" % sw)
        nlen = head[0] << 8 | head[1]
        message = b""
        while len(message) < nlen:
            n = min(NDEF_CHUNK, nlen - len(message))
            part, sw = self.apdu(read_binary_apdu(2 + len(message), n), n + 2)
            if sw != 0x9000 or not part:
                raise NfcError("NDEF read failed: SW %04X" % sw)
            message += part
        return message

    def release(self):
        try:
            self.call(CMD_IN_RELEASE, b"\x00")
        except (NfcError, OSError):
            pass


class I2CReader:
    """The seam's ``poll`` over a PN532: arms detection, returns a Tag when one is in."""

    def __init__(self, pn532):
        self.pn = pn532
        self.armed = False

    def poll(self, now):
        try:
            if not self.armed:
                self.pn.start_detect()
                self.armed = True
                return None
            if not self.pn.ready():
                return None
            self.armed = False
            found = self.pn.finish_detect()
            if found is None:
                return None
            uid, sak = found
            sun = None
            if sak & 0x20:  # ISO 14443-4: a Type 4 tag, maybe NTAG 424 DNA with a SUN URL
                sun = sun_from_url(uri_from_ndef(self.pn.read_ndef()))
            self.pn.release()
            return Tag(uid, sun, sak)
        except (NfcError, OSError) as exc:
            self.armed = False
            print("nfc:", exc)
            return None

    def close(self):
        self.pn.release()


def open_reader(cfg):
    """The NFC backend named by ``cfg["bus"]``: "i2c" (the real PN532) or "sim" (tests)."""
    bus = cfg.get("bus", "i2c")
    if bus == "sim":
        # firmware/sensor/sim: only on the unix-port test path, never deployed nor type-checked
        from nfcsim import SimReader  # type: ignore[import-not-found]

        return SimReader(cfg)
    if bus != "i2c":
        raise ValueError("patrol.nfc.bus must be i2c or sim, not %r" % (bus,))
    import machine

    i2c = machine.I2C(cfg.get("i2c_id", 0), sda=machine.Pin(cfg.get("sda", 4)),
                      scl=machine.Pin(cfg.get("scl", 5)), freq=cfg.get("freq", 100000))
    irq = machine.Pin(cfg["irq"], machine.Pin.IN, machine.Pin.PULL_UP) if "irq" in cfg else None
    rst = machine.Pin(cfg["reset"], machine.Pin.OUT, value=1) if "reset" in cfg else None
    pn = PN532(i2c, cfg.get("addr", I2C_ADDRESS), irq, rst)
    version = pn.begin()
    print("nfc: PN532 firmware %d.%d" % (version[1], version[2]))
    return I2CReader(pn)
