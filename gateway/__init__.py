"""The site gateway: billing authority, sessions, audit trail and (later) alarms and dashboard."""
