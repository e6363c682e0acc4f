"""``vw ray``: the warm local Ray that successive commands share (start, status, stop)."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

ray_app = typer.Typer(
    help="The warm local Ray: started by the first command that needs it, shared by later ones, "
    "stopped after VW_RAY_IDLE_S idle seconds (default 900) or by `vw ray stop`. "
    "VW_LOCAL_RAY=per-command starts a Ray inside each command instead.",
    no_args_is_help=True,
)


@ray_app.command("status")
def status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Say whether the warm local Ray runs, where, for how long, and who uses it."""
    from jobs.local_ray import idle_for, local_ray_mode, read_head, state_dir, users

    folder = state_dir()
    head = read_head(folder)
    running = head is not None and head.alive()
    info: dict[str, object] = {"mode": local_ray_mode(), "state_dir": str(folder), "running": running}
    if head is not None and running:
        idle = idle_for(folder)
        info.update(address=head.address, num_cpus=head.num_cpus, up_s=round(time.time() - head.started, 1),
                    idle_s=round(idle, 1), stops_in_s=round(max(0.0, head.idle_s - idle), 1),
                    users=users(folder))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    if not running:
        typer.echo(f"no warm local Ray ({folder}); mode {info['mode']}")
        return
    typer.echo(f"warm local Ray at {info['address']} ({info['num_cpus']} CPUs), up {info['up_s']} s, "
               f"idle {info['idle_s']} s, stops after {info['stops_in_s']} s more idle; "
               f"commands using it: {len(users(folder))}")


@ray_app.command("start")
def start_cmd() -> None:
    """Start the warm local Ray now (commands start it themselves when they need it)."""
    from jobs.local_ray import ensure_head

    head = ensure_head(log=typer.echo)
    typer.echo(f"warm local Ray at {head.address}")


@ray_app.command("stop")
def stop_cmd() -> None:
    """Stop the warm local Ray now (jobs still running on it fail and resume on the next backfill)."""
    from jobs.local_ray import stop_head

    head = stop_head()
    typer.echo(f"stopped the warm local Ray at {head.address}" if head else "no warm local Ray was running")


def register(app: typer.Typer) -> None:
    """Add ``vw ray`` to ``app``."""
    app.add_typer(ray_app, name="ray")
