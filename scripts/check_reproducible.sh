#!/usr/bin/env bash
# Reproducibility check: two fresh clones of this repository each run the whole pipeline with
# `dvc repro --force` (every stage recomputed, none taken from git or a cache; 1 worker in one
# clone, 2 in the other), then every output file and metric is compared between the clones and
# with the output hashes committed in dvc.lock.
# Usage: bash scripts/check_reproducible.sh [WORKDIR]   (exit 0 = identical, 1 = differences)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/setup.sh
export PATH="$root/.venv/bin:$PATH" PIPELINE_PROGRESS=0
work=${1:-$(mktemp -d)}
mkdir -p "$work"
for n in 1 2; do
  rm -rf "$work/clone$n"
  git clone -q "$root" "$work/clone$n"
  # the shared/ folder sits beside each clone as beside this checkout
  [ -e "$work/shared" ] || { [ -d "$root/../shared" ] && ln -s "$root/../shared" "$work/shared"; } || true
  echo "clone $n: dvc repro with PIPELINE_WORKERS=$n"
  (cd "$work/clone$n" && PIPELINE_WORKERS=$n PYTHONPATH="$work/clone$n" dvc repro --force -q >"$work/repro$n.log" 2>&1) \
    || { echo "clone $n: dvc repro failed, see $work/repro$n.log"; exit 1; }
done
digest() {  # every file under datasets/ (outputs and metrics), minus DVC's and our bookkeeping
  (cd "$1" && find datasets -type f ! -path '*/.state/*' ! -name '.lock' ! -name '.gitignore' -print0 \
    | sort -z | xargs -0 sha256sum)
}
digest "$work/clone1" >"$work/hashes1.txt"
digest "$work/clone2" >"$work/hashes2.txt"
files=$(wc -l <"$work/hashes1.txt")
if diff -u "$work/hashes1.txt" "$work/hashes2.txt" >"$work/diff.txt" \
   && diff -q "$work/clone1/dvc.lock" "$work/clone2/dvc.lock" >/dev/null \
   && diff -q "$work/clone1/dvc.lock" "$root/dvc.lock" >/dev/null; then
  echo "reproducible: $files output files (metrics included) identical in both clones;"
  echo "dvc.lock identical in both clones and to the committed one"
  exit 0
fi
echo "NOT reproducible: see $work/diff.txt"
head -20 "$work/diff.txt"
exit 1
