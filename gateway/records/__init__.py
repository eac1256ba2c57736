"""What the gateway keeps for the record: the hash-chained audit log, the daily reports and
their CSV, and the charts drawn from them."""
