#!/usr/bin/env bash
# Several refits of M and G at once on a lent GPU (scripts/train_default_gpu.sh refit, each in its own process
# on the one GPU), to measure what a GPU's budget buys the neutral faces: longer refits, larger batches and the
# realism term over many steps (MODEL_CARD.md experiment 27).
#
#   here:   bash scripts/train_default_gpu.sh pack            # .gpu/train_pack.npz + .gpu/refit_init.safetensors
#   there:  bash scripts/gpu_refit_sweep.sh                    # with the device tool, carry .gpu
#   here:   evaluate $OUT/<name>/last.safetensors (scripts/neutral_compare.py, scripts/eval_spans.py)
#
# VARIANTS: space-separated NAME:STEPS:BATCH:PAIRS:SEED[:VAR=VALUE,...] (the refit's schedule length, stills
# per step, video pairs per FaceCycle step, seed, and more train_default.sh variables, e.g. REAL_W=0.3);
# MINUTES caps every run (a run stopped early says so in logs.txt: its schedule did not finish).
# The default: the shipped recipe (does the GPU reproduce the CPU's refit?); 1,500 steps at 128 stills and 64
# pairs, two seeds (on the CPU, 300 such steps striped the faces: MODEL_CARD.md experiment 27); the same with
# experiment 10's realism term (a patch discriminator beside G), which 300 CPU steps left too weak to keep
# stripes away, at 0.3 and at 1.0 with a faster discriminator; and 1,500 steps at the shipped batch with it.
# Writes $OUT/<name>/last.safetensors (8 MB each: the device tool returns at most 8 files, 64 MiB, so at most
# 7 variants) and $OUT/logs.txt (each run's output and log.csv, nvidia-smi, wall times).
# DEVICE=cpu with tiny STEPS is a dry run of the same path (tests/test_gpu_scripts.py).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
MINUTES=${MINUTES:-6.5}
RUNS=${RUNS:-gpu_runs}
VARIANTS=${VARIANTS:-"r300s0:300:32:16:0 b1500s0:1500:128:64:0 b1500s1:1500:128:64:1 b1500r03:1500:128:64:0:REAL_W=0.3 b1500r1:1500:128:64:0:REAL_W=1.0,REAL_LR=1e-3 l1500r03:1500:32:16:0:REAL_W=0.3"}
LOG=$OUT/logs.txt
header() {
  mkdir -p "$OUT" "$RUNS"
  { echo "# gpu_refit_sweep $(date -u +%FT%TZ) DEVICE=${DEVICE:-cuda} MINUTES=$MINUTES"; echo "# variants: $VARIANTS"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "# no nvidia-smi"
  python3 -c "import torch; print('# torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  nproc | sed 's/^/# cpus /'; } > "$LOG" 2>&1
}
for v in $VARIANTS; do  # every variant checked before any starts
    IFS=: read -r name steps batch pairs seed extra <<< "$v"
    [[ $name =~ ^[A-Za-z0-9_.-]+$ && $steps =~ ^[0-9]+$ && $batch =~ ^[0-9]+$ && $pairs =~ ^[0-9]+$ && $seed =~ ^[0-9]+$ ]] \
        || { echo "gpu_refit_sweep.sh: '$v' is not NAME:STEPS:BATCH:PAIRS:SEED[:VAR=VALUE,...]" >&2; exit 2; }
    IFS=, read -r -a more <<< "${extra:-}"
    for kv in "${more[@]}"; do
        [[ $kv =~ ^[A-Z_][A-Z0-9_]*=[^[:space:]]*$ ]] || { echo "gpu_refit_sweep.sh: $name: '$kv' is not VAR=VALUE" >&2; exit 2; }
    done
done
header
start=$(date +%s)
names=()
for v in $VARIANTS; do
    IFS=: read -r name steps batch pairs seed extra <<< "$v"
    IFS=, read -r -a more <<< "${extra:-}"
    names+=("$name")
    ( t0=$(date +%s)
      env "${more[@]}" NF="$RUNS/$name" NF_STEPS="$steps" NF_BATCH="$batch" NF_PAIRS="$pairs" NF_SEED="$seed" \
          MINUTES="$MINUTES" bash scripts/train_default_gpu.sh refit > "$RUNS/$name.out" 2>&1
      echo "rc=$? wall_s=$(( $(date +%s) - t0 ))" >> "$RUNS/$name.out" ) &
done
wait
for name in "${names[@]}"; do
    { echo "## $name"; cat "$RUNS/$name.out"; echo "### log.csv"; cat "$RUNS/$name/log.csv" 2>/dev/null; } >> "$LOG"
    if [[ -f $RUNS/$name/last.safetensors ]]; then
        mkdir -p "$OUT/$name" && cp "$RUNS/$name/last.safetensors" "$OUT/$name/"
    fi
done
echo "# sweep wall_s=$(( $(date +%s) - start ))" >> "$LOG"
grep -ho "^rc=[0-9]*" "$RUNS"/*.out | sort | uniq -c   # e.g. "6 rc=0": every run ended well
