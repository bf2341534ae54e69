#!/usr/bin/env bash
# Set-up for a fresh Debian machine with Python 3.11: system packages, a virtual
# environment in .venv, the CPU build of torch and this project. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
# gcc (and the Python headers) build the compiled SMF kernels, pipeline/io/_smf.c; chromium (headless)
# opens the report page in tests/test_report_page.py
apt_packages=(git fluidsynth gcc libc6-dev chromium)
if ! "$PY" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  apt_packages+=("python3-dev")
fi
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch's CPU build (PyPI's Linux torch is the CUDA build: several GB with its nvidia-* wheels), from
# PyTorch's CPU index where that host resolves, else from what pip is configured with (a local wheel);
# '+cpu' is asked for by name, so pip fails rather than take a CUDA build. Then '.[dev]' (which pulls
# the extras models, report and dvc) keeps the torch it finds.
if ! .venv/bin/python -c 'import importlib.metadata as m, sys; sys.exit(m.version("torch") != "2.13.0+cpu")' 2>/dev/null; then
  torch_index=()
  if .venv/bin/python -c 'import socket; socket.getaddrinfo("download.pytorch.org", 443)' 2>/dev/null; then
    torch_index=(--extra-index-url https://download.pytorch.org/whl/cpu)
  fi
  .venv/bin/python -m pip install -q torch==2.13.0+cpu "${torch_index[@]}"
fi
.venv/bin/python -m pip install -q -e '.[dev]'
# byte-compile the project's own modules once: where PYTHONDONTWRITEBYTECODE is set, every run
# would otherwise compile them again (pip byte-compiles installed packages, not an editable tree)
.venv/bin/python -m compileall -q pipeline stages >/dev/null
