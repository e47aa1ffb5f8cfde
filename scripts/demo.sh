#!/usr/bin/env bash
# The lab demo (see scripts/demo.py). Needs root and a build (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
exec /usr/bin/python3 scripts/demo.py "$@"
