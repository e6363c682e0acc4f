#!/usr/bin/env bash
# Build the payload that bench/gpu/run.sh installs on the bare GPU machine (no index, no network).
#
#   bash bench/gpu/prepare.sh            # -> .gpu-payload/wheels/*.whl + .gpu-payload/MANIFEST.txt
#
# The payload (git-ignored: /.gpu-payload/) travels with the working tree as a `carry` path:
#   torchcodec 0.17.0, cp312 manylinux_2_28, CUDA 13 build (the version udfs/decode.py is written
#       for: Demuxer / ColorConverter; its README lists 0.12 .. 0.16 as compatible with torch >= 2.11
#       and the extension uses torch's stable C ABI (aoti_torch_* symbols, no c10/at C++ symbols), so it
#       loads into the GPU machine's torch 2.11 +cu130; 0.11 is the torch-2.11-only release but lacks
#       the Demuxer API the UDFs decode with)
#   av 18.1.0 (PyAV), abi3 manylinux_2_28: bundles FFmpeg 8 (libavcodec 62, libavformat 62, libavutil 60,
#       libswscale 9, libswresample 6, libavfilter 11, libavdevice 62) with libx264 and the CUVID/NVDEC
#       glue, which is exactly the FFmpeg major that torchcodec's libtorchcodec_core8.so links against;
#       bench/gpu/payload.py adds the soname links. It also encodes the test videos (libx264).
#   nvidia-ml-py: pynvml, for torch.cuda.utilization() (NVML busy samples).
#   diffusers 0.42.1 (the video_latents stage's CogVideoX VAE) and requests with its dependencies,
#       which diffusers imports and which transformers 5 / huggingface-hub 1 no longer pull in.
# Not carried because the GPU machine has them: torch, torchvision, transformers, numpy, pyarrow,
# pillow, pyyaml, fsspec, safetensors, tokenizers (a transformers dependency). Not needed at all:
# lancedb / lance / geneva / ray (the bench calls the UDF classes directly).
#
# Total budget: the working tree plus the carried payload must stay under 64 MiB; this script checks.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=${VW_PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
DEST=.gpu-payload/wheels
PACKAGES=(torchcodec==0.17.0 av==18.1.0 nvidia-ml-py==13.615.71 diffusers==0.42.1 requests==2.34.2 urllib3==2.8.0
          idna==3.21 charset-normalizer==3.5.3 certifi==2026.10.19.post1)
LIMIT_MIB=64

mkdir -p "$DEST"
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$DEST" "${PACKAGES[@]}"

# Keep only the pinned wheels (an older download of another version would travel too).
for f in "$DEST"/*.whl; do
  keep=0
  for spec in "${PACKAGES[@]}"; do
    name=${spec%%==*}; ver=${spec##*==}
    case "$(basename "$f")" in "${name//-/_}-${ver}-"*|"${name}-${ver}-"*) keep=1 ;; esac
  done
  [ "$keep" = 1 ] || { echo "removing stale $(basename "$f")"; rm -f "$f"; }
done

payload=$(du -sb .gpu-payload | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total=$((payload + tree))
{
  echo "# bench/gpu payload, built $(date -u +%Y-%m-%dT%H:%MZ) by bench/gpu/prepare.sh"
  (cd "$DEST" && sha256sum ./*.whl && du -b ./*.whl)
  echo "payload_bytes $payload"
  echo "tree_bytes $tree"
  echo "total_bytes $total (limit $((LIMIT_MIB * 1024 * 1024)))"
} > .gpu-payload/MANIFEST.txt
cat .gpu-payload/MANIFEST.txt
if [ "$total" -gt $((LIMIT_MIB * 1024 * 1024)) ]; then
  echo "payload + working tree = $total bytes: over ${LIMIT_MIB} MiB" >&2
  exit 1
fi
echo "ok: carry .gpu-payload ($((payload / 1024 / 1024)) MiB; with the tree $((total / 1024 / 1024)) MiB of ${LIMIT_MIB})"
