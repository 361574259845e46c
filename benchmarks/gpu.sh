#!/usr/bin/env bash
# imnet's prepared device run: on ONE H100/H200 with imnet installed, at most ~8 minutes, then a
# status table and the figures against the goals. Run from the repository root:
#
#   bash benchmarks/gpu.sh                         # the defaults below (one GPU)
#   T=16 bash benchmarks/gpu.sh                    # loader threads per process (unset: imnet's defaults)
#   OUT=/tmp/gpu-run BUDGET=420 bash benchmarks/gpu.sh
#
# On a CPU-only machine the same script runs with small settings (tests/test_gpu_script.py does
# DEV=cpu CLASSES=2 ...); GPU-only stages then say "skip". Every stage has its own time limit, a
# stage that fails does not stop the others, and a stage that would start after BUDGET seconds is
# skipped and a stage's own limit is cut to the time left, so the whole run ends within BUDGET
# (+ the tables) and the table always comes. Stages run in the order of what the goals need first. Figures are RESULT lines (benchmarks/gpu_checks.py), collected
# in $OUT/results.txt; the last table compares them with the goals of issue 14.
set -uo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-/tmp/imnet-gpu}             # scratch folder (wiped at the start)
DEV=${DEV:-cuda}
AMP=${AMP:-bf16}                       # bf16, fp16 or none, for eval and train
EVAL_AMP=$AMP; [[ $AMP == none ]] && EVAL_AMP=off
T=${T:-}                               # loader threads/workers per process; empty = imnet's defaults
CLASSES=${CLASSES:-20}; PER_CLASS=${PER_CLASS:-150}; VAL=${VAL:-500}; JPEG=${JPEG:-"500 375"}
R50=${R50:-resnet50}; VN=${VN:-vanillanet_9}; IMG=${IMG:-224}; RESIZE=${RESIZE:-256}
TBS=${TBS:-256}                        # train loader / synthetic-step batch (resnet50); vanillanet: half
EBS=${EBS:-256}                        # eval loader batch (images; /8 for 10 crops)
BENCH_IMAGES=${BENCH_IMAGES:-512}; BENCH_IMAGES_10=${BENCH_IMAGES_10:-128}; BENCH_BS=${BENCH_BS:-64}
BENCH_JPEG=${BENCH_JPEG:-500x375}      # benchmarks/eval.py's generated JPEGs
EPOCHS=${EPOCHS:-3}
STEPS=${STEPS:-30}                     # timed synthetic steps (after 8 warm-up steps)
BUDGET=${BUDGET:-460}                  # seconds for all stages: a stage's limit is cut to what is left
GPU_TESTS=${GPU_TESTS:-1}              # 0: skip the pytest stage
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 IMG RESIZE TBS EBS T STEPS R50 VN
[[ -z $T ]] && unset T
rm -rf "$OUT" && mkdir -p "$OUT"
RESULTS=$OUT/results.txt; : > "$RESULTS"
CHECKS="$PY benchmarks/gpu_checks.py"
WORKERS=(); [[ -n ${T:-} ]] && WORKERS=(--workers "$T")
ON_GPU=0; [[ $DEV == cuda* ]] && ON_GPU=1
STATUS=()
START=$SECONDS

stage() {  # stage NAME LIMIT_S CMD...: run with a time limit, tee its output, keep RESULT lines
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET - (SECONDS - START) ))
  if (( left < 20 )); then
    STATUS+=("$(printf '%-14s %-6s %5s  %s' "$name" skip "-" "over the ${BUDGET}s budget")"); return
  fi
  (( limit > left )) && limit=$left
  echo; echo "=================== $name (limit ${limit}s, at $((SECONDS - START))s)"
  local t0=$SECONDS log=$OUT/$name.log
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$log"; local rc=${PIPESTATUS[0]}
  grep '^RESULT ' "$log" >> "$RESULTS"
  local note=ok; (( rc == 124 || rc == 137 )) && note="timed out"; (( rc != 0 && rc != 124 && rc != 137 )) && note=failed
  [[ $name == gpu-tests ]] && note="$note ($(grep -Eo '[0-9]+ (passed|failed|skipped|error)[^=]*' "$log" | tail -1))"
  STATUS+=("$(printf '%-14s rc=%-3s %4ss  %s' "$name" "$rc" "$((SECONDS - t0))" "$note")")
}
gpu_stage() {  # only on a GPU
  if (( ON_GPU )); then stage "$@"; else STATUS+=("$(printf '%-14s %-6s %5s  %s' "$1" skip "-" "no GPU (DEV=$DEV)")"); fi
}

# 0. the machine and what imnet would use on it
stage info 60 bash -c "$PY -m imnet info; nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.max.sm --format=csv 2>/dev/null || true"

# a. fake ImageNet-sized data (500x375 JPEGs), prepared by imnet prep
stage fake 150 "$PY" -m imnet fake --out "$OUT/src" --classes "$CLASSES" --train-per-class "$PER_CLASS" \
      --val "$VAL" --image-size $JPEG --no-quirks
stage prep 120 "$PY" -m imnet prep --src "$OUT/src" --dst "$OUT/data" --checksums "$OUT/src/checksums.md5"

# b. loaders alone: DALI train (rrc, classic; rrc without fancy upsampling too) and eval (1, 10 crops)
stage loaders 150 $CHECKS loaders "$OUT/data" "$DEV"
gpu_stage mem-defaults 60 $CHECKS memory "$OUT/data" "$DEV" defaults

# c. training, resnet50: the synthetic step rate, then imnet train (DALI, AMP, channels_last)
stage steps-r50 120 $CHECKS steps "$R50" "$TBS" "$DEV" "$AMP"
stage train-r50 240 "$PY" -m imnet train --arch "$R50" --recipe classic --data "$OUT/data" --out "$OUT/run-r50" --epochs "$EPOCHS" \
      --batch-size "$TBS" --lr 0.01 --aug rrc --img-size "$IMG" --amp "$AMP" --channels-last --device "$DEV" \
      "${WORKERS[@]}" --no-progress

# d. eval loop vs pure forward vs a timm-style loop (random weights)
stage bench-eval 200 "$PY" benchmarks/eval.py --models "$R50,$VN" --crops 1 10 --images "$BENCH_IMAGES" \
      --images-10crop "$BENCH_IMAGES_10" --image-size "$BENCH_JPEG" --batch-size "$BENCH_BS" "${WORKERS[@]}" --loader dali --device "$DEV" \
      --amp "$EVAL_AMP" --repeats 2 --result-lines

# e. imnet eval end to end: 1/5/10 crops in one pass, store, reports (random weights; auto loader)
"$PY" -c "import torch, imnet.zoo as z; torch.manual_seed(0); torch.save(z.create_model('$R50', num_classes=$CLASSES).state_dict(), '$OUT/$R50.pth')"
stage eval-cli 150 "$PY" -m imnet eval --arch "$R50" --weights "$OUT/$R50.pth" --data "$OUT/data" --crops 1 5 10 \
      --amp "$EVAL_AMP" --device "$DEV" --batch-size "$BENCH_BS" "${WORKERS[@]}" --img-size "$IMG" --out "$OUT/eval"
[[ -f $OUT/eval/predictions.h5 ]] && "$PY" -c "
import sys; from imnet.eval.store import read_model
i = read_model(sys.argv[1], sys.argv[2]).info
print('RESULT eval_cli.images_per_sec', i['images_per_sec'], 'img/s', 'steady, 10-crop pass')
print('RESULT eval_cli.startup_s', i['startup_s'], 's')
print('stored:', {k: i.get(k) for k in ('loader', 'loader_workers', 'amp', 'device', 'cudnn_benchmark', 'tf32', 'compile', 'images_per_sec_with_startup')})
" "$OUT/eval/predictions.h5" "$R50" | tee -a "$OUT/eval-cli.log" | grep '^RESULT ' >> "$RESULTS"

# f. the gpu-marked tests: zoo (bf16 autocast + channels_last vs CPU fp32, VanillaNet fusion), eval
#    (DALI mixed + bf16 + channels_last + torch.compile vs the torchvision reference), loaders
#    (nvJPEG with fancy upsampling vs the CPU twin; one train pipeline for all epochs on the GPU)
if (( GPU_TESTS )); then
  stage gpu-tests 200 "$PY" -m pytest -q -ra -p no:cacheprovider -m gpu tests/test_zoo_gpu.py \
        tests/test_eval_runner.py tests/test_data_loaders.py
fi

# g. pixels, the other memory figures, vanillanet training
stage pixels 90 $CHECKS pixels "$OUT/data" "$DEV"
# GPU memory of DALI pipelines, each in a fresh process
gpu_stage mem-T2 45 $CHECKS memory "$OUT/data" "$DEV" T2
gpu_stage mem-T16 45 $CHECKS memory "$OUT/data" "$DEV" T16
gpu_stage mem-B256 45 $CHECKS memory "$OUT/data" "$DEV" B256
gpu_stage mem-nohints 45 $CHECKS memory "$OUT/data" "$DEV" nohints

stage steps-vn 120 $CHECKS steps "$VN" $((TBS / 2)) "$DEV" "$AMP"
stage train-vn 200 "$PY" -m imnet train --arch "$VN" --recipe classic --data "$OUT/data" --out "$OUT/run-vn" --epochs 2 \
      --batch-size $((TBS / 2)) --lr 0.01 --aug rrc --img-size "$IMG" --amp "$AMP" --channels-last --device "$DEV" \
      "${WORKERS[@]}" --no-progress
for run in r50:$R50 vn:$VN; do
  dir=$OUT/run-${run%%:*}
  if [[ -f $dir/summary.csv ]]; then
    echo "-- $dir/summary.csv (images_per_sec: train time incl. loader waits; epoch 1 also cuDNN autotuning)"
    cat "$dir/summary.csv"
    $CHECKS train-rate "$dir" "${run#*:}" | tee -a "$RESULTS"
    "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print({k: r.get(k) for k in ('loader','loader_workers','pipeline_builds','amp','cudnn_benchmark','fp32_precision')})" "$dir/run.json"
  fi
done

echo; echo "=================== status ($((SECONDS - START)) s; budget $BUDGET s)"
printf '%s\n' "${STATUS[@]}"
echo; echo "=================== figures and goals ($RESULTS)"
$CHECKS summary "$RESULTS"
