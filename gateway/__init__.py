"""The site gateway: the authority for sessions and money, on the bus and in one SQLite file.

It ingests every lane event once, answers the lanes' decide requests, bills and books the
money (payments, debts, merchant coupons, passes), keeps the hash-chained audit log, raises
fire, flood and supervision alarms and the alerts that reach a person, checks patrol rounds,
and serves the control room's dashboard and the drivers' pay page.

``app.py`` assembles it (store, desks, bus, service, web) and tears it down in reverse;
``config.py`` is its strict config. The subpackages say where each concept lives:
``runtime`` (the worker: inbox, batches, decide, ingest, sessions, till), ``lanes``
(commands, replicas, capacity, reconcile), ``money``, ``safety``, ``patrols``, ``records``
(audit, reports, charts), ``storage`` (the one database opener and migration registry) and
``web``.
"""
