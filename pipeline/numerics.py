"""Pinned CPU numerics: the model stages give the same bytes on every x86-64 CPU with AVX2.

The same seed, params and thread count give the same numbers on one machine anyway; across
machines, the libraries under torch and numpy pick their kernels by the CPU they find, and those
kernels round differently. What changes a result, and how it is pinned here:

==========================  =================================================================
what depends on the CPU     how it is pinned (``pin()``, before torch or numpy is imported)
==========================  =================================================================
ATen's vectorised kernels   ``ATEN_CPU_CAPABILITY=avx2`` (AVX-512 kernels sum and round in
                            other lane orders; SLEEF's exp/log/tanh differ by width)
MKL (GEMM, FFT for stft)    ``MKL_CBWR=AVX2,STRICT`` (conditional numerical reproducibility,
                            strict: the AVX2 code path whatever the CPU's vendor, alignment or
                            cache), ``MKL_ENABLE_INSTRUCTIONS=AVX2``
oneDNN (LSTM, conv, linear) turned off (``torch.backends.mkldnn``) in ``configure_torch()``; its
                            kernels block by cache size and core count, not only by ISA, so an
                            ISA cap (``ONEDNN_MAX_CPU_ISA``, also set) is not enough. ATen's own
                            kernels plus MKL's GEMM take over.
NNPACK (conv2d)             turned off (``torch.backends.nnpack``)
numpy's SIMD dispatch       ``NPY_DISABLE_CPU_FEATURES``: the AVX-512 targets off (numpy's
                            AVX-512 exp/log/log10/power for float64 and log10/power for float32
                            differ from its AVX2 ones, measured on numpy 2.4)
OpenBLAS (numpy's BLAS)     ``OPENBLAS_CORETYPE=Haswell`` (the AVX2 kernels)
thread counts               ``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``, no dynamic teams; the
                            stages then set the params' ``threads`` (a param, fixed) through
                            ``torch.set_num_threads``; inter-op threads 1
CUDA (when used)            ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, deterministic algorithms,
                            cuDNN deterministic and not benchmarking, TF32 off
==========================  =================================================================

Pinning is on by default for the model commands (``pipeline train|sample|evaluate ...`` and
``pipeline report``) and is set by code, not by ``params.yaml``: it changes how a number is
computed, not what is computed. ``PIPELINE_NATIVE_NUMERICS=1`` (or ``--native-numerics``) opts
out for speed; then every library picks its own kernels, cross-CPU equality is not promised, and
the stage's JSON says so (``record()``).

A CPU without AVX2 cannot run the pinned kernels: ATen falls back to its default kernels and
``record()`` says ``"pinned": false`` with the capability that ran.

This module imports neither torch nor numpy at import time.
"""

from __future__ import annotations

import os
import sys

#: environment variable that turns pinning off ("1", "true", "yes")
OPT_OUT = "PIPELINE_NATIVE_NUMERICS"

#: the kernel level every x86-64 CPU of the last ten years has (Intel Haswell, 2013; AMD Zen, 2017)
LEVEL = "avx2"

#: numpy >= 2.4 groups its dispatch targets by x86-64 micro-architecture level
_NPY_AVX512_NEW = "X86_V4 AVX512_ICL AVX512_SPR"
#: numpy < 2.4 names every AVX-512 target
_NPY_AVX512_OLD = "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"


def _numpy_avx512_targets() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = (int(p) for p in version("numpy").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return _NPY_AVX512_NEW
    return _NPY_AVX512_NEW if (major, minor) >= (2, 4) else _NPY_AVX512_OLD


def pinned_env() -> dict[str, str]:
    """The environment variables ``pin()`` sets (read by the libraries when they load)."""
    return {
        "ATEN_CPU_CAPABILITY": LEVEL,
        "MKL_CBWR": "AVX2,STRICT",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "NPY_DISABLE_CPU_FEATURES": _numpy_avx512_targets(),
        "OPENBLAS_CORETYPE": "Haswell",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_DYNAMIC": "FALSE",
        "MKL_DYNAMIC": "FALSE",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    }


def opted_out(native: bool | None = None) -> bool:
    """True when the user asked for native kernels (``native`` or ``PIPELINE_NATIVE_NUMERICS``)."""
    if native:
        return True
    return os.environ.get(OPT_OUT, "").strip().lower() in {"1", "true", "yes", "on"}


_state: dict = {"late": []}  # libraries loaded before pin() (their kernels were already chosen)


def pin(native: bool | None = None) -> bool:
    """Set the pinned environment for this process and its children, unless opted out.

    Must run before torch and numpy are imported: a library already loaded keeps the kernels it
    chose, and is listed in ``record()["late"]`` (``"pinned": false`` then). Returns whether the
    process is pinned.
    """
    if opted_out(native):
        os.environ[OPT_OUT] = "1"  # child processes (dask workers, torchrun ranks) follow
        return False
    os.environ.pop(OPT_OUT, None)
    late = [m for m in ("numpy", "torch") if m in sys.modules]
    os.environ.update(pinned_env())
    _state["late"] = late
    return not late


def configure_torch() -> None:
    """The settings that torch takes at run time: oneDNN and NNPACK off, deterministic algorithms,
    one inter-op thread; on CUDA deterministic cuDNN and no TF32. Called by
    ``pipeline.training.solver.seed_everything``; harmless to call again."""
    import torch

    torch.use_deterministic_algorithms(True)
    if not is_pinned():
        return
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # inter-op pool already started: its size cannot change any more
        pass
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def is_pinned() -> bool:
    """Whether this process runs with the pinned environment (set by ``pin()`` or inherited)."""
    if opted_out():
        return False
    env = pinned_env()
    return all(os.environ.get(k) == v for k, v in env.items()
               if k not in {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"})


def record() -> dict:
    """What the numerics of this process are, for a stage's train/evaluation JSON.

    Reads the state that took effect (torch's capability, oneDNN), not only what was asked; the
    same on every machine where pinning works, so the JSON stays byte-identical across CPUs.
    """
    doc: dict = {"pinned": False, "level": LEVEL}
    torch = sys.modules.get("torch")
    capability = torch.backends.cpu.get_cpu_capability().lower() if torch is not None else None
    if is_pinned() and not _state["late"] and capability in (None, LEVEL):
        doc["pinned"] = True
        doc["settings"] = {k: v for k, v in sorted(pinned_env().items())
                           if k not in {"CUBLAS_WORKSPACE_CONFIG", "NPY_DISABLE_CPU_FEATURES"}}
        doc["settings"]["numpy"] = "AVX-512 targets disabled"
        doc["settings"]["onednn"] = "off"
        doc["settings"]["nnpack"] = "off"
        return doc
    if opted_out():
        doc["reason"] = f"{OPT_OUT}=1: native kernels; numbers may differ on another CPU"
    elif _state["late"]:
        doc["reason"] = f"{' and '.join(_state['late'])} imported before pinning; numbers may differ on another CPU"
    elif capability not in (None, LEVEL):
        doc["reason"] = f"this CPU ran {capability} kernels, not {LEVEL}; numbers may differ on another CPU"
    else:
        doc["reason"] = "not pinned; numbers may differ on another CPU"
    if capability is not None:
        doc["capability"] = capability
    return doc
