#!/usr/bin/env bash
# Set up .venv (if needed) and serve the documentation site at http://127.0.0.1:8000, rebuilt on
# every change to docs/, mkdocs.yml or a docstring in src/. Arguments go to `mkdocs serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
NO_MKDOCS_2_WARNING=1 exec .venv/bin/mkdocs serve "$@"
