#!/usr/bin/env bash
# Set up .venv (if needed), run the static checks (scripts/check.sh), then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/check.sh
exec .venv/bin/python -m pytest "$@"
