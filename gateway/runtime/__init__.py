"""The gateway's worker: one thread that owns the database, taking lane events in batches,
decide requests first, and office work in between (docs/ingestion.md)."""
