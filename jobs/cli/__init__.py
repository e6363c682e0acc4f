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

import importlib
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
    """Entry point of the ``vw`` script."""
    app()


if __name__ == "__main__":
    main()
