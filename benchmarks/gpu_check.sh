#!/usr/bin/env bash
# The GPU check of issue 30 in one command, for a bare GPU machine with this repository
# copied over (no network): installs what the machine's image lacks from
# .gpu-wheels/site.tar.xz (made here by `make gpu-wheels`), writes a synthetic
# CIFAR-100-sized dataset in the cifar-100-python format, runs the measurements within a
# time budget (default 480 s), writes every raw output to one folder named by device and
# date, and prints the summary table last (benchmarks/gpu_summary.py).
#
#   benchmarks/gpu_check.sh [--budget SECONDS] [--results DIR] [--only STEP,STEP...]
#   benchmarks/gpu_check.sh --dry-run [--results DIR]   # tiny sizes, any machine (CPU)
#
# Steps, in this order (most needed first; each has its own time budget, cut to what is
# left of the total; a step stopped at its budget exits 124 and the next one runs):
#   env              versions, nvidia-smi, the imports raysweep needs
#   data             50,000 + 10,000 random images in cifar-100-python format
#   fusion_m{4,8,16} bench_fusion, compile off: fused array vs sequential vs packed
#   eca_fused        raysweep run ablations --group eca_kernel, 3 epochs, fuse: on
#   eca_separate     the same with fuse: off (trials packed by gpus_per_worker: auto)
#   epoch_time       bench_epoch_time, batch 128 and 1024, through the engine
#   agreement        bench_fused_agreement: bf16 fused vs separate final top-1, 4 seeds
#   fusion_m1        bench_fusion, 1 member, compile off
#   (--dry-run: 2 members, compile off only; GPU_CHECK_STEP_BUDGET seconds per step, 300)
# GPU_CHECK_RAY_ADDRESS=127.0.0.1:PORT: the steps that run studies join that Ray of this
# machine (`--local --address`) instead of starting one each (the test suite's dry run).
#   fusion_m{8,16,4,1}_compiled  bench_fusion --compile reduce-overhead
#   gpu_tests        pytest -m gpu (the GPU-only tests)
# Results: benchmarks/results/<gpu>-<YYYY-MM-DD>/ (or --results), one .txt per step,
# steps.tsv (step, exit status, seconds), the eca runs' records, summary.txt; with $OUT
# set (the device tool), a copy as $OUT/<folder>.tar.gz and $OUT/summary.txt.
set -u
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
DRY=0
BUDGET=480
RESULTS=""
ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run|--cpu) DRY=1 ;;
        --budget) BUDGET=$2; shift ;;
        --results) RESULTS=$2; shift ;;
        --only) ONLY=",$2," ; shift ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1' (allowed: --dry-run, --budget SECONDS, --results DIR, --only STEP,...)" >&2; exit 2 ;;
    esac
    shift
done
case "$BUDGET" in ''|*[!0-9]*) echo "gpu_check.sh: --budget '$BUDGET' is not a whole number of seconds" >&2; exit 2 ;; esac
START=$(date +%s)
DEADLINE=$((START + BUDGET))
RESERVE=15   # seconds kept for the summary and the copy to $OUT

if [ $DRY = 1 ]; then
    DEVICE=cpu-dryrun
else
    DEVICE=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 \
             | sed 's/^NVIDIA //; s/ .*//' | tr 'A-Z' 'a-z')
    if [ -z "$DEVICE" ]; then
        echo "gpu_check.sh: no GPU found (nvidia-smi); use --dry-run to rehearse on a CPU" >&2
        exit 2
    fi
fi
RESULTS=${RESULTS:-benchmarks/results/$DEVICE-$(date -u +%F)}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
: > "$RESULTS/steps.tsv"

# What the image lacks (Ray, tensorboardX, Optuna and their needs), unpacked once.
if ! "$PY" -c "import ray, tensorboardX, optuna" 2>/dev/null; then
    if [ ! -f .gpu-wheels/site.tar.xz ]; then
        echo "gpu_check.sh: Ray/tensorboardX/Optuna missing and no .gpu-wheels/site.tar.xz:" \
             "run 'make gpu-wheels' on the development machine and carry .gpu-wheels" >&2
        exit 3
    fi
    mkdir -p /tmp/raysweep-site
    if ! tar -xJf .gpu-wheels/site.tar.xz -C /tmp/raysweep-site; then
        echo "gpu_check.sh: .gpu-wheels/site.tar.xz could not be unpacked: run 'make gpu-wheels' again" >&2
        exit 3
    fi
    export PYTHONPATH=/tmp/raysweep-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1

# step NAME BUDGET CMD...: run CMD with its output in $RESULTS/NAME.txt, stopped at
# min(BUDGET, what is left of the total); skipped when --only leaves it out.
step() {
    local name=$1 budget=$2; shift 2
    if [ -n "$ONLY" ] && [[ "$ONLY" != *",$name,"* ]]; then return 0; fi
    local left=$((DEADLINE - RESERVE - $(date +%s)))
    if [ $left -lt 5 ]; then
        printf '%s\tnot run (total budget spent)\t0\n' "$name" >> "$RESULTS/steps.tsv"
        echo "[gpu_check] $name: not run, the total budget of $BUDGET s is spent"
        return 0
    fi
    [ $budget -gt $left ] && budget=$left
    echo "[gpu_check] $name (at most $budget s): $*"
    local begin=$(date +%s)
    timeout --kill-after=10 "$budget" "$@" > "$RESULTS/$name.txt" 2>&1
    local rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - begin ))" >> "$RESULTS/steps.tsv"
    echo "[gpu_check] $name: exit $rc after $(( $(date +%s) - begin )) s"
    tail -n 3 "$RESULTS/$name.txt" | sed 's/^/    /'
}

# Sizes: the GPU check's, or tiny ones that rehearse every step on a CPU.
if [ $DRY = 1 ]; then
    TRAIN=128; TEST=64; MEMBERS="2"; LAST=""; FUSION="--batch 16 --steps 2 --repeats 1"
    # One epoch, one batch size, a few batches: the dry run proves the steps and the
    # summary, not speed.
    ECA="--epochs 1 --seeds 2 --max-concurrent 2 --set train_size=128 --set test_size=64 --set batch_size=32"
    EPOCH="--epochs 1 --batches 32 --loader-workers 0"
    AGREE="--members 2 --epochs 1 --train-size 128 --test-size 64 --batch 32"
    COMPILE=""; B=${GPU_CHECK_STEP_BUDGET:-300}
else
    TRAIN=50000; TEST=10000; MEMBERS="4 8 16"; LAST="1"; FUSION="--batch 128 --steps 30 --repeats 3"
    ECA="--epochs 3"
    EPOCH="--epochs 3 --batches 128 1024"
    AGREE="--members 4 --epochs 3 --train-size 20000 --test-size 5000 --batch 128"
    COMPILE="8 16 4 1"; B=0
fi
budget() { [ $B -gt 0 ] && echo $B || echo "$1"; }   # dry run: one generous budget each
RAY_AT=${GPU_CHECK_RAY_ADDRESS:+--address $GPU_CHECK_RAY_ADDRESS}

step env "$(budget 45)" bash -c "date -u; nvidia-smi 2>&1 | head -20; \"$PY\" -c '
import sys, torch, ray, tensorboardX, optuna, timm, torchvision
import raysweep.cli, raysweep.training.fusion, raysweep.engine.driver
print(\"python\", sys.version.split()[0], \"torch\", torch.__version__, \"cuda\", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else \"\", \"torchvision\", torchvision.__version__,
      \"ray\", ray.__version__, \"timm\", timm.__version__)'"
if [ -z "$ONLY" ] && ! tail -n 1 "$RESULTS/env.txt" | grep -q '^python '; then
    echo "gpu_check.sh: the environment is not usable (see $RESULTS/env.txt); nothing else ran" >&2
    cat "$RESULTS/env.txt" >&2
    exit 3
fi
DATA=$WORK/data
step data "$(budget 30)" "$PY" -c "
from pathlib import Path; from raysweep.datasets.writers import write_cifar100
print(write_cifar100(Path('$DATA'), $TRAIN, $TEST))"
CIFAR="--set dataset=cifar100 --set data_dir=$DATA --set data_checksums=false"

for k in $MEMBERS; do
    step "fusion_m$k" "$(budget 45)" "$PY" -m benchmarks.bench_fusion --members "$k" $FUSION
done
for side in fused separate; do
    fuse=$([ $side = fused ] && echo on || echo off)
    step "eca_$side" "$(budget 90)" "$PY" -m raysweep.cli run ablations --group eca_kernel \
        --local $RAY_AT --name "eca_$side" --storage "$WORK/runs" $ECA $CIFAR --set "resources.fuse=$fuse"
    [ -d "$WORK/runs/eca_$side/records" ] && cp -r "$WORK/runs/eca_$side/records" "$RESULTS/eca_${side}_records"
done
step epoch_time "$(budget 70)" "$PY" -m benchmarks.bench_epoch_time --data-dir "$DATA" $EPOCH $RAY_AT
step agreement "$(budget 45)" "$PY" -m benchmarks.bench_fused_agreement $AGREE
for k in $LAST; do
    step "fusion_m$k" "$(budget 30)" "$PY" -m benchmarks.bench_fusion --members "$k" $FUSION
done
for k in $COMPILE; do
    step "fusion_m${k}_compiled" "$(budget 75)" "$PY" -m benchmarks.bench_fusion --members "$k" \
        $FUSION --compile reduce-overhead
done
# Only the modules that have GPU tests are collected (collecting all of tests/ imports
# every module's dependencies: ~10 s of CPU for nothing).
GPU_TEST_FILES=$(grep -rl --include='test_*.py' 'mark\.gpu' tests | sort)
step gpu_tests "$(budget 90)" "$PY" -m pytest -m gpu -q -p no:cacheprovider ${GPU_TEST_FILES:-tests}

"$PY" -m benchmarks.gpu_summary "$RESULTS" > "$RESULTS/summary.txt" 2>&1
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
    tar -czf "$OUT/$(basename "$RESULTS").tar.gz" -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")"
    cp "$RESULTS/summary.txt" "$OUT/summary.txt"
fi
echo "[gpu_check] raw outputs in $RESULTS ($(( $(date +%s) - START )) s of $BUDGET)"
cat "$RESULTS/summary.txt"
