#!/bin/bash
# The benchmarks behind the README figures (run from the project root with ../shared present):
#   benchmarks/run_all.sh OUT_DIR
# writes every JSON into OUT_DIR, a new folder (e.g. benchmarks/$(date +%F)-mymachine). The committed folders it
# reproduces (benchmarks/2026-11-28-cpu2, 2026-12-02-cpu2) are never written: compare your run against them.
set -u
if [ $# -ne 1 ]; then echo "usage: benchmarks/run_all.sh OUT_DIR (a new folder)" >&2; exit 2; fi
B=$1
if [ -e "$B" ] && [ -n "$(ls -A "$B" 2>/dev/null)" ]; then echo "$B: exists and is not empty; give a new folder" >&2; exit 4; fi
V=../shared/data/videos/pyfeat_WolfgangLanger_Pexels.mp4
CAL=../shared/data/videos/videoretalking_face_3.mp4
if [ ! -f "$V" ]; then echo "$V: not found; run from the project root with ../shared beside it" >&2; exit 3; fi
mkdir -p "$B"
uptime > $B/uptime_start.txt
python -m facecycle bench engines --config paper --backend onnxruntime,onnxruntime:int8 --calibration $CAL --baseline torch --batch 1,8,32 --repeats 15 --json $B/engines_paper.json > $B/engines_paper.log 2>&1
python -m facecycle bench engines --backend onnxruntime --baseline torch --batch 1,8,32 --repeats 15 --json $B/engines_default.json > $B/engines_default.log 2>&1
python -m facecycle bench pipeline $V --config paper --frames 300 --runs 5 --json $B/pipe_paper_novideo.json > /dev/null 2>&1
python -m facecycle bench pipeline $V --config paper --frames 300 --runs 5 --video --json $B/pipe_paper_video.json > /dev/null 2>&1
python -m facecycle bench pipeline $V --frames 300 --runs 5 --json $B/pipe_default_novideo.json > /dev/null 2>&1
python -m facecycle bench pipeline $V --frames 300 --runs 5 --video --json $B/pipe_default_video.json > /dev/null 2>&1
QT_QPA_PLATFORM=offscreen python -m ui.bench $V --runs 3 --frames 300 --json $B/app.json > $B/app.log 2>&1
python -m facecycle bench soak --frames 20000 --window 1000 --json $B/soak_default.json > $B/soak.log 2>&1
uptime > $B/uptime_end.txt
python -m facecycle bench detectors ../shared/data/videos/* --step 6 --detectors centerface@320,yunet@320,yunet@640,scrfd@320 --yunet-model ../shared/models/face_detection_yunet_2023mar.onnx --scrfd-model ../shared/models/scrfd_500m_bnkps.onnx --json $B/detectors.json > $B/detectors.log 2>&1
python scripts/bench_batch.py --runs 3 --json $B/batch_ray.json > /dev/null 2>&1  # needs the [cluster] extra
