#!/usr/bin/env bash
# Get onnxruntime-gpu onto a lent GPU machine whose calls carry at most 64 MiB each.
#
#   benchmarks/gpu_wheel.sh pack [VERSION]   # here: .gpu/ort/part_0..3 (~50 MB each), ~3 min
#   benchmarks/gpu_wheel.sh install          # there, once all parts were carried
#
# The 1.31.1 cp312 wheel is 255 MB, its CUDA provider library 284 MB unpacked; xz -9e takes
# that to 185 MB, so the wheel travels in four ~50 MB parts, one per device call (carry
# ".gpu/ort/part_N"; parts carried earlier stay while the machine is warm), plus the tree.
# `install` replaces the CPU onnxruntime in the Python environment that has it (a throwaway
# machine), else installs under .gpu/ort/site for PYTHONPATH. Used on an H200 (2026-11-27):
# four part calls of ~1 s after a 60 s cold start; `install` ~15 s.
set -euo pipefail
mode=${1:?pack or install}
dir=.gpu/ort
case $mode in
pack)
  version=${2:-1.31.1}
  work=$(mktemp -d)
  pip download "onnxruntime-gpu==$version" --python-version 3.12 --platform manylinux_2_28_x86_64 \
    --only-binary=:all: --no-deps -q -d "$work"
  (cd "$work" && mkdir x && cd x && unzip -q ../*.whl)
  cuda=$work/x/onnxruntime/capi/libonnxruntime_providers_cuda.so
  xz -9e -T0 -c "$cuda" >"$work/cuda.xz"
  # TensorRT's provider is left out: it needs TensorRT, which these machines lack.
  tar cf - -C "$work/x" --exclude=libonnxruntime_providers_cuda.so \
    --exclude=libonnxruntime_providers_tensorrt.so onnxruntime | xz -9 -T0 >"$work/rest.tar.xz"
  mkdir -p "$dir" && rm -f "$dir"/part_*
  tar cf "$work/blob.tar" -C "$work" cuda.xz rest.tar.xz
  split -n 4 -d -a 1 "$work/blob.tar" "$dir/part_"
  rm -rf "$work"
  ls -l "$dir"/part_*
  ;;
install)
  site=$dir/site
  rm -rf "$site" && mkdir -p "$site"
  cat "$dir"/part_0 "$dir"/part_1 "$dir"/part_2 "$dir"/part_3 | tar xf - -C "$dir"
  tar xJf "$dir/rest.tar.xz" -C "$site"
  xz -d -T0 -c "$dir/cuda.xz" >"$site/onnxruntime/capi/libonnxruntime_providers_cuda.so"
  parent=$(python3 -c "import onnxruntime, os; print(os.path.dirname(os.path.dirname(onnxruntime.__file__)))" \
           2>/dev/null || true)
  if [ -n "$parent" ] && [ -w "$parent" ]; then
    rm -rf "$parent/onnxruntime" && cp -r "$site/onnxruntime" "$parent/"
    echo "onnxruntime-gpu replaced the CPU onnxruntime in $parent"
  else
    echo "installed under $site: export PYTHONPATH=$PWD/$site"
  fi
  PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/$site python3 -c \
    "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
  ;;
*) echo "usage: $0 pack [VERSION] | install" >&2; exit 2 ;;
esac
