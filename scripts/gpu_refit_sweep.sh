#!/usr/bin/env bash
# Several refits of M and G at once on a lent GPU (scripts/train_default_gpu.sh refit, each in its own process
# on the one GPU), to measure what a GPU's budget buys the neutral faces: the shipped recipe there (does the GPU
# reproduce the CPU's refit?), longer refits and larger batches, several seeds each (MODEL_CARD.md experiment 27).
#
#   here:   bash scripts/train_default_gpu.sh pack            # .gpu/train_pack.npz + .gpu/refit_init.safetensors
#   there:  bash scripts/gpu_refit_sweep.sh                    # with the device tool, carry .gpu
#   here:   evaluate $OUT/<name>/last.safetensors (scripts/neutral_compare.py, scripts/eval_spans.py)
#
# VARIANTS: space-separated NAME:STEPS:BATCH:PAIRS:SEED (the refit's schedule length, stills per step, video
# pairs per FaceCycle step, seed); MINUTES caps every run (a run stopped early says so in logs.txt: its
# schedule did not finish). Writes $OUT/<name>/last.safetensors (8 MB each: the device tool returns 8 files,
# 64 MiB) and $OUT/logs.txt (each run's output and log.csv, nvidia-smi, wall times).
# DEVICE=cpu with tiny STEPS is a dry run of the same path (tests/test_gpu_scripts.py).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
MINUTES=${MINUTES:-6.5}
RUNS=${RUNS:-gpu_runs}
VARIANTS=${VARIANTS:-"r300s0:300:32:16:0 r300s1:300:32:16:1 b1500s0:1500:128:64:0 b1500s1:1500:128:64:1 b1500s2:1500:128:64:2 l1500s0:1500:32:16:0"}
mkdir -p "$OUT" "$RUNS"
LOG=$OUT/logs.txt
{ echo "# gpu_refit_sweep $(date -u +%FT%TZ) DEVICE=${DEVICE:-cuda} MINUTES=$MINUTES"; echo "# variants: $VARIANTS"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "# no nvidia-smi"
  python3 -c "import torch; print('# torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  nproc | sed 's/^/# cpus /'; } > "$LOG" 2>&1
start=$(date +%s)
names=()
for v in $VARIANTS; do
    IFS=: read -r name steps batch pairs seed <<< "$v"
    names+=("$name")
    ( t0=$(date +%s)
      NF=$RUNS/$name NF_STEPS=$steps NF_BATCH=$batch NF_PAIRS=$pairs NF_SEED=$seed MINUTES=$MINUTES \
          bash scripts/train_default_gpu.sh refit > "$RUNS/$name.out" 2>&1
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
grep -h "^rc=" "$RUNS"/*.out | sort | uniq -c
