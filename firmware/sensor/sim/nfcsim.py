# The PN532 seam for the MicroPython unix port (tests only, never deployed): "a tag is
# presented", driven from outside the process by a control file in the working directory.
#
#   sim_nfc.json   written by the test (atomically: temp file, rename) to present one tag:
#                  {"uid": "04A1B2C3D4E5F6", "sun": "picc_data=..&cmac=..", "hold_ms": 300}
#                  or {"uid": ..., "url": "https://pg.example/t?picc_data=..&cmac=.."} (the
#                  NDEF URL of an NTAG 424 DNA; the seam extracts the SUN query as the real
#                  reader does) or {"uid": ..., "fail": true} (the tag left the field mid-read:
#                  a read error, nothing reported). "sun"/"url" absent: a plain tag.
#   The shim takes the file (renames it to sim_nfc.taken), so each presentation is read once
#   and a test knows it was taken when sim_nfc.json is gone. While "hold_ms" lasts (default
#   0) the tag stays in the field and every poll reports it again, like a guard holding it.
import json
import os
import time

from pgsensor.pn532 import Tag, sun_from_url

CONTROL = "sim_nfc.json"
TAKEN = "sim_nfc.taken"
LOG = "sim_nfc.log"


class SimReader:
    def __init__(self, cfg):
        self.cfg = cfg
        self.tag = None
        self.until = 0
        self.taken = 0

    def _take(self):
        try:
            with open(CONTROL) as f:
                raw = f.read()
            os.rename(CONTROL, TAKEN)
        except OSError:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def poll(self, now):
        spec = self._take()
        if spec is not None:
            self.taken += 1
            with open(LOG, "a") as f:
                f.write("%d %s\n" % (time.ticks_ms(), spec.get("uid")))
            if spec.get("fail"):
                print("nfc: tag lost during read")
                self.tag = None
                return None
            sun = spec.get("sun")
            if sun is None and spec.get("url"):
                sun = sun_from_url(spec["url"])
            self.tag = Tag(bytes.fromhex(spec["uid"]), sun, 0x20 if sun else 0x00)
            self.until = time.ticks_add(now, int(spec.get("hold_ms", 0)))
            return self.tag
        if self.tag is not None:
            if time.ticks_diff(self.until, now) > 0:
                return self.tag
            self.tag = None
        return None

    def close(self):
        pass
