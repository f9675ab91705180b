#!/usr/bin/env bash
# GPU variant of scripts/train_default.sh: continue the default model's semi-supervised run on a CUDA machine
# (the `device` tool's lent H200 in this workplace, which gets the repository but not ../shared).
#
#   bash scripts/train_default_gpu.sh pack      # here, with ../shared: data -> .gpu/train_pack.npz (~50 MB)
#   bash scripts/train_default_gpu.sh train     # there, carrying .gpu: resume training/rt64w on cuda;
#                                               # writes the updated run (bf16 moments) to $OUT/rt64w/
#   MINUTES=8 STEPS=10000 ... as for train_default.sh
# The same recipe and schedule as on the CPU (facecycle/train/semisup.py); only --device differs, so
# a run can move between CPU sessions and GPU sessions. Never run on a GPU so far: see MODEL_CARD.md.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-train}
SHARED=${SHARED:-../shared}
RUN=${RUN:-training/rt64w}
CONFIG=${CONFIG:-rt64w}
PACK=${PACK:-.gpu/train_pack.npz}
STEPS=${STEPS:-17000}
MINUTES=${MINUTES:-8}
OUT=${OUT:-gpu_out}
HOLD=$(cat scripts/heldout_prefixes.txt)

if [[ $MODE == pack ]]; then
    bash scripts/train_default.sh data
    mkdir -p .gpu
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    python -m facecycle train --stage semisup --config "$CONFIG" --data runs/default/vid1 runs/default/vid2 \
        --fer "$SHARED/data/fer2013" --hold-out "$HOLD" --out /tmp/unused --write-pack "$PACK"
    exit 0
fi

python3 - "$PACK" "$RUN" "$STEPS" "$MINUTES" "$CONFIG" <<'PY'
import sys, time, torch
from pathlib import Path
from facecycle.train.pack import read_pack
from facecycle.train.semisup import SemiSupOptions, SemiSupTrainer
pack, run, steps, minutes, config = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
assert torch.cuda.is_available(), "no CUDA device"
stills, val, video = read_pack(Path(pack))
o = SemiSupOptions(config=config, steps=steps, batch=128, lr=1e-3, device="cuda", amp="bf16")  # the CPU recipe's
tr = SemiSupTrainer(o, stills, val, video, run)
print("resumed" if tr.resume() else "new run", "at step", tr.step, flush=True)
t = time.time()
tr.fit(max_seconds=minutes * 60, progress=False)
print("step", tr.step, tr.validate(), f"{time.time() - t:.0f} s", flush=True)
PY
mkdir -p "$OUT/$(basename "$RUN")"
python3 scripts/run_state.py "$RUN" "$OUT/$(basename "$RUN")"
