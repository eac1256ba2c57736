"""The gateway's SQLite file: :func:`gateway.storage.database.open_database` opens it and
applies every migration set of :mod:`gateway.storage.migrations`, in the registry's order;
:mod:`~gateway.storage.store` holds the worker's queries and :mod:`~gateway.storage.queries`
the dashboard's read models."""
