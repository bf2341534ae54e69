"""Pinned CPU numerics (pipeline/numerics.py): every model family, trained with the real training code
and the committed params' sizes (benchmarks/numerics_probe.py), gives weights that change with the
CPU settings when the kernels are native, and bit-identical weights under pinning whatever the
settings a machine or a user brings (ATen level, MKL code path, numpy's targets, threads, cores).

These runs stand in for a second machine: the same binaries pick other kernels exactly as they would
on a CPU with other features. What they cannot stand in for is said in the README ("Reproducible on
any x86-64 CPU")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import numerics

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "benchmarks" / "numerics_probe.py"

pytestmark = pytest.mark.slow

_CLEAN = set(numerics.pinned_env()) | {numerics.OPT_OUT, "MKL_CBWR", "ATEN_CPU_CAPABILITY"}


def probe(extra_env: dict[str, str], *, one_core: bool = False, steps: int = 2) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _CLEAN}
    env.update(extra_env)
    cmd = [sys.executable, str(PROBE), "--steps", str(steps), "--json"]
    if one_core:
        if shutil.which("taskset") is None:
            pytest.skip("taskset is not installed")
        cmd = ["taskset", "-c", "0", *cmd]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def digests(doc: dict) -> dict[str, str]:
    return {fam: r["digest"] for fam, r in doc["families"].items()}


def _supports_avx512() -> bool:
    try:
        return " avx512f " in f" {Path('/proc/cpuinfo').read_text()} ".replace("\n", " ")
    except OSError:
        return False


def test_native_kernels_give_other_numbers():
    """Without pinning, the kernel level a CPU offers changes the trained weights (so the pinned test
    below can fail: it compares settings that matter). default and avx2 run on every AVX2 CPU."""
    native = {"PIPELINE_NATIVE_NUMERICS": "1"}
    levels = ["default", "avx2"] + (["avx512"] if _supports_avx512() else [])
    runs = {lvl: probe({**native, "ATEN_CPU_CAPABILITY": lvl}) for lvl in levels}
    for lvl, doc in runs.items():
        assert doc["numerics"]["pinned"] is False and "may differ" in doc["numerics"]["reason"]
        assert doc["capability"].lower() == lvl
    base, avx2 = digests(runs["default"]), digests(runs["avx2"])
    differ = [fam for fam in base if base[fam] != avx2[fam]]
    assert len(differ) >= 3, f"default and avx2 kernels gave the same weights for {sorted(set(base) - set(differ))}"


def test_pinned_numbers_do_not_depend_on_the_cpu_settings():
    """Pinned: the same weights with whatever ATen level, MKL code path, numpy targets, thread counts
    and cores the environment asks for (pinning overrides them), and on one core."""
    plain = probe({})
    assert plain["numerics"]["pinned"] is True and plain["capability"].lower() == numerics.LEVEL
    expected = digests(plain)
    variants = [
        {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "2"},
        {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512", "NPY_DISABLE_CPU_FEATURES": "",
         "ONEDNN_MAX_CPU_ISA": "ALL", "OPENBLAS_CORETYPE": "SkylakeX", "MKL_NUM_THREADS": "4"},
    ]
    for env in variants:
        assert digests(probe(env)) == expected, env
    assert digests(probe({}, one_core=True)) == expected


def test_the_record_says_what_ran():
    code = ("import sys; sys.path.insert(0, {root!r}); from pipeline import numerics; {pre}"
            "numerics.pin(); import torch; numerics.configure_torch(); import json; "
            "print(json.dumps(numerics.record()))")
    env = {k: v for k, v in os.environ.items() if k not in _CLEAN}

    def run(pre: str, extra: dict | None = None) -> dict:
        res = subprocess.run([sys.executable, "-c", code.format(root=str(ROOT), pre=pre)],
                             env={**env, **(extra or {})}, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    pinned = run("")
    assert pinned["pinned"] is True and pinned["settings"]["ATEN_CPU_CAPABILITY"] == "avx2"
    assert pinned["settings"]["onednn"] == "off"
    late = run("import torch; ")  # torch loaded before pin(): its kernels are already chosen
    assert late["pinned"] is False and "imported before pinning" in late["reason"]
    out = run("", {"PIPELINE_NATIVE_NUMERICS": "1"})
    assert out["pinned"] is False and "PIPELINE_NATIVE_NUMERICS=1" in out["reason"]


@pytest.mark.gpu
def test_same_seed_same_gpu_same_weights():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device (none on this machine)")
    code = ("import sys; sys.path.insert(0, {root!r}); from pipeline import numerics; numerics.pin(); "
            "import torch; numerics.configure_torch(); torch.manual_seed(0); "
            "from pipeline.models.lstm import LSTMConfig, LSTMModel; "
            "m = LSTMModel(LSTMConfig(vocab_size=64, embedding=32, hidden=64, layers=2, dropout=0.1, attention=True)).cuda(); "
            "o = torch.optim.Adam(m.parameters()); x = torch.randint(0, 64, (8, 33), device='cuda'); "
            "[(o.zero_grad(), torch.nn.functional.cross_entropy(m(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten()).backward(), o.step()) for _ in range(5)]; "
            "import hashlib; print(hashlib.sha256(b''.join(v.cpu().numpy().tobytes() for v in m.state_dict().values())).hexdigest())")
    outs = [subprocess.run([sys.executable, "-c", code.format(root=str(ROOT))], capture_output=True, text=True,
                           timeout=300) for _ in range(2)]
    for r in outs:
        assert r.returncode == 0, r.stderr
    assert outs[0].stdout == outs[1].stdout
