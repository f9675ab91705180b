#!/usr/bin/env bash
# Reproduce the shipped default model (facecycle/assets/default) and every number in MODEL_CARD.md.
# CPU only; run from the project root with ../shared present. Steps are idempotent / resumable.
#   RUN       which training run to ship: A (videos only; shipped) or B (videos + FER-2013 mirror pairs; compared)
#   STOP_AT   optional: stop the motion stage early at this step (the shipped run completed all 900 steps)
# Bit-exact reproduction of the weights needs the same --threads (1) and the same torch build (2.13 CPU).
set -euo pipefail
SHARED=${SHARED:-../shared}
WORK=${WORK:-/tmp/facecycle_default}
STOP_AT=${STOP_AT:-}
RUN=${RUN:-A}
THREADS=${THREADS:-1}
YUNET=$SHARED/models/face_detection_yunet_2023mar.onnx
V=$SHARED/data/videos
FER=$SHARED/data/fer2013
OUT=facecycle/assets/default
# 4 clips held out by clip (4 different people), never seen in training:
HOLD="videoretalking_face_2.mp4 liveportrait_driving_d3.mp4 pyfeat_single_face.mp4 tpsmm_driving.mp4"

TRAIN=(); HOLDP=()
for f in "$V"/*; do b=$(basename "$f"); if [[ " $HOLD " == *" $b "* ]]; then HOLDP+=("$f"); else TRAIN+=("$f"); fi; done

# 1. data: YuNet detections, IoU face tracks, loose square crops (1.7x box), 64 px, every 2nd frame
python -m facecycle data prepare "${TRAIN[@]}" --out "$WORK/vid_train" --every 2 --detector-model "$YUNET"
python -m facecycle data prepare "${HOLDP[@]}" --out "$WORK/vid_holdout" --every 2 --detector-model "$YUNET"

# 2. motion stage, config small at width 0.25 (see the card for why), 8 pairs/batch, lr 2e-4
EXTRA=()
[[ $RUN == B ]] && EXTRA=(--fer "$FER" --fer-frac 0.25)
STOP=()
[[ -n $STOP_AT ]] && STOP=(--stop-at "$STOP_AT")
python -m facecycle train --stage motion --data "$WORK/vid_train" "${EXTRA[@]}" --config small --width 0.25 \
  --batch 8 --steps 900 --drop-at 0.8 --lr 2e-4 --seed 0 --threads "$THREADS" --out "$WORK/motion_$RUN" \
  --ckpt-every 50 --sample-every 100 --resume "${STOP[@]}"
CKPT=$WORK/motion_$RUN/last.safetensors

# 2b. identity stage, brief: 150 steps, E/M/G frozen, lr 1e-4, Adam betas (0.5, 0.9)
python -m facecycle train --stage identity --init "$CKPT" --data "$WORK/vid_train" --batch 8 --steps 150 \
  --drop-at 0.8 --lr 1e-4 --seed 0 --threads "$THREADS" --out "$WORK/identity_$RUN" --ckpt-every 50 \
  --sample-every 50 --resume
SHIP=$WORK/identity_$RUN/last.safetensors   # all five modules; the motion modules equal $CKPT's

# 3. held-out reconstruction metrics + figure
python -m facecycle.train.evaluate --checkpoint "$SHIP" --data "$WORK/vid_holdout" --train-data "$WORK/vid_train" \
  --json "$WORK/eval_recon.json" --figure docs/model_card_figure.png --threads "$THREADS"

# 4. ship: weights + ONNX graphs + manifest
mkdir -p "$OUT"
cp "$SHIP" "$OUT/model.safetensors"
python -m facecycle export --checkpoint "$OUT/model.safetensors" --out "$OUT"

# 5. FER-2013 linear probes (validation = 10% of train held out, stratified, seed 0; fit on a 10k subsample
#    of the rest + mirrored copies; weight decay chosen on a held-out 15% of the fit data)
PROBE=(--task expression --data "$FER" --val-frac 0.1 --threads "$THREADS" --no-progress)
python -m facecycle probe fit "${PROBE[@]}" --max-train 10000 --checkpoint "$CKPT" --out "$OUT/expression_head.safetensors" \
  --json "$WORK/fit_model.json"
python -m facecycle probe eval "${PROBE[@]}" --split val --json "$WORK/eval_model.json"   # shipped model + head, no flags
for B in random-encoder pixels; do
  python -m facecycle probe fit "${PROBE[@]}" --max-train 10000 --baseline "$B" --checkpoint "$CKPT" \
    --out "$WORK/head_$B.safetensors" --json "$WORK/fit_$B.json"
  python -m facecycle probe eval "${PROBE[@]}" --split val --head "$WORK/head_$B.safetensors" --json "$WORK/eval_$B.json"
done
du -b "$OUT"/*
