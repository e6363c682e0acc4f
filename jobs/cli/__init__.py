"""The ``vw`` command line.

This root creates the Typer app and registers the command groups, each a module of this package
that exposes ``register(app)`` and never imports the root:

==============  ==========================================================================
``ingest``      ``vw ingest`` (files, folders, listings, dataset annotations)
``backfill``    ``vw backfill``: geneva backfills of the stages' columns
``status``      ``vw status``: rows, columns, errors, jobs and indexes per table
``demo``        ``vw demo``: sample clips through the video stages
``clusters``    ``vw clusters``: the cluster definitions backfills can run on
``local_ray``   ``vw ray``: the warm local Ray successive commands share
``labels``      ``vw scenarios``, ``vw export-metadata``: scenario labels for training scripts
``ensemble``    ``vw ensemble``: the soccer detector-ensemble analysis
``events``      ``vw windows``, ``vw events``, ``vw import-predictions``
``features``    ``vw export-features``: ``.npy`` files for feature-preloading scripts
``read``        ``vw search``, ``vw moments``, ``vw index``, ``vw sql``: the read paths
==============  ==========================================================================

Shared options, opening the warehouse, progress lines and the error handling live in
:mod:`jobs.cli.common`: any :class:`~udfs.errors.VwError` a command raises ends it with
``error: <message>`` and the error's exit status, in one place. Commands import what they need
inside their function bodies, so building the command line (``vw --help``) stays light.
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import threading
from typing import Annotated

import typer

from jobs.cli.common import VwGroup

#: Command group modules, in the order their commands appear in ``vw --help``.
GROUPS = ("ingest", "backfill", "status", "demo", "clusters", "local_ray", "labels", "ensemble", "events",
          "features", "read")

app = typer.Typer(
    cls=VwGroup,
    help="video-warehouse: videos in Lance tables, every processing stage a geneva column UDF.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"video-warehouse {version('video-warehouse')}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the version and exit.")] = False,
) -> None:
    """video-warehouse: videos in Lance tables, every processing stage a geneva column UDF."""


for _group in GROUPS:
    importlib.import_module(f"{__name__}.{_group}").register(app)


def main() -> None:
    """Run the command line in this process (raises ``SystemExit`` with the command's status)."""
    app()


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def entry() -> None:
    """Entry point of the ``vw`` script: :func:`main`, then a quick end of the process.

    After a command that loaded torch, geneva and Ray, the interpreter's own teardown (freeing every
    module and object one by one) takes a second or more. Everything a command writes is committed
    before it returns, so once the command is done this ends the threads as the interpreter would
    (thread pools told to finish, the threads that are not daemons joined), runs the exit handlers
    (Ray's disconnect, logging's flush), flushes the standard streams, and ends the process without
    the teardown. An exception other than ``SystemExit`` (Ctrl-C included) takes the normal path.
    """
    try:
        main()
        status = 0
    except SystemExit as done:
        status = _exit_status(done.code)
    # What the interpreter does first at exit: the threading module's exit callbacks (thread pools
    # told to finish), then a join of every thread that is not a daemon.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be written anyway
            pass
    os._exit(status)


if __name__ == "__main__":
    entry()
