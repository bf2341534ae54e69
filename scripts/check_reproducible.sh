#!/usr/bin/env bash
# Reproducibility check: two fresh clones of this repository each run the whole pipeline with
# `dvc repro --force` (every stage recomputed, none taken from git or a cache; 1 worker in one
# clone, 2 in the other), then every output file and metric is compared between the clones and
# with the output hashes committed in dvc.lock.
# The second clone also runs as a machine of another CPU would: every library is capped at AVX2
# (ATen, MKL, oneDNN, numpy's dispatch, OpenBLAS) while the first runs with this CPU's native
# kernels (AVX-512 where it has them), and on one core (taskset) where taskset exists. The model
# stages pin their numerics (pipeline/numerics.py), so both must give the same bytes.
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
  # the compiled SMF kernels (pipeline/io/_smf.c) are built in each clone, which PYTHONPATH puts first
  (cd "$work/clone$n" && "$root/.venv/bin/python" setup.py -q build_ext --inplace >/dev/null 2>&1) \
    || { echo "clone $n: building the C extension failed"; exit 1; }
  # the shared/ folder sits beside each clone as beside this checkout
  [ -e "$work/shared" ] || { [ -d "$root/../shared" ] && ln -s "$root/../shared" "$work/shared"; } || true
  echo "clone $n: dvc repro with PIPELINE_WORKERS=$n"
  other_cpu=()
  if [ "$n" = 2 ]; then
    other_cpu=(env ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
               "NPY_DISABLE_CPU_FEATURES=X86_V4 AVX512_ICL AVX512_SPR" OPENBLAS_CORETYPE=Haswell)
    command -v taskset >/dev/null && other_cpu=(taskset -c 0 "${other_cpu[@]}")
    echo "clone $n: as an AVX2 machine: ${other_cpu[*]}"
  fi
  (cd "$work/clone$n" && PIPELINE_WORKERS=$n PYTHONPATH="$work/clone$n" ${other_cpu[@]+"${other_cpu[@]}"} \
     dvc repro --force -q >"$work/repro$n.log" 2>&1) \
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
