#!/usr/bin/env bash
# GPU check for the inference engines (issue 3): CUDA tests + engine benchmark, JSON under ${OUT:-gpu_out}/.
#
# Usage (repository root, on a CUDA machine with python3 and a CUDA build of torch):
#     bash scripts/gpu_check.sh                  # ~3-5 min: tests, torch CUDA (+/- CUDA graphs), TensorRT, ORT CUDA
#     bash scripts/gpu_check.sh --fetch-wheels   # on a machine WITH a package index: download the pure deps
#                                                # into .wheels/ so a GPU machine without network can install them
# Environment:
#     OUT=dir            output folder (default gpu_out)
#     WHEELS=dir         local wheels to install missing deps from (default .wheels)
#     ALLOW_CPU=1        dry run without a GPU (CPU backends, short timings) to check the script itself
#     SKIP_INSTALL=1     do not pip install anything (dependencies already present)
#     PYTEST_LIMIT=s     time limit of the test step (default 150)
#     FACECYCLE_SHARED   the shared data folder (default ../shared); without its clips the contract
#                        tests skip (they need real face crops), so point it at a copy on the GPU machine
#
# Outputs: $OUT/env.json, $OUT/pytest.xml, $OUT/bench_torch.json, $OUT/bench_tensorrt.json,
#          $OUT/bench_ort_cuda.json (each where it ran), $OUT/<step>.log, $OUT/summary.json (exit codes, seconds).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_out}"
WHEELS="${WHEELS:-.wheels}"
PY="${PYTHON:-python3}"
DEPS=(numpy safetensors onnx onnxruntime onnxconverter-common pytest av opencv-python-headless tqdm scipy)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    mkdir -p "$WHEELS"
    "$PY" -m pip download --only-binary=:all: -d "$WHEELS" "${DEPS[@]}" protobuf packaging
    echo "wheels in $WHEELS ($(du -sh "$WHEELS" | cut -f1))"
    exit 0
fi

mkdir -p "$OUT"
export FACECYCLE_CACHE="${FACECYCLE_CACHE:-${TMPDIR:-/tmp}/facecycle-gpu-check-cache}"  # engines stay out of $OUT
T0=$(date +%s)
declare -A RC SECS
step() {  # step NAME TIMEOUT_S CMD...: run with a timeout, log to $OUT/NAME.log, record rc and seconds
    local name=$1 limit=$2; shift 2
    local t=$(date +%s)
    echo "== $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" > >(tee "$OUT/$name.log") 2>&1
    RC[$name]=$?
    sleep 0.2  # let tee flush
    SECS[$name]=$(( $(date +%s) - t ))
    echo "== $name: rc=${RC[$name]} in ${SECS[$name]}s"
}

# ---- 1. a GPU? ---------------------------------------------------------------------------------
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    if [[ "${ALLOW_CPU:-0}" != "1" ]]; then
        echo "gpu_check: torch with CUDA and a GPU are required (torch.cuda.is_available() is False); ALLOW_CPU=1 for a dry run" >&2
        exit 6
    fi
    CPU_ONLY=1
    echo "gpu_check: no GPU: dry run on the CPU (ALLOW_CPU=1)"
else
    CPU_ONLY=0
fi

# ---- 2. our package and its deps (no network needed when $WHEELS holds them) -------------------
# (running from the repository root works without installing; the editable install adds the console script)
if [[ "${SKIP_INSTALL:-0}" != "1" ]]; then
    "$PY" -m pip install -q -e . --no-deps --no-build-isolation 2>&1 | tail -2 \
        || echo "gpu_check: editable install failed; continuing from the source tree"
fi
missing=()
for d in "${DEPS[@]}"; do
    mod=${d//-/_}; case $d in opencv-python-headless) mod=cv2;; onnxconverter-common) mod=onnxconverter_common;; esac
    "$PY" -c "import $mod" 2>/dev/null || missing+=("$d")
done
# onnxruntime-gpu provides the 'onnxruntime' module: prefer it on a GPU machine when it is available locally
if [[ ${#missing[@]} -gt 0 && "${SKIP_INSTALL:-0}" != "1" ]]; then
    echo "gpu_check: installing missing deps: ${missing[*]}"
    if [[ -d "$WHEELS" ]]; then
        "$PY" -m pip install -q --no-index --find-links "$WHEELS" "${missing[@]}" 2>&1 | tail -3
    else
        "$PY" -m pip install -q "${missing[@]}" 2>&1 | tail -3 || echo "gpu_check: pip install failed (offline?); affected tests will skip"
    fi
fi

# ---- 3. environment facts ----------------------------------------------------------------------
"$PY" - "$OUT/env.json" <<'PYEOF'
import json, sys, platform
env = {"python": platform.python_version(), "machine": platform.machine()}
try:
    import torch
    env["torch"] = torch.__version__
    env["cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
except Exception as e:
    env["torch_error"] = repr(e)
for mod in ("tensorrt", "onnxruntime", "onnx", "av", "cv2"):
    try:
        m = __import__(mod)
        env[mod] = getattr(m, "__version__", "?")
    except Exception as e:
        env[mod] = None
try:
    import onnxruntime as ort
    env["ort_providers"] = ort.get_available_providers()
except Exception:
    pass
try:
    from engines import available_backends
    env["backends"] = available_backends()
except Exception as e:
    env["backends_error"] = repr(e)
json.dump(env, open(sys.argv[1], "w"), indent=2)
print(json.dumps(env, indent=2))
PYEOF
has() { "$PY" -c "import json,sys; b={r['name']: r['available'] for r in json.load(open('$OUT/env.json')).get('backends', [])}; sys.exit(0 if b.get('$1') else 1)"; }

# ---- 4. tests ----------------------------------------------------------------------------------
CUDA_FLAG=--cuda; [[ $CPU_ONLY == 1 ]] && CUDA_FLAG=
step pytest "${PYTEST_LIMIT:-150}" "$PY" -m pytest $CUDA_FLAG -m "gpu or not slow" -q -p no:cacheprovider \
    --junitxml="$OUT/pytest.xml" \
    tests/test_engines_select.py tests/test_engines_contract.py tests/test_model.py

# ---- 5. engine benchmark (paper config, analyze) ------------------------------------------------
BENCH=("$PY" -m facecycle bench engines --config paper --graphs analyze)
if [[ $CPU_ONLY == 1 ]]; then
    step bench_torch 120 "${BENCH[@]}" --backend onnxruntime --baseline torch --batch 1,8 --repeats 3 \
        --json "$OUT/bench_torch.json"
else
    step bench_torch 90 "${BENCH[@]}" --backend torch-cuda,torch-cuda+graphs,torch-cuda:fp16 --baseline torch-cuda \
        --batch 1,8,32,64 --repeats 30 --json "$OUT/bench_torch.json"
    if has tensorrt; then  # engine builds dominate: fp32 + fp16 of analyze, timing cache reused between them
        step bench_tensorrt 150 "${BENCH[@]}" --backend tensorrt,tensorrt:fp16 --baseline torch-cuda \
            --batch 1,8,32,64 --repeats 30 --json "$OUT/bench_tensorrt.json"
    else
        echo "== bench_tensorrt: skipped (TensorRT not installed)"; RC[bench_tensorrt]=skipped
    fi
    if has onnxruntime-cuda; then
        step bench_ort_cuda 60 "${BENCH[@]}" --backend onnxruntime-cuda --baseline torch-cuda \
            --batch 1,8,32 --repeats 20 --json "$OUT/bench_ort_cuda.json"
    else
        echo "== bench_ort_cuda: skipped (no CUDAExecutionProvider)"; RC[bench_ort_cuda]=skipped
    fi
fi

# ---- 6. summary --------------------------------------------------------------------------------
{
    echo "{"
    echo "  \"total_s\": $(( $(date +%s) - T0 )), \"cpu_only\": $CPU_ONLY,"
    echo "  \"steps\": {"
    first=1
    for k in "${!RC[@]}"; do
        [[ $first == 1 ]] || echo ","
        first=0
        printf '    "%s": {"rc": "%s", "seconds": "%s"}' "$k" "${RC[$k]}" "${SECS[$k]:-0}"
    done
    echo ""
    echo "  }"
    echo "}"
} > "$OUT/summary.json"
cat "$OUT/summary.json"
ls -la "$OUT"
[[ "${RC[pytest]}" == 0 ]]
