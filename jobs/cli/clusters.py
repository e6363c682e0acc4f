"""`vw clusters`: list and check the cluster definitions backfills can run on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from manifests.clusters import (
    ClusterSpec,
    ClusterUnavailableError,
    check_cluster,
    clusters_file,
    geneva_cluster,
    load_clusters,
)

ClustersOpt = Annotated[
    Path | None,
    typer.Option("--clusters", help="Cluster definitions YAML (default $VW_CLUSTERS, then manifests/clusters.yaml)."),
]


def describe(spec: ClusterSpec) -> str:
    """One line saying where ``spec`` runs and with which resources."""
    if spec.is_local:
        from jobs.local_ray import local_ray_mode

        if local_ray_mode() == "warm":
            return "local: the warm local Ray on this machine, shared by successive commands (`vw ray status`)"
        return "local: a Ray started inside each command (VW_LOCAL_RAY=per-command)"
    gpu = f"GPU stages: {spec.num_gpus:g} GPU" + (f", {spec.memory} per worker" if spec.memory else "")
    if spec.type == "ray":
        return f"ray: {spec.address}; environment {spec.environment}; {gpu}"
    pools = ", ".join(
        f"{p.name} ({p.gpus} GPU x {p.min_workers}-{p.max_workers}, {p.cpus} CPU, {p.memory})" for p in spec.workers
    )
    return f"kuberay: namespace {spec.namespace}; workers {pools}; environment {spec.environment}; {gpu}"


def clusters_cmd(
    check: Annotated[bool, typer.Option("--check", help="Check each cluster can be reached (starts nothing).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with geneva's cluster definitions).")] = False,
    clusters: ClustersOpt = None,
) -> None:
    """List the clusters `vw backfill --cluster NAME` can use; with --check, validate each one."""
    specs = load_clusters(clusters)
    results: dict[str, dict[str, object]] = {}
    for name, spec in specs.items():
        row: dict[str, object] = {"type": spec.type, "description": describe(spec)}
        if as_json:
            row["geneva"] = geneva_cluster(spec).as_dict()
        if check:
            try:
                row["check"] = {"ok": True, "detail": check_cluster(spec)}
            except ClusterUnavailableError as err:
                row["check"] = {"ok": False, "detail": str(err)}
        results[name] = row
    failed = [n for n, r in results.items() if check and not r["check"]["ok"]]  # type: ignore[index]
    if as_json:
        typer.echo(json.dumps({"file": str(clusters_file(clusters)), "clusters": results}, indent=2, default=str))
    else:
        typer.echo(f"clusters in {clusters_file(clusters)}:")
        for name, row in results.items():
            status = ""
            if check:
                ok = row["check"]["ok"]  # type: ignore[index]
                status = "  [ok] " if ok else "  [FAILED] "
                status += str(row["check"]["detail"])  # type: ignore[index]
            typer.echo(f"  {name}: {row['description']}{status}")
    raise typer.Exit(1 if failed else 0)


def register(app: typer.Typer) -> None:
    """Add ``vw clusters`` to ``app``."""
    app.command("clusters")(clusters_cmd)
