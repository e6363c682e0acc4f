"""Enter a Ray session on a defined cluster (an existing Ray cluster or a KubeRay cluster) for backfills.

The session's worker environment is one geneva manifest (see :mod:`manifests.environments`):
Ray's ``runtime_env`` carries its pinned packages and this project's packages, so the
UDFs registered in the tables unpickle on the workers. Stage UDFs carry the same manifest
(``@udf(manifest=...)``), which geneva checks against the session's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from manifests.clusters import ClusterSpec, geneva_cluster

# Worker log settings geneva's own cluster contexts pass to Ray.
_RAY_ENV = {
    "RAY_BACKEND_LOG_LEVEL": "info",
    "RAY_LOG_TO_DRIVER": "1",
    "RAY_ENABLE_RECORD_ACTOR_TASK_LOGGING": "0",
    "RAY_RUNTIME_ENV_LOG_TO_DRIVER_ENABLED": "true",
}


def _init_kwargs(spec: ClusterSpec, manifest: Any) -> dict[str, Any]:
    """Extra ``ray.init`` arguments: the shipped packages as paths, and with ``environment: image`` no pip.

    geneva lists its own package as a module object in ``py_modules``, which the Ray client
    cannot copy; the same packages given as directories can.
    """
    import geneva

    modules = [str(Path(geneva.__file__).resolve().parent), *manifest.py_modules]
    runtime_env: dict[str, Any] = {"env_vars": dict(spec.env_vars), "py_modules": modules}
    if spec.environment == "image":
        runtime_env["pip"] = None  # geneva would otherwise pip-install itself on every worker
    return {"runtime_env": runtime_env}


@contextlib.contextmanager
def cluster_session(spec: ClusterSpec, manifest: Any) -> Iterator[None]:
    """A Ray session on ``spec`` (type ``ray`` or ``kuberay``) whose workers run ``manifest``.

    ``ray``: connects to the running cluster at its address. ``kuberay``: geneva creates the
    RayCluster from the entry (with port forwarding unless disabled) and deletes it on exit,
    after its jobs finish.
    """
    from geneva.runners.ray._mgr import ray_cluster

    if spec.type == "ray":
        if spec.auth == "token":
            # The Ray client sends the cluster token (~/.ray/auth_token, RAY_AUTH_TOKEN[_PATH]) only in
            # token mode; Ray's own switch also refreshes its cached configuration.
            from ray._private.authentication.authentication_token_setup import _enable_token_auth

            _enable_token_auth()
        ctx = ray_cluster(
            addr=spec.address, use_portforwarding=False, manifest=manifest, extra_env=_RAY_ENV,
            log_to_driver=True, logging_level=logging.INFO, ray_init_kwargs=_init_kwargs(spec, manifest),
        )
    elif spec.type == "kuberay":
        from geneva.runners.ray.raycluster import ExitMode

        rc = geneva_cluster(spec).to_ray_cluster()
        rc.on_exit = ExitMode.DELETE
        rc.ray_init_kwargs = {**(rc.ray_init_kwargs or {}), **_init_kwargs(spec, manifest)}
        ctx = ray_cluster(
            ray_cluster=rc, use_portforwarding=spec.portforwarding, manifest=manifest, extra_env=_RAY_ENV,
            log_to_driver=True, logging_level=logging.INFO,
        )
    else:
        raise ValueError(f"{spec.where()}: cluster_session runs on 'ray' or 'kuberay' clusters, not {spec.type!r}")
    with ctx:
        yield
