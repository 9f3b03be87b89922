#!/usr/bin/env bash
# Set up (if needed) and run Arctern's main job on its built-in default: live-migrate a
# running guest that writes its qcow2 disk, and show that nothing was lost.
# Options go to arctern-demo (see .venv/bin/arctern-demo --help), e.g. --transport exec.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/arctern-demo "$@"
