#!/usr/bin/env bash
# Runs the whole DVC pipeline on the built-in corpus; does its own set-up first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
[ -d .dvc ] || dvc init -q
exec dvc repro "$@"
