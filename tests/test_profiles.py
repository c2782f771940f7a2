"""The SLURM profile: a dry run shows integrate jobs with threads and computed resources."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_slurm_profile_dry_run_sizes_integrate_jobs(tmp_path):
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / ".test" / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    exe = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([exe, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "-n",
                           "--profile", str(REPO / "profiles" / "slurm")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    blocks = [b for b in out.split("\nrule ") if b.startswith("integrate:")]
    assert len(blocks) == 2 * (2 * 2 + 2)  # media x (energies x batches + mono batches)
    for b in blocks:
        assert "threads: 8" in b
        mem = int(re.search(r"mem_mb=(\d+)", b).group(1))
        runtime = int(re.search(r"runtime=(\d+)", b).group(1))
        # 32^3 field cache (0.5 MB) + records + interpreter: the cost model, not a default
        assert 400 <= mem < 1000 and runtime >= 10
