#!/usr/bin/env bash
# GPU variant of scripts/train_default.sh: continue the default model's semi-supervised run on a CUDA machine
# (the `device` tool's lent H200 in this workplace, which gets the repository but not ../shared).
#
#   bash scripts/train_default_gpu.sh pack      # here, with ../shared: data -> .gpu/train_pack.npz (~52 MB)
#                                               # and .gpu/refit_init.safetensors (the refit's start)
#   bash scripts/train_default_gpu.sh train     # there, carrying .gpu: resume $RUN on cuda with the options
#                                               # saved in its state; writes the updated run (bf16 moments)
#                                               # to $OUT/<run name>/
#   bash scripts/train_default_gpu.sh refit     # there: the refit of M and G (train_default.sh refit, the same
#                                               # options: NF, NF_STEPS, NF_BATCH, NF_PAIRS, NF_SEED, ...) from the
#                                               # pack and .gpu/refit_init.safetensors; scripts/gpu_refit_sweep.sh
#                                               # runs several at once
#   RUN=training/rt64w_vl MINUTES=8 STEPS=... as for train_default.sh (STEPS, when set, stretches the schedule)
#   DEVICE=cpu                                  # a dry run of the script itself without a GPU
#                                               # (tests/test_gpu_scripts.py runs it on a tiny run and pack)
# The same recipe and schedule as on the CPU (facecycle/train/semisup.py, the run's saved options; the pack
# keeps the video crops' clip labels); only the device differs, so a run can move between CPU sessions and GPU
# sessions. Never run on a GPU so far: see MODEL_CARD.md.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-train}
SHARED=${SHARED:-../shared}
RUN=${RUN:-training/rt64w_vl}
CONFIG=${CONFIG:-rt64w}
PACK=${PACK:-.gpu/train_pack.npz}
STEPS=${STEPS:-0}                   # 0: the run's own schedule
MINUTES=${MINUTES:-8}
OUT=${OUT:-gpu_out}
HOLD=$(cat scripts/heldout_prefixes.txt)
LABELS=${LABELS:-training/video_labels.csv}  # clip (and span) labels, as in train_default.sh
DEVICE=${DEVICE:-cuda}              # cpu: dry run (the same code path, no GPU)
if [[ $DEVICE == cuda* ]]; then AMP=${AMP:-bf16}; else AMP=${AMP:-none}; fi

INIT=${INIT:-.gpu/refit_init.safetensors}  # the refit's start: FT's encoder with the unsupervised M and G

if [[ $MODE == pack ]]; then
    WORK=${WORK:-runs/default}
    FT=${FT:-training/rt64w_vl}
    WORK=$WORK bash scripts/train_default.sh data   # resumes: quick where the crops are there
    mkdir -p "$(dirname "$PACK")" "$(dirname "$INIT")"
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    python -m facecycle train --stage semisup --config "$CONFIG" --data "$WORK/vid1" "$WORK/vid2" \
        --fer "$SHARED/data/fer2013" --hold-out "$HOLD" --video-labels "$LABELS" \
        --out /tmp/unused --write-pack "$PACK"
    # one file instead of two (the working tree that travels is at most 64 MiB): what train_default.sh refit's
    # --init FT/last.safetensors --init-motion UNSUP starts from, as one checkpoint for NF_FROM
    python3 - "$FT/last.safetensors" "$WORK/unsupervised_3fbdedb.safetensors" "$INIT" <<'PY'
import sys
from facecycle.checkpoint import load_checkpoint, save_checkpoint
ft, unsup, out = sys.argv[1:]
m, u = load_checkpoint(ft), load_checkpoint(unsup)
for mod in ("exptoflow", "Swap_Generator"):
    getattr(m, mod).load_state_dict(getattr(u, mod).state_dict())
save_checkpoint(m, out, extra={"note": f"refit start: {ft} with exptoflow and Swap_Generator of {unsup}"})
print("wrote", out)
PY
    exit 0
fi

if [[ $MODE == refit ]]; then
    [[ -f $INIT && -f $PACK ]] || { echo "train_default_gpu.sh refit: needs $PACK and $INIT (pack mode)" >&2; exit 2; }
    if [[ $DEVICE == cuda* ]]; then
        python3 -c "import sys, torch; torch.cuda.is_available() or sys.exit('train_default_gpu.sh: no CUDA device')"
    fi
    PACK=$PACK DEVICE=$DEVICE NF_FROM=$INIT MINUTES=$MINUTES WORK=.gpu bash scripts/train_default.sh refit
    exit 0
fi

python3 - "$PACK" "$RUN" "$STEPS" "$MINUTES" "$CONFIG" "$DEVICE" "$AMP" <<'PY'
import dataclasses, os, sys, time, torch
from pathlib import Path
from facecycle.train.pack import read_pack, read_pack_video_labels
from facecycle.train.semisup import SemiSupOptions, SemiSupTrainer
from facecycle.train.state import read_meta
pack, run, steps, minutes, config = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
device, amp = sys.argv[6], sys.argv[7]
if device.startswith("cuda") and not torch.cuda.is_available():
    sys.exit("train_default_gpu.sh: no CUDA device (torch.cuda.is_available() is False); DEVICE=cpu for a dry run")
stills, val, video = read_pack(Path(pack))
known = {f.name for f in dataclasses.fields(SemiSupOptions)}
if (run / "state.safetensors").is_file():  # continue the run with its own recipe
    saved = read_meta(run / "state.safetensors")["options"]
    o = SemiSupOptions(**{k: v for k, v in saved.items() if k in known})
else:  # a new run: the CPU recipe of scripts/train_default.sh train
    o = SemiSupOptions(config=config, steps=steps or 17000, batch=128, lr=1e-3)
o.device, o.amp, o.threads = device, amp, 0
if steps:
    o.steps = steps
critic = os.environ.get("CRITIC", "training/critic") + "/critic.safetensors" if o.critic_weight > 0 else None
# (a refit's second critic: CRITIC as in train_default.sh)
tr = SemiSupTrainer(o, stills, val, video, run, video_labels=read_pack_video_labels(Path(pack)), critic=critic)
print("resumed" if tr.resume() else "new run", "at step", tr.step, flush=True)
t = time.time()
tr.fit(max_seconds=minutes * 60, progress=False)
print("step", tr.step, tr.validate(), f"{time.time() - t:.0f} s", flush=True)
PY
mkdir -p "$OUT/$(basename "$RUN")"
python3 scripts/run_state.py "$RUN" "$OUT/$(basename "$RUN")"
