"""The transport and summary rules run through Snakemake on fabricated particle batches."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from particle_batches import log_times, make_batch, random_walk, write_batch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_transport_rules_on_fabricated_batches(tmp_path):
    cfg = {
        # the transport rule reads the medium's field statistics, so the toy medium is built
        "media": {"toy": {"source": "kolmogorov", "grid": 8, "params": {"l_min_pc": 25.0, "l_max_pc": 50.0}}},
        "particles": {"energies_PeV": [1.5, 10.0]},
        "integrate": {"batches": 2, "mono": {"energies_PeV": [2.5], "mu0": [0.0, 0.5]}},
        "transport": {"bootstrap_samples": 50},
    }
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    rng = np.random.default_rng(0)
    t = log_times(12, 1e8, 1e11)
    for energy, injection in (("1.5", "isotropic"), ("10", "isotropic"), ("2.5", "mono")):
        for b in range(2):
            disp, pdisp, ptime = random_walk(rng, 40, t, 1e-8, 1e-9, (0, 0, 1), [0.2, 0.3, 0.5])
            mu = np.repeat(rng.choice([0.0, 0.5], size=(40, 1)), t.size, axis=1)
            ds = make_batch(t, disp, phase_displacement=pdisp, phase_time=ptime, mu=mu,
                            energy_PeV=float(energy), injection=injection, medium="toy", batch=b)
            write_batch(ds, tmp_path / f"results/toy/particles/E{energy}_{injection}_b{b}.h5")
    # the medium's field statistics (rule field_statistics, from the snapshot; here written
    # directly so the fabricated batches stay the newest inputs and nothing is integrated)
    stats = {"cell_pc": 12.5, "box_pc": 100.0, "median_B_uG": 3.0, "rms_dB_uG": 3.0,
             "correlation_length_pc": 20.0, "correlation_length_axes_pc": [20.0] * 3, "fft_stride": 1}
    (tmp_path / "results/toy/field_statistics.json").write_text(json.dumps(stats))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    proc = subprocess.run(
        [snakemake, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores", "1",
         "results/transport_summary.csv"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(tmp_path / "results/transport_summary.csv")
    assert sorted(zip(table["energy_PeV"], table["injection"])) == [
        (1.5, "isotropic"), (2.5, "mono"), (10.0, "isotropic")]
    assert (table["n_particles"] == 80).all() and (table["n_batches"] == 2).all()
    assert (tmp_path / "results/toy/transport/E2.5_mono.nc").exists()
    # regime diagnostics from the medium's field statistics: r_L(1.5 PeV, 3 uG) = 0.54 pc is
    # 0.04 cells of 12.5 pc
    assert (tmp_path / "results/toy/field_statistics.json").exists()
    assert table["flag_rl_unresolved"].all() and (table["rl_over_dx_ref"] < 1).all()
    assert table["lc_pc"].eq(20.0).all() and table["caveats"].str.contains("resolve").all()
    # the rule itself: snapshot of the toy medium, then its statistics
    (tmp_path / "results/toy/field_statistics.json").unlink()
    proc = subprocess.run(
        [snakemake, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores", "1",
         "results/toy/field_statistics.json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = json.loads((tmp_path / "results/toy/field_statistics.json").read_text())
    assert measured["cell_pc"] == pytest.approx(12.5) and measured["box_pc"] == pytest.approx(100.0)
    assert 2.0 < measured["correlation_length_pc"] < 50.0  # modes of 25-50 pc: l_c ~ L/(2 pi)
