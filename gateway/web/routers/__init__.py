"""One FastAPI router per area of the dashboard; ``gateway.web.app`` includes them all.

A route asks for what it needs through ``gateway.web.deps`` (the user and their role, a
database reader, the worker, the one desk it uses); no router imports the app.
"""
