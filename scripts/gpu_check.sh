#!/usr/bin/env bash
# The production path on an NVIDIA GPU host where vLLM is installed (../shared/gpu/README.md says
# how to get it there; docs/benchmarks.md keeps the latest results). Each part fits the device's
# 10-minute command limit; `all` runs tests, start and bench one after another. The wheel bundle
# needs the service and otel extras' packages beyond vLLM's: pass `fastapi-offline==1.7.7
# prometheus-client==0.26.0 opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2
# opentelemetry-semantic-conventions==0.66b2` (and the pins in ../shared/gpu/README.md) to bundle-wheels.sh.
#   bash scripts/gpu_check.sh tests OUTDIR     # the GPU tests: vLLM vs transformers, every strategy x scorer, service, PRM, transformers on CUDA
#   bash scripts/gpu_check.sh backend OUTDIR   # the vLLM backend's tests and the backend contract on CUDA
#   bash scripts/gpu_check.sh suite OUTDIR     # every other model test, on CUDA (device auto)
#   bash scripts/gpu_check.sh start OUTDIR     # engine start-up: eager, CUDA graphs with a cold and a warm compile cache
#   bash scripts/gpu_check.sh bench OUTDIR     # throughput at scale vs vLLM's offline generation, SmolLM2 and a random 1B
#   bash scripts/gpu_check.sh quality OUTDIR   # bench_adaptive and llm-tts eval with hundreds of questions, several seeds
#   bash scripts/gpu_check.sh searches OUTDIR [SECONDS]  # bench_searches, new runs stop after SECONDS
#   bash scripts/gpu_check.sh summary OUTDIR   # the table of everything OUTDIR holds (printed after each part too)
# A part that overruns its time is killed with its whole process group, and any process still
# holding the GPU afterwards is killed: a vLLM engine left behind would fail every later part.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:$PWD/tests:$PWD/bench:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
part=${1:?tests, backend, suite, start, bench, quality, searches, summary or all}
out=${2:-/tmp/gpu-out}
mkdir -p "$out"
py=${PYTHON:-python3}
# Two parts: on a fresh machine (cold compile caches) all of them took longer than one 10-minute call.
GPU_TESTS=(tests/model/test_gpu.py tests/unit/test_vllm_compat.py tests/model/test_prm.py tests/model/test_transformers_backend.py)
BACKEND_TESTS=(tests/model/test_vllm_backend.py tests/model/test_backend_contract.py)

free_gpu() {  # kill whatever still holds the GPU (an engine core orphaned by a killed part)
  local pids
  pids=$(nvidia-smi --query-compute-apps=pid --format=csv,noheader 2>/dev/null | tr -d ' ')
  if [ -n "$pids" ]; then
    echo "gpu_check: killing processes still on the GPU: $pids" | tee -a "$out/leftovers.log"
    kill -9 $pids 2>/dev/null
    sleep 2
  fi
}

bounded() {  # bounded SECONDS LOG CMD...: timeout interrupts the whole process group after SECONDS
  local secs=$1 log=$2
  shift 2
  timeout --kill-after=10 -s INT "$secs" "$@" 2>&1 | grep --line-buffered -v "^INFO\|^(EngineCore" | tee "$log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 124 ] && echo "gpu_check: $(basename "$log" .log) stopped at its limit of $secs s" | tee -a "$log"
  free_gpu
  return 0
}

pytest_part() {  # pytest_part NAME SECONDS ARGS...
  local name=$1 secs=$2
  shift 2
  bounded "$secs" "$out/$name.log" $py -m pytest -p no:cacheprovider -q -rfEs --junitxml="$out/$name.xml" \
    -o timeout=300 -o faulthandler_timeout=240 --durations=15 "$@"
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $py -c "import torch, transformers, vllm; print('torch', torch.__version__, 'transformers', transformers.__version__, 'vllm', vllm.__version__)"
  git log -1 --format='commit %h %cd' --date=short 2>/dev/null || true
} | tee "$out/device.txt"
free_gpu

run_part() {
  case "$1" in
    tests) pytest_part gpu-tests "${GPU_CHECK_LIMIT:-560}" "${GPU_TESTS[@]}" ;;
    backend) pytest_part gpu-backend "${GPU_CHECK_LIMIT:-560}" "${BACKEND_TESTS[@]}" ;;
    suite)
      ignore=()
      for f in "${GPU_TESTS[@]}" "${BACKEND_TESTS[@]}"; do ignore+=(--ignore="$f"); done
      # the notebook, LangChain's standard suites and the fuzzer need packages a GPU host is not given
      pytest_part gpu-suite 560 tests/model tests/e2e "${ignore[@]}" --ignore=tests/e2e/test_notebook.py \
        --ignore=tests/e2e/test_langchain_standard.py --ignore=tests/e2e/test_service_fuzz.py
      ;;
    start)
      cache=$(mktemp -d)
      for mode in eager graphs-cold graphs-warm; do
        flag=$([ "$mode" = eager ] && echo True || echo False)
        bounded 240 "$out/start-$mode.log" env VLLM_CACHE_ROOT="$cache" $py -c "
import time; t = time.perf_counter()
from llm_tts.backends.vllm_backend import VLLMBackend
b = VLLMBackend(enforce_eager=$flag, gpu_memory_utilization=0.5)
print('START $mode %.1f s' % (time.perf_counter() - t)); b.close()"
      done
      rm -rf "$cache"
      ;;
    bench)
      llama=/tmp/random-llama-1b
      [ -d "$llama" ] || $py bench/make_random_llama.py "$llama" --device cuda >"$out/llama.log" 2>&1
      bounded 290 "$out/throughput-smollm2.log" $py bench/bench_gpu_throughput.py
      bounded 290 "$out/throughput-llama1b.log" $py bench/bench_gpu_throughput.py --model "$llama" --questions 128 --searches 32
      ;;
    quality)
      $py -c "import json, random, sys; sys.path.insert(0, 'scripts'); from make_arithmetic_set import make_question
rng = random.Random(7)
for i in range(300):
    q, a = make_question(rng); print(json.dumps({'id': i, 'question': q, 'answer': a}))" >/tmp/arith300.jsonl
      for seed in 0 1 2; do
        bounded 150 "$out/adaptive-seed$seed.log" $py bench/bench_adaptive.py --questions 300 --seed $seed --concurrency 300
      done
      bounded 200 "$out/eval.log" $py -m llm_tts.cli eval --data /tmp/arith300.jsonl --backend vllm --seeds 0,1,2 \
        --budgets 1,4,16 --concurrency 128 --out /tmp/gpu-eval --no-plots
      cp /tmp/gpu-eval/summary.csv "$out/eval-summary.csv" 2>/dev/null
      ;;
    searches)
      bounded "${3:-300}" "$out/searches.log" $py bench/bench_searches.py --questions 300 --time-limit "${3:-300}" \
        --concurrency 128 --no-eager --out /tmp/searches --search-variants '{}' '{"tts_selection": "weighted"}' \
        '{"tts_score_aggregation": "mean"}' '{"tts_score_aggregation": "mean", "tts_selection": "weighted"}'
      gzip -c /tmp/searches/records.jsonl >"$out/records.jsonl.gz"
      cp /tmp/searches/searches.png "$out/" 2>/dev/null
      ;;
    summary) ;;
    *) echo "unknown part: $1" >&2; exit 2 ;;
  esac
}

if [ "$part" = all ]; then
  for p in tests backend start bench; do run_part "$p"; done
else
  run_part "$part" "$@"
fi
$py scripts/gpu_summary.py "$out" | tee "$out/summary.md"
