"""Which process drives each backfill job, and finding the jobs whose driver is gone.

geneva records every backfill in its job table as PENDING, then RUNNING, until the job ends. A
driver killed with SIGKILL (or a machine that lost power) never ends its job: the record stays
RUNNING forever. Before it starts a job, `vw backfill` therefore records the process that
drives it in the warehouse table ``_vw_job_drivers`` (job id, table, column, host name, process
id and the process's start time, so that a reused process id is not taken for the driver).

A job that the job table calls PENDING or RUNNING is, by :func:`classify`:

``running``
    its driver process is alive on this host;
``abandoned``
    its driver was recorded on this host and that process is gone: nothing will ever finish
    the job (its Ray workers are stopped by Ray when their driver disconnects);
``unknown``
    no driver record (a job started by other geneva code) or a driver on another host, which
    cannot be checked from here.

:func:`mark_abandoned` sets abandoned jobs to FAILED, with an event naming the driver that is
gone; `vw backfill` does so for the tables it fills before it starts, and `vw status --clean`
for every table.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

DRIVERS_TABLE = "_vw_job_drivers"
ACTIVE_STATUSES = ("PENDING", "RUNNING")

DRIVERS_SCHEMA = pa.schema([
    pa.field("job_id", pa.string(), nullable=False),
    pa.field("table_name", pa.string()),
    pa.field("column_name", pa.string()),
    pa.field("host", pa.string()),
    pa.field("pid", pa.int64()),
    pa.field("pid_start", pa.string()),
    pa.field("started_at", pa.timestamp("us", tz="UTC")),
])


@dataclass(frozen=True)
class Driver:
    """The process that drives a job: where it runs and which process it is."""

    host: str
    pid: int
    pid_start: str | None

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


@dataclass
class ActiveJob:
    """A job the job table calls PENDING or RUNNING, with what is known of its driver."""

    job_id: str
    table: str
    column: str
    status: str
    launched_at: str
    driver: Driver | None
    state: str  # running | abandoned | unknown

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (for `vw status --json`)."""
        return {"job_id": self.job_id, "table": self.table, "column": self.column, "status": self.status,
                "launched_at": self.launched_at, "driver": str(self.driver) if self.driver else None,
                "state": self.state}


def process_start(pid: int) -> str | None:
    """An identity of process ``pid``'s start (its start time since boot, from ``/proc``); ``None`` when unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_driver() -> Driver:
    """The calling process as a driver."""
    pid = os.getpid()
    return Driver(socket.gethostname(), pid, process_start(pid))


def is_alive(driver: Driver) -> bool | None:
    """Whether ``driver`` still runs: ``None`` when it runs on another host (cannot be checked)."""
    if driver.host != socket.gethostname():
        return None
    try:
        os.kill(driver.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    if driver.pid_start is None:
        return True
    start = process_start(driver.pid)
    return start is None or start == driver.pid_start


#: Attempts to open the drivers table while another driver is still creating it.
_OPEN_ATTEMPTS = 6


def _table_not_found(err: Exception) -> bool:
    return type(err).__name__ == "TableNotFoundError" or "not found" in str(err).lower()


def _drivers_table(conn: Any, create: bool) -> Any | None:
    for attempt in range(_OPEN_ATTEMPTS):
        if DRIVERS_TABLE in set(conn.table_names()):
            try:
                return conn.open_table(DRIVERS_TABLE)
            except Exception as err:
                # listed but not openable yet: another driver is creating it right now
                if not _table_not_found(err) or attempt == _OPEN_ATTEMPTS - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))
                continue
        if not create:
            return None
        # Two drivers (or two stages of one command) may create it at once: "already exists" means
        # another one did, and the next attempt opens its table.
        try:
            return conn.create_table(DRIVERS_TABLE, schema=DRIVERS_SCHEMA, exist_ok=True)
        except Exception as err:
            if not _already_exists(err) or attempt == _OPEN_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
    return None


def _already_exists(err: Exception) -> bool:
    return "AlreadyExists" in type(err).__name__ or "already exists" in str(err).lower()


def ensure_drivers_table(conn: Any) -> None:
    """Create the drivers table unless it exists (race-free), before jobs start in parallel."""
    _drivers_table(conn, create=True)


def _concurrently_created(err: Exception) -> bool:
    """Another process is creating the same table right now: it exists already, its creation
    conflicted, or it is listed but not openable yet."""
    text = f"{type(err).__name__} {err}"
    return (_already_exists(err) or _table_not_found(err) or "ConcurrentModification" in text
            or "concurrently created" in text)


def ensure_job_tables(conn: Any) -> None:
    """Create every table that starting a job writes to, before jobs start in parallel.

    Besides the drivers table: geneva's job table and its UDF error table. Each of geneva's job
    drivers opens the error table, creating it when it is missing; two drivers starting on a new
    warehouse at once both create it and one fails with ``ConcurrentModificationError``. Created
    here once, from one thread (and retried when another command creates it at the same moment),
    the drivers only open it.
    """
    from geneva.debug.error_store import ErrorStore

    ensure_drivers_table(conn)
    for create in (lambda: conn._history, lambda: ErrorStore(conn)):
        for attempt in range(_OPEN_ATTEMPTS):
            try:
                create()
                break
            except Exception as err:
                if not _concurrently_created(err) or attempt == _OPEN_ATTEMPTS - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))


def record_driver(conn: Any, job_id: str, table: str, column: str, driver: Driver | None = None) -> None:
    """Record ``driver`` (default: this process) as the driver of ``job_id`` (one append)."""
    d = driver or this_driver()
    row = {"job_id": job_id, "table_name": table, "column_name": column, "host": d.host, "pid": d.pid,
           "pid_start": d.pid_start, "started_at": dt.datetime.now(dt.UTC)}
    _drivers_table(conn, create=True).add(pa.Table.from_pylist([row], schema=DRIVERS_SCHEMA))


def drivers(conn: Any, job_ids: list[str]) -> dict[str, Driver]:
    """The recorded driver of each of ``job_ids`` that has one."""
    table = _drivers_table(conn, create=False)
    if table is None or not job_ids:
        return {}
    quoted = ", ".join("'" + j.replace("'", "''") + "'" for j in job_ids)
    rows = table.to_lance().to_table(columns=["job_id", "host", "pid", "pid_start"],
                                     filter=f"job_id IN ({quoted})").to_pylist()
    return {r["job_id"]: Driver(r["host"], int(r["pid"]), r["pid_start"]) for r in rows}


def classify(conn: Any, table: str | None = None) -> list[ActiveJob]:
    """Every PENDING or RUNNING job (of ``table``, or of every table) with the state of its driver."""
    records = []
    for status in ACTIVE_STATUSES:
        try:
            records.extend(conn.list_jobs(table_name=table, status=status))
        except Exception:  # noqa: BLE001 - no job table yet means no jobs
            continue
    known = drivers(conn, [r.job_id for r in records])
    out = []
    for r in records:
        driver = known.get(r.job_id)
        alive = is_alive(driver) if driver else None
        state = "unknown" if alive is None else ("running" if alive else "abandoned")
        out.append(ActiveJob(job_id=r.job_id, table=r.table_name, column=r.column_name, status=str(r.status.value
                             if hasattr(r.status, "value") else r.status), launched_at=str(r.launched_at),
                             driver=driver, state=state))
    return sorted(out, key=lambda j: j.launched_at)


def mark_abandoned(conn: Any, table: str | None = None) -> list[ActiveJob]:
    """Set every abandoned job (of ``table``, or of every table) to FAILED; returns those jobs.

    The job's events get ``Job failed: abandoned: its driver (pid P on HOST) is gone``.
    """
    abandoned = [j for j in classify(conn, table) if j.state == "abandoned"]
    history = conn._history  # geneva's job state manager (the job table behind conn.list_jobs)
    for job in abandoned:
        history.set_failed(job.job_id, f"abandoned: its driver ({job.driver}) is gone")
    return abandoned
