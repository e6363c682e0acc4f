"""Cluster definitions, stage manifests and the cluster placement of stage UDFs (nothing is started)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from manifests.clusters import (
    LOCAL_SPEC,
    ClusterConfigError,
    ClusterUnavailableError,
    check_cluster,
    geneva_cluster,
    get_cluster,
    load_clusters,
    parse_address,
    size_bytes,
)
from manifests.environments import build_manifest, environment_for_stage, environments, stage_manifest
from manifests.versions import PINS

KUBERAY = """
clusters:
  gke-l4:
    type: kuberay
    namespace: video
    kube_config: {kube}
    num_gpus: 1
    memory: 24Gi
    head: {{image: head:1, cpus: 2, memory: 6Gi}}
    workers:
      - name: l4
        image: worker:1
        cpus: 8
        gpus: 1
        memory: 30Gi
        min_workers: 1
        max_workers: 6
        node_selector: {{cloud.google.com/gke-accelerator: nvidia-l4}}
        tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
      - {{name: cpu, cpus: 4, gpus: 0, memory: 8Gi}}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clusters.yaml"
    path.write_text(text)
    return path


def test_default_file_is_valid() -> None:
    specs = load_clusters()
    assert specs["local"].is_local
    assert all(s.name == n for n, s in specs.items())


def test_kuberay_entry_translates_to_geneva_cluster(tmp_path: Path) -> None:
    path = _write(tmp_path, KUBERAY.format(kube=tmp_path / "kubeconfig"))
    spec = get_cluster("gke-l4", path)
    assert spec.memory_bytes() == 24 * 1024**3
    cluster = geneva_cluster(spec)
    assert cluster.cluster_type.value == "KUBE_RAY"
    kr = cluster.kuberay
    assert kr.namespace == "video"
    assert (kr.head_group.image, kr.head_group.num_cpus, kr.head_group.memory) == ("head:1", 2, "6Gi")
    gpu, cpu = kr.worker_groups
    assert (gpu.name, gpu.image, gpu.num_gpus, gpu.num_cpus, gpu.memory) == ("l4", "worker:1", 1, 8, "30Gi")
    assert (gpu.min_replicas, gpu.max_replicas) == (1, 6)
    assert gpu.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert gpu.tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert (cpu.name, cpu.num_gpus) == ("cpu", 0)
    assert cluster.as_dict()["kuberay"]["use_portforwarding"] is True


def test_kuberay_check_needs_kube_config(tmp_path: Path) -> None:
    kube = tmp_path / "kubeconfig"
    spec = get_cluster("gke-l4", _write(tmp_path, KUBERAY.format(kube=kube)))
    pytest.importorskip("kubernetes")
    with pytest.raises(ClusterUnavailableError, match="no kube config"):
        check_cluster(spec)
    kube.write_text("apiVersion: v1\n")
    assert str(kube) in check_cluster(spec)


def test_ray_entry_and_reachability(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        path = _write(tmp_path, f"clusters:\n  lab: {{type: ray, address: 'ray://127.0.0.1:{port}', num_gpus: 0.5}}\n")
        spec = get_cluster("lab", path)
        assert (spec.num_gpus, spec.environment) == (0.5, "manifest")
        assert "accepts connections" in check_cluster(spec)
        assert geneva_cluster(spec).ray_address == f"ray://127.0.0.1:{port}"
    with pytest.raises(ClusterUnavailableError, match="unreachable"):
        check_cluster(spec, timeout=0.5)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{type: ray}", "needs an 'address'"),
        ("{type: ray, address: 'http://x'}", "expected ray://HOST:PORT"),
        ("{type: gpu}", "'type' must be one of"),
        ("{type: ray, address: 'h:1', memory: lots}", "expected a size"),
        ("{type: ray, address: 'h:1', colour: red}", "unknown keys colour"),
        ("{type: ray, address: 'h:1', environment: docker}", "'environment' must be one of"),
        ("{type: kuberay}", "needs 'workers'"),
        ("{type: kuberay, workers: [{name: a, min_workers: 3, max_workers: 1}]}", "exceeds max_workers"),
        ("{type: kuberay, workers: [{name: a, gpus: -1}]}", "at least 0"),
    ],
)
def test_invalid_entries_name_the_problem(tmp_path: Path, entry: str, message: str) -> None:
    path = _write(tmp_path, f"clusters:\n  bad: {entry}\n")
    with pytest.raises(ClusterConfigError, match=message) as err:
        load_clusters(path)
    assert "'bad'" in str(err.value) and str(path) in str(err.value)


def test_unknown_name_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "clusters:\n  lab: {type: ray, address: 'h:1'}\n")
    monkeypatch.setenv("VW_CLUSTERS", str(path))
    assert get_cluster("lab").address == "h:1"
    with pytest.raises(ClusterConfigError, match="unknown cluster 'x'.*lab, local"):
        get_cluster("x")
    assert get_cluster(None) is LOCAL_SPEC
    with pytest.raises(ClusterConfigError, match="does not exist"):
        load_clusters(tmp_path / "missing.yaml")


def test_parsers() -> None:
    assert parse_address("ray://10.0.0.1:10001") == ("10.0.0.1", 10001)
    assert parse_address("head:6379") == ("head", 6379)
    assert parse_address("ray://head") is None
    assert size_bytes("512Mi", "m") == 512 * 1024**2 and size_bytes("2G", "m") == 2 * 10**9


def test_stage_manifests_pin_versions_from_one_table() -> None:
    for stage in ("video_embedding", "frame_features", "detections_llava", "scenarios"):
        manifest = stage_manifest(stage)
        assert f"torch=={PINS['torch']}" in manifest.pip
        assert all("==" in r for r in manifest.pip)
        assert [Path(m).name for m in manifest.py_modules] == ["udfs", "tables", "jobs", "manifests"]
    assert f"bitsandbytes=={PINS['bitsandbytes']}" in stage_manifest("detections_qwen").pip
    assert "bitsandbytes" not in " ".join(stage_manifest("video_embedding").pip)
    image_only = build_manifest(list(environments().values()), install=False)
    assert image_only.pip == [] and image_only.py_modules
    with pytest.raises(KeyError, match="no worker environment"):
        environment_for_stage("nope")


def test_on_cluster_sets_gpu_memory_and_keeps_local_untouched(tmp_path: Path) -> None:
    from jobs.backfill import BackfillOptions, on_cluster
    from udfs.stages import get_stage

    stage = get_stage("video_embedding")
    assert on_cluster([stage], LOCAL_SPEC) == [stage]
    path = _write(tmp_path, KUBERAY.format(kube=tmp_path / "k"))
    (placed,) = on_cluster([stage], get_cluster("gke-l4", path))
    opts = BackfillOptions(profile="tiny")
    (steps_col, steps), (pooled_col, pooled) = placed.udfs(opts, stage.spec(opts))
    assert (steps.num_gpus, steps.memory) == (1, 24 * 1024**3)
    assert steps.manifest is not None and steps.manifest.name == "vw-video-embedding"
    assert not pooled.num_gpus and pooled.memory is None
    (steps_col2, steps2), _ = placed.udfs(BackfillOptions(profile="tiny", num_gpus=0.5), stage.spec(opts))
    assert steps2.num_gpus == 0.5
    (_, local_steps), _ = stage.udfs(opts, stage.spec(opts))
    assert local_steps.manifest is None and not local_steps.num_gpus


def test_gpu_all_plan_and_report_parsing() -> None:
    from bench.gpu_all import commands, last_json, metrics

    gpu = commands(cpu=False)
    assert list(gpu) == ["video_embedding", "frame_features", "detections"]
    assert "--full-config" in gpu["frame_features"] and "cuda" in gpu["detections"]
    assert "cpu" in commands(cpu=True, only=["detections"])["detections"]
    with pytest.raises(SystemExit, match="unknown benchmark"):
        commands(cpu=True, only=["nope"])
    doc = last_json('log line\n{"a": 1}\nmore\n{"runs": [{"batch": 4, "clips_per_s": 2.5, "name": "x"}]}\n')
    assert metrics(doc) == {"runs[0].batch": 4, "runs[0].clips_per_s": 2.5}
    with pytest.raises(ValueError, match="no JSON"):
        last_json("nothing here")
