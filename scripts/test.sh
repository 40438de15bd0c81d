#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite. Run as root (or with sudo
# rights) so that the emulated-link tests can make network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
