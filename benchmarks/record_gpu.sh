#!/usr/bin/env bash
# The GPU check, for a session lent a CUDA machine (`run` tool): checks the CUDA provider
# path of the runtime (FP16 and uint8 I/O, cuDNN search) against the CPU and records CUDA
# latency, with a same-weights PyTorch CUDA baseline and the video pipeline on the GPU.
#
#   benchmarks/record_gpu.sh OUT_DIR MODEL.onnx [MODEL.onnx ...]
#
# Give it the FP32 model first (the CPU reference of the check), then variants exported here
# (the GPU machine lacks onnxsim): --fp16, --fp16 --fp16-io, --uint8-io, --fp16 --uint8-io
# (that last one ships: runtime/models/default_gpu.onnx). The video benchmark runs the first
# and the last model given.
# Needs onnxruntime-gpu (>= 1.27 for CUDA 13) importable as `onnxruntime`. Env: TORCH_CKPT
# (the checkpoint the models came from; default train/recipes/default_model.pt; empty: no
# PyTorch rows), PROVIDER (cuda; cpu dry-runs this script on a machine without a GPU).
set -euo pipefail
OUT=$1
shift
PROVIDER=${PROVIDER:-cuda}
TORCH_CKPT=${TORCH_CKPT-train/recipes/default_model.pt}
mkdir -p "$OUT"
python3 - "$PROVIDER" "$@" <<'PY'
import sys, numpy as np, onnxruntime as ort
from deblur.runtime import Deblurrer
from deblur.benchmarks.latency import photo
provider, models = sys.argv[1], sys.argv[2:]
print("onnxruntime", ort.__version__, ort.get_available_providers())
image = photo(1920, 1080)
crop = image[:256, :256]
cpu = Deblurrer(models[0], "cpu", tile=0)(crop)
for path in models:
    for tile in (0, 512):
        d = Deblurrer(path, provider, tile=tile)
        out = d(image)
        assert out.shape == image.shape and out.dtype == image.dtype
        small = Deblurrer(path, provider, tile=0)(crop)
        print(path, "tile", tile, "provider", d.provider, "io", d.io_dtype.__name__,
              f"max |{provider} - cpu fp32| on 256x256:", int(np.abs(small.astype(int) - cpu.astype(int)).max()))
PY
models=()
for m in "$@"; do models+=(-m "$m"); done
torch=()
[ -n "$TORCH_CKPT" ] && torch=(--torch "$TORCH_CKPT" --torch-device "$PROVIDER")
deblur-bench latency "${models[@]}" -p "$PROVIDER" -s 720p,1080p,4k -n 10 --warmup 3 "${torch[@]}" \
  --json "$OUT/latency.json"
# The pipeline's share of the model-only speed when the model is fast (the I/O is the limit).
# The first model (FP32, float I/O) and the last (the shipped GPU twin when given as asked above).
videos=("$1")
[ $# -gt 1 ] && videos+=("${@: -1}")
for m in "${videos[@]}"; do
  timeout 120 deblur-bench video -m "$m" -p "$PROVIDER" -s 1080p --frames 48 --repeats 2 \
    --json "$OUT/video_$(basename "$m" .onnx).json" || echo "video benchmark of $m failed or timed out (exit $?)"
done
