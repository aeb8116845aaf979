#!/usr/bin/env bash
# Regenerates the recorded CPU results in benchmarks/results/cpu/ (see README "Results").
#
#   benchmarks/record_cpu.sh [CHECKPOINT] [SHARED_DATA_DIR]
#
# Models: the default model (CHECKPOINT, default train/recipes/default_model.pt: the shipped
# weights, exported as runtime/models/default.onnx is: FP32 with FP16 storage) in FP32 and INT8, and the
# paper-size DeblurGAN (ngf 64, 9 blocks; latency does not depend on the weights, so an
# untrained one with a fixed seed stands in until trained weights exist). Run on a quiet machine.
set -euo pipefail
CKPT=${1:-train/recipes/default_model.pt}
DATA=${2:-../shared/data/sharp}
OUT=benchmarks/results/cpu
WORK=runs/bench
mkdir -p "$OUT" "$WORK"

python - "$WORK/deblurgan_paper_untrained.pt" <<'PY'
import sys, torch
from deblur.train.checkpoint import save_checkpoint
from deblur.train.models import create_generator
torch.manual_seed(0)
args = {"ngf": 64, "n_blocks": 9, "dropout": True}
save_checkpoint(sys.argv[1], create_generator("resnet_generator", **args), arch="resnet_generator",
                arch_args=args, step=0, meta={"note": "untrained: latency only"})
PY
deblur-export "$WORK/deblurgan_paper_untrained.pt" "$WORK/deblurgan_paper.onnx" --overwrite
deblur-export "$CKPT" "$WORK/default.onnx" --fp16-storage --overwrite
deblur-export "$CKPT" "$WORK/default_int8.onnx" --int8 --overwrite

deblur-bench quality -d "$DATA/Set5" -d "$DATA/Set14" --condition both \
  -m "$WORK/default.onnx" -m "$WORK/default_int8.onnx" --tile 0 --out "$OUT"
deblur-bench quality -d "$DATA/Set5" -d "$DATA/Set14" --condition both --baseline identity \
  -m "$WORK/default.onnx" --tile 0 --self-ensemble 8 --out "$OUT/self_ensemble"
deblur-bench latency -m "$WORK/default.onnx" -m "$WORK/default_int8.onnx" --torch "$CKPT" \
  -s 256,480p,720p,1080p -n 5 --warmup 2 --json "$OUT/latency-default.json"
deblur-bench latency -m "$WORK/deblurgan_paper.onnx" --torch "$WORK/deblurgan_paper_untrained.pt" \
  -s 256,480p,720p,1080p -n 3 --warmup 1 --json "$OUT/latency-deblurgan-paper.json"
deblur-bench tiling -m "$WORK/default.onnx" -s 1080p,4k --tile 512,1024 -n 1 --warmup 0 \
  --photo "$DATA/Urban100/img_001.jpg" --json "$OUT/tiling-default.json"
deblur-bench video -m "$WORK/default.onnx" -s 480p --frames 24 --repeats 2 --out "$OUT"
