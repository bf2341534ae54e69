#!/usr/bin/env bash
# Runs the whole test suite; does its own set-up first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
