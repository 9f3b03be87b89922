#!/usr/bin/env bash
# Set up (if needed) and run every test: lint, core, plugins, cross-plugin, examples.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
