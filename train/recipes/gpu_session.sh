#!/usr/bin/env bash
# Train the default-model recipe on a rented GPU for a fixed number of minutes, in one call,
# and leave a small generator-only checkpoint to bring back (export and benchmark it at home:
# the GPU machine lacks onnxsim and onnxconverter-common, and needs nothing else).
#
#   train/recipes/gpu_session.sh DATA_TAR MINUTES OUT_DIR
#
# DATA_TAR holds sharp/{CBSD68,Sun_Hays80,Urban100,Set5,Set14} (make it here with
# `tar cf .gpu/sharp.tar -C ../shared/data sharp`, 51 MB, and carry .gpu). A 300-step
# calibration run measures the speed, then STEPS is set so the real run, with its LR decay,
# ends inside MINUTES. Settings (env): NGF, BLOCKS, BATCH (32), CROP (256), LR (3e-4),
# WORKERS (12), DEVICE (cuda; cpu for a dry run of this script), AMP (1: bf16; 0 for CPUs
# without native bf16), DROPOUT (0: none, a small gain on the compact model, see
# experiments.md; 1: the paper's 0.5), INIT (a generator checkpoint to start from, e.g. a
# carried generator.pt of an earlier session, with the same NGF/BLOCKS, or a smaller one that
# the trainer grows into NGF/BLOCKS with its output unchanged), WARMUP (0: steps of LR ramp
# at the start; a few hundred for an INIT run, see experiments.md), SEED (0: data order
# and blur draws), FIXED_STEPS (skip the calibration and train exactly this many steps, to
# repeat a recorded run; a run that would outlast MINUTES is stopped with a checkpoint 20 s
# before they are up; not STEPS, which default_model.sh reads), CHANNELS_LAST and COMPILE (0;
# 1 adds --channels-last / --compile; COMPILE=auto calibrates a second time with --compile
# --channels-last and trains with whichever fits more steps into the time left, compilation
# included, not with FIXED_STEPS; `deblur-bench train-speed --device cuda` compares all four
# variants on its own), COARSE (0: blocks of a coarse branch at 1/8 resolution, grown silent
# onto an INIT without one), FFT_WEIGHT (0.1: the spectral term of the L1 + FFT loss, see
# experiments.md 2026-11-28) and TRAIN_ONLY (a parameter-name prefix to train alone, e.g.
# coarse. to train only that branch on frozen weights).
# Writes to OUT_DIR:
# generator.pt (generator-only checkpoint; over 15 MiB it comes as generator.pt.part_* plus
# its sha256, since the device tool returns files of at most 16 MiB), val.csv,
# train_tail.log, calibration.txt.
# A call carries at most 64 MiB with the working tree (~17 MB): split the 51-MB DATA_TAR
# (`split -b 24M .gpu/sharp.tar .gpu/sharp.tar.part_`), carry one part per call to the warm
# machine (ignored files stay between calls; an INIT over ~15 MB also in a call of its own)
# and name the tar as usual: DATA_TAR .gpu/sharp.tar, absent there, is read from its parts.
set -euo pipefail
TAR=$1
MINUTES=$2
OUT=$3
NGF=${NGF:-16}
BLOCKS=${BLOCKS:-6}
BATCH=${BATCH:-32}
CROP=${CROP:-256}
LR=${LR:-3e-4}
WORKERS=${WORKERS:-12}
DEVICE=${DEVICE:-cuda}
AMP=${AMP:-1}
DROPOUT=${DROPOUT:-0}
INIT=${INIT:-}
SEED=${SEED:-0}
WARMUP=${WARMUP:-0}
STEPS=${FIXED_STEPS:-}
if [ -n "$STEPS" ] && [ "${COMPILE:-0}" = auto ]; then
  echo "error: COMPILE=auto decides by calibrating, FIXED_STEPS skips that; to repeat a run say what it" \
    "used: COMPILE=1 CHANNELS_LAST=1 (calibration.txt's \"(fast)\") or COMPILE=0" >&2
  exit 2
fi
extra=()
[ "$AMP" = 1 ] && extra+=(--amp)
[ "${CHANNELS_LAST:-0}" = 1 ] && extra+=(--channels-last)
[ "${COMPILE:-0}" = 1 ] && extra+=(--compile)  # auto: decided by the calibration below
if [ "$DROPOUT" = 1 ]; then extra+=(--dropout); else extra+=(--no-dropout); fi
[ -n "$INIT" ] && extra+=(--init-from "$INIT")
[ "${COARSE:-0}" != 0 ] && extra+=(--coarse-blocks "$COARSE")
[ -n "${TRAIN_ONLY:-}" ] && extra+=(--train-only "$TRAIN_ONLY")
[ -n "${FFT_WEIGHT:-}" ] && extra+=(--fft-weight "$FFT_WEIGHT")
started=$(date +%s)
work=$(mktemp -d /tmp/deblur_gpu.XXXX)
mkdir -p "$OUT"
if [ ! -e "$TAR" ] && compgen -G "$TAR.part_*" >/dev/null; then  # carried in parts (see above)
  cat "$TAR".part_* | tar xf - -C "$work"
else
  tar xf "$TAR" -C "$work"
fi
DATA=$work/sharp
# The machine has torch, numpy, OpenCV and click; the package itself goes in without deps.
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$work/pip.log" 2>&1 || { cat "$work/pip.log"; exit 1; }

train() {  # train RUN_DIR STEPS [extra args]
  local run=$1 steps=$2
  shift 2
  # A safety net for FIXED_STEPS runs and slow calibrations: 20 s before MINUTES are up the
  # trainer gets SIGTERM, finishes its step, checkpoints, and the generator is still copied out.
  local left=$(( MINUTES * 60 - ($(date +%s) - started) - 20 ))
  if [ -n "${LIMIT:-}" ] && [ "$LIMIT" -lt "$left" ]; then left=$LIMIT; fi  # a calibration's own cap
  timeout --signal=TERM "$(( left > 1 ? left : 1 ))" deblur-train --data "$DATA/CBSD68" --data "$DATA/Sun_Hays80" --data "$DATA/Urban100" \
    --val "$DATA/Set5" --val "$DATA/Set14" --val-crop 192 --val-count 18 \
    --out "$run" --recipe deblurgan --ngf "$NGF" --n-blocks "$BLOCKS" \
    --content l1+fft --adv-weight 0 --lr "$LR" --warmup "$WARMUP" "${extra[@]}" --device "$DEVICE" \
    --steps "$steps" --batch-size "$BATCH" --crop "$CROP" --seed "$SEED" --workers "$WORKERS" \
    --log-every 100 --checkpoint-every 1000 --snapshot-every 1000000 "$@"
}

CAL=${CAL:-300}
calibrate() {  # calibrate NAME [flags]: sets sps (s/step) and overhead (s) of a CAL-step run
  local name=$1 t0
  shift
  t0=$(date +%s)
  train "$work/calibrate_$name" "$CAL" --val-every 1000000 --warmup 0 "$@" >>"$OUT/calibration.txt" 2>&1 \
    || { tail -n 5 "$OUT/calibration.txt" >&2; return 1; }
  # Median of the second half's logged step times (warm caches, cuDNN tuned, compiled); each is
  # the mean over its 100 steps, data-loader stalls included (single steps were 0.02 s or 0.5 s
  # on an H200). What the run spent besides its steps (start-up, data scan, workers,
  # compilation) the real run spends again.
  sps=$(python3 - "$work/calibrate_$name/metrics.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if '"step_time"' in line]
print(statistics.median(r["step_time"] for r in rows[len(rows) // 2:]))
PY
  ) || return 1  # (set -e does not reach into a function called from `if` or `||`)
  python3 -c "import sys; sys.exit(not $sps > 0)" || return 1
  overhead=$(python3 -c "print(max(0, int($(date +%s) - $t0 - $CAL * $sps)))") || return 1
  echo "calibration $name: $sps s/step, ${overhead}s start-up" | tee -a "$OUT/calibration.txt"
}
steps_left() {  # steps that fit the time left at $sps after $overhead; 10 % and 45 s are held
  # back for validation, the last checkpoint and the copy to OUT_DIR
  python3 -c "print(max(100, int(($MINUTES * 60 - $(( $(date +%s) - started )) - $overhead - 45) * 0.9 / $sps)))"
}
if [ -z "$STEPS" ]; then
  : >"$OUT/calibration.txt"
  calibrate plain || exit 1
  choice=plain
  if [ "${COMPILE:-0}" = auto ]; then
    # Try torch.compile + NHWC too and keep whichever trains more steps in the time left,
    # compilation included (the second calibration costs a minute or so; experiments.md).
    plain_sps=$sps plain_overhead=$overhead
    fast_steps=0
    # At most a third of the time left: a slow compilation must leave the plain run its time.
    if LIMIT=$(( (MINUTES * 60 - ($(date +%s) - started)) / 3 )) calibrate fast --compile --channels-last; then
      fast_steps=$(steps_left)
    else
      echo "calibration fast failed (above): training plain" | tee -a "$OUT/calibration.txt"
    fi
    sps=$plain_sps overhead=$plain_overhead
    if [ "$fast_steps" -gt "$(steps_left)" ]; then
      extra+=(--compile --channels-last)
      choice=fast
    fi
  fi
  if [ "$choice" = fast ]; then STEPS=$fast_steps; else STEPS=$(steps_left); fi
  echo "training $STEPS steps ($choice) after $(( $(date +%s) - started ))s" | tee -a "$OUT/calibration.txt"
else
  echo "FIXED_STEPS=$STEPS given: no calibration" | tee "$OUT/calibration.txt"
fi

if [ "$WARMUP" -gt $(( STEPS / 2 )) ]; then  # a short calibrated run: keep its constant-LR half
  WARMUP=$(( STEPS / 2 ))
  echo "WARMUP cut to $WARMUP steps (half of the $STEPS-step run)" | tee -a "$OUT/calibration.txt"
fi
run=$work/run
train "$run" "$STEPS" --val-every $(( STEPS / 10 > 0 ? STEPS / 10 : 1 )) >"$work/train.log" 2>&1 || status=$?
tail -n 40 "$work/train.log" >"$OUT/train_tail.log"
cp "$run/val.csv" "$OUT/" 2>/dev/null || true
rm -f "$OUT"/generator.pt.part_* "$OUT/generator.pt.sha256"  # an earlier call's parts would join in
python3 -c "from deblur.train.checkpoint import save_generator_only as s; s('$run/checkpoints/latest.pt', '$OUT/generator.pt')"
# The device tool brings back files of at most 16 MiB: ngf 48 (17.7 MB) and up come back in parts.
if [ "$(stat -c %s "$OUT/generator.pt")" -gt $(( 15 * 1024 * 1024 )) ]; then
  (cd "$OUT" && sha256sum generator.pt >generator.pt.sha256 && split -b 15M generator.pt generator.pt.part_ \
    && rm generator.pt)
  echo "generator.pt split in $OUT: join with cat generator.pt.part_* > generator.pt (sha256sum -c generator.pt.sha256)" \
    | tee -a "$OUT/calibration.txt"
fi
echo "done in $(( $(date +%s) - started )) s: $(ls "$OUT" | grep "^generator" | paste -sd " ") in $OUT" | tee -a "$OUT/calibration.txt"
exit "${status:-0}"
