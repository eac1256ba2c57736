"""Keeping people safe: fire, flood and supervision alarms, the alerts that reach a person
and climb the ladder until someone answers, and incidents for the office to close."""
