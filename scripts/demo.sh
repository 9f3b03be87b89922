#!/usr/bin/env bash
# Set up (if needed) and run Arctern's main job on its built-in default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/arctern-demo "$@"
