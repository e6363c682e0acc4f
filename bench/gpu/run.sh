#!/usr/bin/env bash
# One prepared GPU run of every model stage: bash bench/gpu/run.sh [--cpu] OUT_DIR
#
# On the GPU machine (one H200; python3 = /opt/torch/.venv/bin/python3 with torch 2.11 +cu130,
# transformers 5.17; no torchcodec, maybe no FFmpeg, no network), from the repository root:
#
#   carry: [".gpu-payload"]           (built here first with: bash bench/gpu/prepare.sh)
#   command: bash bench/gpu/run.sh "$OUT/gpu"
#   timeout_s: 540                    (the script itself stops by 480 s: a second run fits in 15 min)
#
# What it does, in at most ~8 minutes (VW_GPU_TOTAL_S, default 470 s, including the install):
#   1. installs the payload: unpacks the wheels of .gpu-payload/wheels into $VW_GPU_PREFIX
#      (default /tmp/vw-gpu), wires PyAV's bundled FFmpeg 8 for torchcodec (bench/gpu/payload.py);
#   2. generates the test videos with PyAV/libx264 (720p H.264, GOP 250 and GOP 25; the 10-minute
#      files are a 60 s segment looped by packet copy: see bench/gpu/videos.py);
#   3. runs the stages, each in its own process under a time budget (bench/gpu/stages.py): V-JEPA 2
#      ViT-L, DINOv2-large at 1 fps, LLaVA-NeXT-Video-7B, then Qwen2.5-VL-7B with the time left;
#   4. writes OUT_DIR/report.json (every figure, goals beside them), OUT_DIR/stages/*.json and this
#      log, OUT_DIR/run.log; the videos and the saved model stay in $VW_GPU_PREFIX/work (not in OUT_DIR,
#      so that little comes back; a second run on the same machine reuses them).
# Exit status 0 when every stage finished (a figure below its goal is not a failure).
#
# --cpu: the dry run of the test suite (tests/test_gpu_run.py): tiny models, small videos, CPU, the
# packages of the running environment (no payload unpacked unless VW_GPU_INSTALL=1 and one exists).
# VW_PYTHON picks the interpreter (default python3).
set -euo pipefail

CPU=0
if [ "${1:-}" = "--cpu" ]; then CPU=1; shift; fi
if [ $# -ne 1 ]; then
  echo "usage: bash bench/gpu/run.sh [--cpu] OUT_DIR" >&2
  exit 2
fi
START=$(date +%s)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PY=${VW_PYTHON:-python3}
PREFIX=${VW_GPU_PREFIX:-${TMPDIR:-/tmp}/vw-gpu}
if [ "$CPU" = 1 ]; then TOTAL=${VW_GPU_TOTAL_S:-135}; else TOTAL=${VW_GPU_TOTAL_S:-470}; fi
LOG="$OUT/run.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1

echo "== bench/gpu/run.sh $([ "$CPU" = 1 ] && echo --cpu) $OUT"
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) host $(uname -n) cpus $(nproc) python $("$PY" -c 'import sys; print(sys.version.split()[0])')"
if command -v git >/dev/null 2>&1 && git rev-parse --git-dir >/dev/null 2>&1; then
  echo "== commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- bench udfs 2>/dev/null || echo ' (+ local changes in bench/ or udfs/)')"
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || true
fi

# 1. install
if [ "$CPU" = 0 ] && ! ls .gpu-payload/wheels/*.whl >/dev/null 2>&1; then
  echo "== WARNING: no payload in .gpu-payload/wheels (was carry [\".gpu-payload\"] passed? build it with"
  echo "== bash bench/gpu/prepare.sh); going on with whatever this python has installed"
fi
INSTALL_ARGS=(--wheels .gpu-payload/wheels --prefix "$PREFIX")
if [ "$CPU" = 1 ] && [ "${VW_GPU_INSTALL:-0}" != 1 ]; then INSTALL_ARGS+=(--use-installed); fi
EXPORTS=$("$PY" -m bench.gpu.payload install "${INSTALL_ARGS[@]}" 2>"$OUT/install.json") || {
  cat "$OUT/install.json"; echo "install failed" >&2; exit 3; }
eval "$EXPORTS"
echo "== install: $(cat "$OUT/install.json")"
echo "== PYTHONPATH=${PYTHONPATH:-} LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
"$PY" - <<'EOF' || true
import importlib
for name in ("torch", "torchcodec", "av", "pyarrow", "numpy", "pynvml"):
    try:
        mod = importlib.import_module(name)
        print(f"== {name} {getattr(mod, '__version__', '?')} from {getattr(mod, '__file__', '?')}")
    except Exception as err:  # noqa: BLE001
        print(f"== {name} NOT importable: {type(err).__name__}: {err}")
try:
    from torchcodec._core import ops
    print(f"== torchcodec FFmpeg major {ops.ffmpeg_major_version}: {ops.core_library_path}")
except Exception as err:  # noqa: BLE001
    print(f"== torchcodec core NOT loaded: {err}")
import torch
print(f"== cuda available {torch.cuda.is_available()}"
      + (f": {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
EOF

# 2-4. videos, stages, report (bench/gpu/run.py), inside what is left of the total
LEFT=$((TOTAL - ($(date +%s) - START)))
RUN_ARGS=(--out "$OUT" --deadline-s "$LEFT" --install-summary "$OUT/install.json" --work "$PREFIX/work")
if [ "$CPU" = 1 ]; then RUN_ARGS+=(--cpu); fi
if [ -n "${VW_GPU_ONLY:-}" ]; then RUN_ARGS+=(--only "$VW_GPU_ONLY"); fi
set +e
timeout --kill-after=5 $((LEFT + 3)) "$PY" -m bench.gpu.run "${RUN_ARGS[@]}"
RC=$?
set -e
echo "== exit $RC after $(($(date +%s) - START)) s; report: $OUT/report.json"
exit $RC
