"""video-warehouse jobs: the `vw` command line, ingest, the backfill runner, status, demo."""
