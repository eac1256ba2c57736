"""The fleet dashboard: every site at a glance from PostgreSQL, with its own people and roles
(docs/fleet.md, "The fleet dashboard"). ``parkguard fleet web`` runs it."""
