#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the demo fleet against a real broker and database.
# Extra arguments go to the demo, e.g. `scripts/demo.sh --clinics 50 --serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m lab.demo "$@"
