#!/usr/bin/env bash
# The static checks CI runs before the tests: lint and import order (ruff), formatting, types
# (mypy over src/), the architecture's import contracts (import-linter, pyproject.toml) and the
# documentation site, built in strict mode: a broken link or a missing API reference fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
"$bin/ruff" check src tests bench scripts
"$bin/ruff" format --check src tests bench scripts
"$bin/mypy"
PYTHONPATH=src "$bin/lint-imports" --no-cache
NO_MKDOCS_2_WARNING=1 "$bin/mkdocs" build --strict --quiet --site-dir site
