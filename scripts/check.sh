#!/usr/bin/env bash
# The static checks CI runs before the tests: lint and import order (ruff), formatting, types
# (mypy over src/) and the architecture's import contracts (import-linter, pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
"$bin/ruff" check src tests bench
"$bin/ruff" format --check src tests bench
"$bin/mypy"
PYTHONPATH=src "$bin/lint-imports" --no-cache
