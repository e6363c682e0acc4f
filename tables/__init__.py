"""video-warehouse tables: names, Arrow schemas, the connection, ingest and read paths.

The installed import name ``tables`` is generic (PyTables uses it too); ``tables.PROJECT``
lets code and tests check that this package is the one that was imported.
"""

PROJECT = "video-warehouse"
