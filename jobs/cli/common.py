"""What every command group of the ``vw`` command line shares: the ``--db`` option, opening the
warehouse, stderr messages, progress lines, and the command group class that turns any
:class:`~udfs.errors.VwError` into ``error: <message>`` and the error's exit status.

Command group modules import this module; they never import the root (:mod:`jobs.cli`).
Nothing heavy is imported here at module level, so building the command line stays fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from jobs.progress import Progress, line_progress
from udfs.errors import VwError

DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Warehouse location (directory, gs:// or s3:// URI). Default: $VW_DB or ./warehouse."),
]


def echo_err(msg: str) -> None:
    """Print ``msg`` on stderr, with credentials redacted (messages may quote URIs or settings)."""
    from udfs.redact import redact

    typer.echo(redact(msg), err=True)


class OptionError(VwError, ValueError):
    """Options that do not go together, or a value an option cannot take."""


class WarehouseUnavailableError(VwError, OSError):
    """The warehouse cannot be opened (an unreachable bucket or endpoint, refused credentials)."""


def connect(db: str | None, create: bool = False) -> Any:
    """The warehouse at ``db`` (default: the configured one); raises :class:`WarehouseUnavailableError`
    with the storage error when it cannot be opened. Only commands that write new data (ingest, the
    demo) pass ``create``: a mistyped location is an error for the others, not a new empty warehouse."""
    from tables.connection import connect as open_warehouse
    from tables.connection import lance_error_text

    conn = open_warehouse(db, create=create)
    try:
        conn.table_names()  # geneva connects lazily: reach the storage now, not mid-command
    except Exception as err:  # noqa: BLE001 - any storage error ends the command with its reason
        raise WarehouseUnavailableError(f"cannot open the warehouse at {conn.uri}: {lance_error_text(err)}") from None
    return conn


VerboseOpt = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="Let geneva, Ray and Lance print their own progress and logs here "
                 "(else they go to the log file the summary names; also VW_LOG_LEVEL=debug)."),
]


@contextlib.contextmanager
def command_console(conn: Any, command: str, verbose: bool = False, as_json: bool = False) -> Iterator[Any]:
    """The block of a long command: the libraries' output goes to a log file (named by the display's
    ``log_path``), and the yielded :class:`~jobs.console.Display` prints the command's messages and
    progress; with ``as_json`` it prints nothing (the command prints its JSON after the block)."""
    from jobs.console import log_path_for, quiet_console, verbose_requested

    with quiet_console(log_path_for(str(conn.uri), command), verbose_requested(verbose), silent=as_json) as display:
        yield display


def progress(label: str) -> Progress:
    """A progress callback printing ``label: done/total`` on one line of stderr."""
    return line_progress(label)


def split_names(value: str | None) -> list[str]:
    """A comma-separated option as a list of non-empty, stripped names (empty for None)."""
    return [c.strip() for c in value.split(",") if c.strip()] if value else []


def _hide_flag_types() -> None:
    """Typer 0.29 prints a ``<bool>`` type beside every on/off flag in ``--help``; a flag takes no value,
    so the type column stays empty for flags (all other options keep their type)."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_vw_flags_hidden", False):
        return

    def display_type_rich(self: TyperOption, ctx: click.Context) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._vw_flags_hidden = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_hide_flag_types()


class VwGroup(TyperGroup):
    """The root command group: the one place where errors become messages and exit statuses.

    A :class:`VwError` raised by any command prints ``error: <message>`` on stderr (credentials
    redacted) and ends the command with the error's ``exit_code``. A
    :class:`WarehouseUnavailableError` prints its message as it is (it already says what failed).
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VwError as err:
            text = str(err)
            echo_err(text if isinstance(err, WarehouseUnavailableError) else f"error: {text}")
            ctx.exit(err.exit_code)
