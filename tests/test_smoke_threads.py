"""A short CLI search under OMP_NUM_THREADS=1: torch 2.13's CPU build was seen to abort with heap corruption
in the supernet backward with one thread when 1×1 convolutions went through oneDNN (DESIGN §3)."""

import os
import subprocess
import sys


def test_search_with_one_thread(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [
        sys.executable, "-m", "sharing_lab.cli", "run-search", "--out", str(tmp_path), "--name", "one-thread",
        "--set", "data.name=synthetic", "--set", "model.widths=[2,4]", "--set", "model.granularity=conv",
        "--set", "search.epochs=2", "--set", "search.warmup_epochs=1", "--set", "search.eval_every=2",
        "--set", "search.eval_archs=2", "--set", "search.beam_top=2", "--set", "probes.every_epochs=1",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "one-thread" / "arch.json").is_file()
