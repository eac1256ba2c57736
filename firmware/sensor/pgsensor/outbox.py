# Flash-backed outbox: every reading is written to a file before it is sent and leaves it only
# after the broker's PUBACK, so readings taken while the broker is unreachable (or across a
# reboot) go out later, in seq order, none lost.
#
# Files (in the device's flash filesystem, next to config.json):
#   <name>.log  one record per line: "<seq> <json payload>\n", appended, seq increasing
#   <name>.ack  the highest seq acknowledged so far (everything up to it may be dropped)
# Boot: next seq = max(last seq in the log, acked) + 1, so seq never goes backwards.
# When every record is acknowledged the log is truncated; when it holds more than
# ``max_records`` unacknowledged records the oldest are dropped (and counted).
import os


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class Outbox:
    def __init__(self, name="outbox", max_records=1000):
        self.log_path = name + ".log"
        self.ack_path = name + ".ack"
        self.max_records = max_records
        self.acked = -1
        self.last_seq = -1
        self.pending = 0  # records in the log with seq > acked
        self.dropped = 0
        self._acks = []  # acknowledged seqs above self.acked (out-of-order PUBACKs)
        self._load()

    def _load(self):
        if _exists(self.ack_path):
            with open(self.ack_path) as f:
                text = f.read().strip()
            if text:
                self.acked = int(text)
        if _exists(self.log_path):
            with open(self.log_path) as f:
                for line in f:
                    seq = _seq_of(line)
                    if seq is None:
                        continue  # a torn last line after a power cut: skipped
                    self.last_seq = seq
                    if seq > self.acked:
                        self.pending += 1

    @property
    def next_seq(self):
        return max(self.last_seq, self.acked) + 1

    def append(self, seq, payload):
        """Store one record durably (the file is closed, so flushed, before returning)."""
        with open(self.log_path, "a") as f:
            f.write("%d %s\n" % (seq, payload))
        self.last_seq = seq
        self.pending += 1
        if self.pending > self.max_records:
            self._drop_oldest(self.pending - self.max_records)

    def records(self, after):
        """Yield (seq, payload) of unacknowledged records with seq > ``after``, in order."""
        if not _exists(self.log_path):
            return
        floor = max(after, self.acked)
        with open(self.log_path) as f:
            for line in f:
                seq = _seq_of(line)
                if seq is None or seq <= floor:
                    continue
                yield seq, line[line.find(" ") + 1:].rstrip("\n")

    def ack(self, seq):
        """The broker has a record: move the acknowledged mark as far as it is contiguous."""
        if seq <= self.acked:
            return
        self._acks.append(seq)
        moved = False
        while True:
            nxt = self._next_pending_after(self.acked)
            if nxt is None or nxt not in self._acks:
                break
            self._acks.remove(nxt)
            self.acked = nxt
            self.pending -= 1
            moved = True
        if moved:
            self._write_ack()
            if self.pending == 0:
                # Everything is at the broker: start a fresh log (the ack mark keeps seq).
                with open(self.log_path, "w"):
                    pass
                self._acks = []

    def _next_pending_after(self, seq):
        # Records are consecutive seqs except where the oldest were dropped.
        if seq + 1 <= self.last_seq:
            return seq + 1
        return None

    def _write_ack(self):
        tmp = self.ack_path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % self.acked)
        os.rename(tmp, self.ack_path)

    def _drop_oldest(self, count):
        """Keep the newest ``max_records``: flash is finite, and the newest matter most."""
        tmp = self.log_path + ".tmp"
        skipped = 0
        new_floor = self.acked
        with open(self.log_path) as src, open(tmp, "w") as dst:
            for line in src:
                seq = _seq_of(line)
                if seq is None or seq <= self.acked:
                    continue
                if skipped < count:
                    skipped += 1
                    new_floor = seq
                    continue
                dst.write(line)
        os.rename(tmp, self.log_path)
        self.dropped += skipped
        self.pending -= skipped
        self.acked = new_floor
        self._acks = [s for s in self._acks if s > new_floor]
        self._write_ack()


def _seq_of(line):
    if not line.endswith("\n"):
        return None
    space = line.find(" ")
    if space <= 0:
        return None
    try:
        return int(line[:space])
    except ValueError:
        return None
