#!/usr/bin/env bash
# Issue 8: prove the production path on an NVIDIA GPU host where vLLM is installed (see
# docs/benchmarks.md for the results and ../shared/gpu/README.md for getting vLLM there).
#   bash scripts/gpu_check.sh tests OUTDIR   # GPU tests + the vLLM backend's own tests on CUDA
#   bash scripts/gpu_check.sh bench OUTDIR   # bench_search and bench_service, SmolLM2 and a random 1B Llama
#   bash scripts/gpu_check.sh searches OUTDIR [SECONDS]  # bench_searches (issue 17), new runs stop after SECONDS
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:$PWD/tests:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
out=${2:-/tmp/gpu-out}
mkdir -p "$out"
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
$py -c "import torch, transformers, vllm; print('torch', torch.__version__, 'transformers', transformers.__version__, 'vllm', vllm.__version__)" | tee -a "$out/device.txt"
case "${1:?tests, bench or searches}" in
  tests)
    $py -m pytest -p no:cacheprovider -q -m gpu tests/model/test_gpu.py 2>&1 | tee "$out/gpu-tests.log"
    $py -m pytest -p no:cacheprovider -q tests/model/test_vllm_backend.py tests/model/test_backend_contract.py 2>&1 | tee "$out/vllm-tests.log"
    ;;
  bench)
    llama=/tmp/random-llama-1b
    $py bench/make_random_llama.py "$llama" --device cuda | tee "$out/llama.log"
    for model in "" "$llama"; do
      tag=$([ -z "$model" ] && echo smollm2 || echo llama1b)
      $py bench/bench_search.py ${model:+--model "$model"} --repeats 3 --concurrent 4 2>&1 | grep -v "^INFO\|^(EngineCore" | tee "$out/search-$tag.log"
      $py bench/bench_service.py --backend vllm ${model:+--model "$model"} --skip-throughput --repeats 10 \
        --batch-requests 32 --paths 4 --max-tokens 128 2>&1 | grep -v "^INFO\|^(EngineCore" | tee "$out/service-$tag.log"
    done
    ;;
  searches)
    $py bench/bench_searches.py --questions 300 --time-limit "${3:-300}" --concurrency 128 --no-eager --out /tmp/searches \
      --search-variants '{}' '{"tts_selection": "weighted"}' '{"tts_score_aggregation": "mean"}' \
        '{"tts_score_aggregation": "mean", "tts_selection": "weighted"}' \
      2>&1 | grep --line-buffered -v "^INFO\|^(EngineCore\|^(MainProcess\|WARNING" | tee "$out/searches.log"
    gzip -c /tmp/searches/records.jsonl > "$out/records.jsonl.gz"
    cp /tmp/searches/searches.png "$out/" 2>/dev/null
    ;;
esac
