#!/usr/bin/env bash
# Reproduces the default model shipped in runtime/models/default.onnx (and default_gpu.onnx).
#
#   train/recipes/default_model.sh [SHARED_DATA_DIR] [RUN_DIR]
#
# Data split (see ../shared/README.md): train on CBSD68 + Sun_Hays80 + Urban100 with
# camera-shake blur synthesised on the fly; validate on Set5 + Set14 (fixed seed), which the
# model never sees. Content-only training (L1 + FFT, no critic): on a 2-core CPU the WGAN
# critic would cost 5x the steps for a perceptual gain that PSNR does not measure.
# Resumable at any point: run the same command again and it continues from latest.pt.
# On a GPU the same script runs faster; raise STEPS for a better model.
set -euo pipefail
DATA=${1:-../shared/data/sharp}
RUN=${2:-runs/default_model}
# The shipped model, five legs of this script (each decays the LR to 0 again by its end):
# four resume runs/default_model: STEPS=9000 (float32, 53 min on the 2-core CPU), AMP=1
# STEPS=20000 (bf16; the shipped run switched at step 10750, 0.17 s/step), AMP=1 STEPS=35000,
# AMP=1 STEPS=45000; the fifth starts a new run from those weights without dropout (70 min):
#   STEPS=30000 AMP=1 DROPOUT=0 SEED=1 INIT=runs/default_model/checkpoints/latest.pt \
#     train/recipes/default_model.sh ../shared/data/sharp runs/default_model_ft
# and its generator went to train/recipes/default_model.pt (deblur.train.checkpoint.
# save_generator_only). Two legs on one H200 followed (batch 32 at 256 px, bf16), each a
# device call with .gpu/sharp.tar carried (see gpu_session.sh):
#   INIT=train/recipes/default_model.pt FIXED_STEPS=1614 train/recipes/gpu_session.sh .gpu/sharp.tar 9 $OUT
#   INIT=<that generator.pt> SEED=1 FIXED_STEPS=8000 WORKERS=14 train/recipes/gpu_session.sh .gpu/sharp.tar 9 $OUT
# (the first took its 1614 steps from the calibration). Two more on an H200 in a later
# session, at a lower LR, each from the previous leg's generator.pt (the first from the
# step-84614 weights that default_model.pt held then, commit 330713d):
#   LR=2e-4 INIT=train/recipes/default_model.pt FIXED_STEPS=8000 SEED=2 WORKERS=14 \
#     train/recipes/gpu_session.sh .gpu/sharp.tar 9 $OUT      (376 s in all)
#   LR=2e-4 INIT=<that generator.pt> FIXED_STEPS=6000 SEED=3 WORKERS=14 \
#     train/recipes/gpu_session.sh .gpu/sharp.tar 9 $OUT      (304 s)
# and the last one's generator.pt became train/recipes/default_model.pt (train_step 98614).
# That ngf-16 model was then grown to ngf 32 (same output at the start, see experiments.md)
# and trained three more legs on an H200 (one session, 13 minutes of device time), each from
# the previous leg's generator.pt, the first from the ngf-16 step-98614 weights, which
# train/recipes/default_model.pt held at commit 437b38d (that path holds the ngf-32 ones now):
#   git show 437b38d:train/recipes/default_model.pt > ngf16.pt
#   INIT=ngf16.pt NGF=32 WARMUP=500 LR=2e-4 SEED=7 FIXED_STEPS=10709 \
#     WORKERS=14 train/recipes/gpu_session.sh .gpu/sharp.tar 9 $OUT     (425 s in all)
#   INIT=<that generator.pt> NGF=32 WARMUP=200 LR=1e-4 SEED=8 FIXED_STEPS=5705 WORKERS=14 \
#     train/recipes/gpu_session.sh .gpu/sharp.tar 5 $OUT               (255 s)
#   INIT=<that generator.pt> NGF=32 WARMUP=100 LR=5e-5 SEED=9 FIXED_STEPS=2000 WORKERS=14 \
#     train/recipes/gpu_session.sh .gpu/sharp.tar 2 $OUT               (98 s)
# (the first two took their steps from the calibration). The last generator.pt is
# train/recipes/default_model.pt now (ngf 32, 6 blocks, train_step 117028), exported to
# runtime/models/default.onnx with --fp16-storage (FP32 compute, half the file), and to
# runtime/models/default_gpu.onnx with --fp16 --uint8-io (what Deblurrer loads on CUDA):
#   deblur-export train/recipes/default_model.pt runtime/models/default.onnx --fp16-storage --overwrite
#   deblur-export train/recipes/default_model.pt runtime/models/default_gpu.onnx --fp16 --uint8-io --overwrite
STEPS=${STEPS:-9000}
NGF=${NGF:-16}
BLOCKS=${BLOCKS:-6}
# AMP=1: bf16 autocast, ~1.6x faster on CPUs with AVX512-BF16/AMX and on GPUs.
AMP=${AMP:-0}
# A new run (RUN has no checkpoint yet) may start from trained weights (INIT=CKPT), without
# the papers' Dropout(0.5) (DROPOUT=0) and with another data order (SEED). A run that exists
# keeps its own: setting them then is an error, not a silent resume.
args=()
if [ -f "$RUN/checkpoints/latest.pt" ]; then
  if [ -n "${INIT:-}${DROPOUT:-}${SEED:-}" ]; then
    echo "error: $RUN already holds a run; INIT, DROPOUT and SEED only start new ones (use another RUN_DIR)" >&2
    exit 2
  fi
  args=(--resume)
else
  args=(--seed "${SEED:-0}")
  if [ "${DROPOUT:-1}" = 0 ]; then args+=(--no-dropout); else args+=(--dropout); fi
  [ -n "${INIT:-}" ] && args+=(--init-from "$INIT")
fi
[ "$AMP" = 1 ] && args+=(--amp)
# COMPILE=1: torch.compile the generator, 1.15x per step here for ngf 16, 1.7x for ngf 32
# (experiments.md); the recorded legs ran without it.
[ "${COMPILE:-0}" = 1 ] && args+=(--compile)

deblur-train "${args[@]}" \
  --data "$DATA/CBSD68" --data "$DATA/Sun_Hays80" --data "$DATA/Urban100" \
  --val "$DATA/Set5" --val "$DATA/Set14" --val-crop 192 --val-count 18 \
  --out "$RUN" --recipe deblurgan --ngf "$NGF" --n-blocks "$BLOCKS" \
  --content l1+fft --adv-weight 0 --lr 3e-4 \
  --steps "$STEPS" --batch-size 8 --crop 128 --workers 1 \
  --log-every 50 --val-every 500 --checkpoint-every 250 --snapshot-every 100000

deblur-export "$RUN/checkpoints/latest.pt" "$RUN/default.onnx" --fp16-storage --overwrite
echo "exported $RUN/default.onnx (this script's CPU stage; the shipped model is the ngf-32 one grown"
echo "from it on a GPU, see the header: compare with deblur-bench quality before replacing runtime/models/default.onnx)"
