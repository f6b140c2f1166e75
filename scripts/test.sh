#!/usr/bin/env bash
# Set up .venv (if needed), run the static checks (scripts/check.sh), then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/check.sh
# Two workers where there are two cores (one where there is one): much of the suite waits on
# servers, subprocesses and sockets, so the second core is used while the first waits. Tests that
# share an expensive fixture marked with an xdist_group (tests/conftest.py) run on one worker.
workers=$(($(nproc) >= 2 ? 2 : 1))
exec .venv/bin/python -m pytest -n "$workers" --dist loadgroup "$@"
