#!/usr/bin/env bash
# The GPU check, for a session lent a CUDA machine (`run` tool): checks the CUDA provider
# path of the runtime (IOBinding, FP16 I/O, cuDNN search) and records CUDA latency.
#
#   benchmarks/record_gpu.sh MODEL_FP32.onnx MODEL_FP16.onnx [OUT_DIR]
#
# Needs onnxruntime-gpu (>= 1.27 for CUDA 13) importable as `onnxruntime`, e.g. installed with
# `pip install --no-deps --target .ort onnxruntime_gpu-*.whl` and PYTHONPATH=.ort.
set -euo pipefail
FP32=$1
FP16=$2
OUT=${3:-benchmarks/results/cuda}
mkdir -p "$OUT"
python - "$FP32" "$FP16" <<'PY'
import sys, numpy as np, onnxruntime as ort
from deblur.runtime import Deblurrer
print("onnxruntime", ort.__version__, ort.get_available_providers())
image = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
cpu = Deblurrer(sys.argv[1], "cpu", tile=0)(image[:256, :256])
for path in sys.argv[1:]:
    for tile in (0, 512):
        d = Deblurrer(path, "cuda", tile=tile)
        out = d(image)
        assert out.shape == image.shape and out.dtype == image.dtype
        small = Deblurrer(path, "cuda", tile=0)(image[:256, :256])
        print(path, "tile", tile, "provider", d.provider, "io", d.io_dtype.__name__,
              "max |cuda - cpu| on 256x256:", int(np.abs(small.astype(int) - cpu.astype(int)).max()))
PY
deblur-bench latency -m "$FP32" -m "$FP16" -p cuda,cpu -s 720p,1080p,4k -n 10 --warmup 3 --json "$OUT/latency.json"
