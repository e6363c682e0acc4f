"""Cluster definitions: which Ray the backfills run on, read from one YAML file users edit.

The file (default ``manifests/clusters.yaml``; ``$VW_CLUSTERS`` or ``--clusters FILE``
override it) maps names to entries of three types::

    clusters:
      local: {type: local}                      # embedded Ray started for one command (always defined)
      lab:                                      # an existing Ray cluster
        type: ray
        address: ray://10.0.0.5:10001           # Ray client address (or host:port of the GCS)
        auth: token                             # the cluster uses Ray token auth (RAY_AUTH_TOKEN[_PATH])
        environment: image                      # image: workers already have the pinned packages
        num_gpus: 1                             # per worker of a GPU stage (default 1)
        memory: 16Gi                            # per worker of a GPU stage
      gke-l4:                                   # a KubeRay cluster geneva creates for each command
        type: kuberay
        namespace: geneva
        head: {image: ..., cpus: 4, memory: 8Gi}
        workers:
          - {name: gpu, image: ..., cpus: 8, gpus: 1, memory: 32Gi, min_workers: 0, max_workers: 4,
             node_selector: {cloud.google.com/gke-accelerator: nvidia-l4},
             tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]}

:func:`check_cluster` validates reachability without starting anything;
:func:`geneva_cluster` translates an entry into geneva's cluster definition.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from udfs.errors import VwError, choices

DEFAULT_FILE = Path(__file__).resolve().parent / "clusters.yaml"
ENV_VAR = "VW_CLUSTERS"
LOCAL = "local"
ClusterType = Literal["local", "ray", "kuberay"]
WorkerEnvironment = Literal["manifest", "image"]
KubeConfigMethod = Literal["local", "in_cluster", "eks_auth"]
AuthMode = Literal["none", "token"]
TYPES = choices(ClusterType)
ENVIRONMENTS = choices(WorkerEnvironment)
CONFIG_METHODS = choices(KubeConfigMethod)
AUTH_MODES = choices(AuthMode)


class ClusterConfigError(VwError, ValueError):
    """The clusters file is missing, unreadable or holds an invalid entry."""


class ClusterUnavailableError(VwError, RuntimeError):
    """A cluster entry is valid but cannot be used from here (unreachable, no kube config)."""


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T)?\s*$")
_UNITS = {None: 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def size_bytes(value: str | int, what: str) -> int:
    """Bytes of a Kubernetes-style size (``16Gi``, ``512Mi``, ``2G`` or a plain number of bytes)."""
    if isinstance(value, bool):
        raise ClusterConfigError(f"{what}: expected a size like 16Gi, got {value!r}")
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ClusterConfigError(f"{what}: expected a size like 16Gi or 512Mi, got {value!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


@dataclass(frozen=True)
class WorkerPool:
    """One KubeRay worker group."""

    name: str
    image: str | None = None
    cpus: int = 8
    gpus: int = 1
    memory: str = "32Gi"
    min_workers: int = 0
    max_workers: int = 4
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, str]] = field(default_factory=list)
    env_vars: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HeadNode:
    """The KubeRay head pod."""

    image: str | None = None
    cpus: int = 4
    memory: str = "8Gi"
    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, str]] = field(default_factory=list)
    env_vars: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterSpec:
    """One named cluster entry (``type`` is ``local``, ``ray`` or ``kuberay``).

    ``num_gpus`` and ``memory`` are the defaults for the model column of GPU stages
    (``--num-gpus`` overrides the GPUs); ``environment`` says whether workers install the
    stage manifests' pinned packages (``manifest``) or already have them (``image``).
    """

    name: str
    type: ClusterType
    source: str
    address: str | None = None
    namespace: str = "geneva"
    service_account: str = "geneva-service-account"
    config_method: KubeConfigMethod = "local"
    kube_config: str | None = None
    portforwarding: bool = True
    head: HeadNode = field(default_factory=HeadNode)
    workers: tuple[WorkerPool, ...] = ()
    num_gpus: float = 1.0
    memory: str | None = None
    environment: WorkerEnvironment = "manifest"
    env_vars: dict[str, str] = field(default_factory=dict)
    auth: AuthMode = "none"

    @property
    def is_local(self) -> bool:
        """True for the embedded local Ray."""
        return self.type == "local"

    def memory_bytes(self) -> int | None:
        """Host memory per worker of a GPU stage, in bytes (``None`` when not set)."""
        return None if self.memory is None else size_bytes(self.memory, f"{self.where()}: memory")

    def where(self) -> str:
        """``cluster NAME in FILE``, for messages."""
        return f"cluster {self.name!r} in {self.source}"


LOCAL_SPEC = ClusterSpec(name=LOCAL, type="local", source="(built in)", num_gpus=0.0)

_COMMON = {"type", "num_gpus", "memory", "environment", "env_vars"}
_ALLOWED = {
    "local": {"type"},
    "ray": _COMMON | {"address", "auth"},
    "kuberay": _COMMON | {"namespace", "service_account", "config_method", "kube_config", "portforwarding",
                          "head", "workers"},
}
_POOL_KEYS = {"name", "image", "cpus", "gpus", "memory", "min_workers", "max_workers", "node_selector",
              "tolerations", "env_vars"}
_HEAD_KEYS = {"image", "cpus", "memory", "node_selector", "tolerations", "env_vars"}


def clusters_file(path: str | Path | None = None) -> Path:
    """The clusters file in force: ``path``, else ``$VW_CLUSTERS``, else ``manifests/clusters.yaml``."""
    chosen = path or os.environ.get(ENV_VAR) or DEFAULT_FILE
    return Path(chosen).expanduser()


def _check_keys(entry: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ClusterConfigError(f"{what}: unknown keys {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _typed(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ClusterConfigError(f"{what}: expected {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    return value


def _str_map(value: Any, what: str) -> dict[str, str]:
    _typed(value, dict, what)
    return {str(k): str(v) for k, v in value.items()}


def _tolerations(value: Any, what: str) -> list[dict[str, str]]:
    _typed(value, list, what)
    out = []
    for i, t in enumerate(value):
        item = _str_map(t, f"{what}[{i}]")
        if "key" not in item and item.get("operator") != "Exists":
            raise ClusterConfigError(f"{what}[{i}]: a toleration needs a 'key' (or operator: Exists)")
        out.append(item)
    return out


def _count(value: Any, what: str, minimum: int = 0) -> int:
    _typed(value, int, what)
    if value < minimum:
        raise ClusterConfigError(f"{what}: must be at least {minimum}, got {value}")
    return int(value)


def _pool(raw: Any, what: str) -> WorkerPool:
    _typed(raw, dict, what)
    _check_keys(raw, _POOL_KEYS, what)
    if "name" not in raw:
        raise ClusterConfigError(f"{what}: a worker pool needs a 'name'")
    pool = WorkerPool(
        name=str(raw["name"]),
        image=str(raw["image"]) if raw.get("image") else None,
        cpus=_count(raw.get("cpus", 8), f"{what}.cpus", 1),
        gpus=_count(raw.get("gpus", 1), f"{what}.gpus"),
        memory=str(raw.get("memory", "32Gi")),
        min_workers=_count(raw.get("min_workers", 0), f"{what}.min_workers"),
        max_workers=_count(raw.get("max_workers", 4), f"{what}.max_workers", 1),
        node_selector=_str_map(raw.get("node_selector", {}), f"{what}.node_selector"),
        tolerations=_tolerations(raw.get("tolerations", []), f"{what}.tolerations"),
        env_vars=_str_map(raw.get("env_vars", {}), f"{what}.env_vars"),
    )
    size_bytes(pool.memory, f"{what}.memory")
    if pool.min_workers > pool.max_workers:
        raise ClusterConfigError(f"{what}: min_workers {pool.min_workers} exceeds max_workers {pool.max_workers}")
    return pool


def _head(raw: Any, what: str) -> HeadNode:
    _typed(raw, dict, what)
    _check_keys(raw, _HEAD_KEYS, what)
    head = HeadNode(
        image=str(raw["image"]) if raw.get("image") else None,
        cpus=_count(raw.get("cpus", 4), f"{what}.cpus", 1),
        memory=str(raw.get("memory", "8Gi")),
        node_selector=_str_map(raw["node_selector"], f"{what}.node_selector") if "node_selector" in raw else None,
        tolerations=_tolerations(raw.get("tolerations", []), f"{what}.tolerations"),
        env_vars=_str_map(raw.get("env_vars", {}), f"{what}.env_vars"),
    )
    size_bytes(head.memory, f"{what}.memory")
    return head


def _ray_address(value: Any, what: str) -> str:
    address = str(_typed(value, str, what)).strip()
    if parse_address(address) is None:
        raise ClusterConfigError(f"{what}: expected ray://HOST:PORT or HOST:PORT, got {address!r}")
    return address


def parse_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a Ray address (``ray://host:port`` or ``host:port``), ``None`` when malformed."""
    m = re.fullmatch(r"(?:ray://)?(\[[^\]]+\]|[^:/\s]+):(\d{1,5})", address)
    if not m or not 0 < int(m.group(2)) < 65536:
        return None
    return m.group(1).strip("[]"), int(m.group(2))


def parse_entry(name: str, raw: Any, source: str) -> ClusterSpec:
    """Validate one entry of the clusters file and return its :class:`ClusterSpec`."""
    what = f"cluster {name!r} in {source}"
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name):
        raise ClusterConfigError(f"{what}: names are lower-case letters, digits and '-' (a Kubernetes name)")
    _typed(raw, dict, what)
    kind = raw.get("type")
    if kind not in TYPES:
        raise ClusterConfigError(f"{what}: 'type' must be one of {', '.join(TYPES)}, got {kind!r}")
    _check_keys(raw, _ALLOWED[kind], what)
    if kind == "local":
        return ClusterSpec(name=name, type="local", source=source, num_gpus=0.0)
    environment = raw.get("environment", "manifest")
    if environment not in ENVIRONMENTS:
        raise ClusterConfigError(f"{what}: 'environment' must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}")
    num_gpus = float(_typed(raw.get("num_gpus", 1), (int, float), f"{what}: num_gpus"))
    if num_gpus < 0:
        raise ClusterConfigError(f"{what}: num_gpus must be >= 0, got {num_gpus:g}")
    common: dict[str, Any] = dict(
        name=name, type=kind, source=source, num_gpus=num_gpus, environment=environment,
        memory=str(raw["memory"]) if raw.get("memory") is not None else None,
        env_vars=_str_map(raw.get("env_vars", {}), f"{what}: env_vars"),
    )
    if common["memory"] is not None:
        size_bytes(common["memory"], f"{what}: memory")
    if kind == "ray":
        if "address" not in raw:
            raise ClusterConfigError(f"{what}: a 'ray' cluster needs an 'address' (ray://HOST:PORT)")
        auth = raw.get("auth", "none")
        if auth not in AUTH_MODES:
            raise ClusterConfigError(f"{what}: 'auth' must be one of {', '.join(AUTH_MODES)}, got {auth!r}")
        return ClusterSpec(address=_ray_address(raw["address"], f"{what}: address"), auth=auth, **common)
    method = raw.get("config_method", "local")
    if method not in CONFIG_METHODS:
        raise ClusterConfigError(f"{what}: 'config_method' must be one of {', '.join(CONFIG_METHODS)}, got {method!r}")
    workers_raw = raw.get("workers")
    if not workers_raw:
        raise ClusterConfigError(f"{what}: a 'kuberay' cluster needs 'workers' (a list of worker pools)")
    _typed(workers_raw, list, f"{what}: workers")
    workers = tuple(_pool(w, f"{what}: workers[{i}]") for i, w in enumerate(workers_raw))
    names = [w.name for w in workers]
    if len(set(names)) != len(names):
        raise ClusterConfigError(f"{what}: worker pool names must be unique, got {', '.join(names)}")
    return ClusterSpec(
        namespace=str(raw.get("namespace", "geneva")),
        service_account=str(raw.get("service_account", "geneva-service-account")),
        config_method=method,
        kube_config=str(raw["kube_config"]) if raw.get("kube_config") else None,
        portforwarding=bool(_typed(raw.get("portforwarding", True), bool, f"{what}: portforwarding")),
        head=_head(raw.get("head", {}), f"{what}: head"),
        workers=workers,
        **common,
    )


def load_clusters(path: str | Path | None = None) -> dict[str, ClusterSpec]:
    """All cluster entries of the clusters file in force (``local`` is always defined)."""
    import yaml

    file = clusters_file(path)
    if not file.is_file():
        raise ClusterConfigError(f"clusters file {file} does not exist (set {ENV_VAR} or pass --clusters FILE)")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as err:
        raise ClusterConfigError(f"clusters file {file} is not valid YAML: {err}") from err
    if not isinstance(data, dict) or set(data) - {"clusters"}:
        raise ClusterConfigError(f"clusters file {file}: expected one top-level key 'clusters' (a mapping)")
    entries = data.get("clusters") or {}
    if not isinstance(entries, dict):
        raise ClusterConfigError(f"clusters file {file}: 'clusters' must map names to entries")
    specs = {LOCAL: LOCAL_SPEC}
    for name, raw in entries.items():
        specs[str(name)] = parse_entry(str(name), raw, str(file))
    if specs[LOCAL].type != "local":
        raise ClusterConfigError(f"clusters file {file}: the name 'local' is reserved for the embedded Ray")
    return specs


def get_cluster(name: str | None, path: str | Path | None = None) -> ClusterSpec:
    """The entry named ``name`` (``None`` or ``local``: the embedded Ray, without reading any file)."""
    if name in (None, LOCAL) and path is None:
        return LOCAL_SPEC
    specs = load_clusters(path)
    spec = specs.get(name or LOCAL)
    if spec is None:
        raise ClusterConfigError(
            f"unknown cluster {name!r}: {clusters_file(path)} defines {', '.join(sorted(specs))}"
        )
    return spec


def kube_config_path(spec: ClusterSpec) -> Path:
    """The kube config file a ``config_method: local`` KubeRay entry uses."""
    if spec.kube_config:
        return Path(spec.kube_config).expanduser()
    first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(first).expanduser() if first else Path.home() / ".kube" / "config"


def check_cluster(spec: ClusterSpec, timeout: float = 2.0) -> str:
    """Check that ``spec`` can be used from here without starting anything; returns what was checked.

    ``ray``: a TCP connection to the address; ``kuberay``: the kube config (or in-cluster
    service account) and the ``kubernetes`` client. Raises :class:`ClusterUnavailableError`.
    """
    if spec.type == "local":
        return "local Ray (the warm one shared by commands, or one per command with VW_LOCAL_RAY=per-command)"
    if spec.type == "ray":
        host, port = parse_address(spec.address or "") or ("", 0)
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except OSError as err:
            raise ClusterUnavailableError(f"{spec.where()}: {spec.address} is unreachable ({err})") from err
        return f"{spec.address} accepts connections"
    try:
        import kubernetes  # noqa: F401
    except ImportError as err:
        raise ClusterUnavailableError(f"{spec.where()}: the 'kubernetes' Python package is not installed") from err
    if spec.config_method == "in_cluster":
        if not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise ClusterUnavailableError(
                f"{spec.where()}: config_method in_cluster, but this process does not run in a Kubernetes pod")
        return "in-cluster service account"
    if spec.config_method == "eks_auth":
        if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            raise ClusterUnavailableError(f"{spec.where()}: config_method eks_auth needs AWS_REGION")
        return "EKS authentication"
    config = kube_config_path(spec)
    if not config.is_file():
        raise ClusterUnavailableError(
            f"{spec.where()}: no kube config at {config} (run `gcloud container clusters get-credentials ...` "
            "or set KUBECONFIG / kube_config)")
    return f"kube config {config}"


def geneva_cluster(spec: ClusterSpec) -> Any:
    """geneva's cluster definition (``GenevaCluster``) for ``spec``, built with geneva's builders.

    Nothing is started; ``conn.define_cluster(name, geneva_cluster(spec))`` stores it.
    """
    from geneva.cluster import K8sConfigMethod
    from geneva.cluster.builder import (
        ExternalRayClusterBuilder,
        KubeRayClusterBuilder,
        LocalRayClusterBuilder,
    )

    if spec.type == "local":
        return LocalRayClusterBuilder.create(spec.name).build()
    if spec.type == "ray":
        return ExternalRayClusterBuilder.create(spec.name, spec.address).build()
    builder = (
        KubeRayClusterBuilder.create(spec.name)
        .namespace(spec.namespace)
        .config_method(K8sConfigMethod(spec.config_method.upper()))
        .portforwarding(spec.portforwarding)
        .head_group(
            image=spec.head.image, cpus=spec.head.cpus, memory=spec.head.memory,
            service_account=spec.service_account, node_selector=spec.head.node_selector,
            tolerations=spec.head.tolerations, env_vars={**spec.env_vars, **spec.head.env_vars},
        )
    )
    for pool in spec.workers:
        worker = KubeRayClusterBuilder.gpu_worker(pool.gpus) if pool.gpus else KubeRayClusterBuilder.cpu_worker()
        worker.name(pool.name).cpus(pool.cpus).memory(pool.memory).service_account(spec.service_account)
        worker.min_replicas(pool.min_workers).max_replicas(pool.max_workers).replicas(pool.min_workers)
        worker.env_vars({**spec.env_vars, **pool.env_vars}).tolerations(pool.tolerations)
        if pool.image:
            worker.image(pool.image)
        if pool.node_selector:
            worker.node_selector(pool.node_selector)
        builder.add_worker_group(worker.build())
    return builder.build()
