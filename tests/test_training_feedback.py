"""What a person at the terminal sees of a training run: Ctrl-C stops it with one line that says
where it stopped and that a rerun resumes; the rerun says it resumed, and from where."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import yaml

from pipeline.config import section_doc

from test_musegan import TINY, make_phrases


def test_ctrl_c_says_where_and_the_rerun_resumes(tmp_path):
    phrases = make_phrases(tmp_path / "phrases")
    params = tmp_path / "params.yaml"
    doc = json.loads(json.dumps(TINY))
    doc["train"].update(steps=100000, checkpoint_every=2)
    params.write_text(yaml.safe_dump({"musegan": section_doc("musegan", **doc)}))
    cmd = [sys.executable, "-c", "from pipeline.cli import main; main()", "train", "musegan", "--variant", "jamming",
           "--phrases", str(phrases), "--out", str(tmp_path / "models" / "musegan" / "jamming"), "--params", str(params)]
    env = {**os.environ, "PIPELINE_PROGRESS": "0"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ckpt = tmp_path / "models" / "musegan" / "jamming" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 240
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("interrupted: train musegan stopped at ") and "of 100000" in lines[0]
    assert "resumes from its last checkpoint" in lines[0]

    # the rerun says first that it resumed, and from which step (then it is stopped again)
    res = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = res.stdout.readline()
    res.send_signal(signal.SIGINT)
    res.communicate(timeout=120)
    assert first.startswith("musegan: resumed from step ") and first.rstrip().endswith("of 100000 (its last checkpoint)")
    step = int(first.split("resumed from step ")[1].split()[0])
    assert step >= 2 and step % 2 == 0  # a checkpoint step (checkpoint_every: 2)
