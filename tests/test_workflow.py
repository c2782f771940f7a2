"""The whole workflow on a tiny configuration: every stage, every figure, the report."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import docutils.core
import h5py
import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
FIGURES = ("fig1_slices", "fig2_phase_histograms", "fig3_gradient_histogram", "fig4_trajectory_3d",
           "fig5_scattering_histograms", "fig6_dmumu_vs_mu0", "fig7_diffusion_vs_energy",
           "fig8_phase_matrix", "fig9_effective_diffusion", "fig10_mechanisms", "fig11_field_lines")


def _snakemake(tmp_path, *args, timeout=900):
    exe = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([exe, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout)


@pytest.mark.slow
def test_whole_workflow_on_tiny_config(tmp_path):
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / ".test" / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    proc = _snakemake(tmp_path, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    # the console follows the particle runs; script rules print no "Shell command: None"
    assert "integrate multiphase E=2.5 PeV isotropic b1: done in" in proc.stderr
    assert "Shell command: None" not in proc.stdout + proc.stderr
    results = tmp_path / "results"
    for fig in FIGURES:
        for ext in ("png", "pdf"):
            f = results / "figures" / f"{fig}.{ext}"
            assert f.exists() and f.stat().st_size > 5000, f
    table = pd.read_csv(results / "transport_summary.csv")
    assert len(table) == 2 * 3  # 2 media x (2 isotropic energies + 1 mono run)
    assert set(table["medium"]) == {"multiphase", "isothermal"}
    assert (table["n_particles"][table["injection"] == "isotropic"] == 40).all()
    assert (table["n_batches"] == 2).all()
    assert (table["sum_rule_ok"] == 1).all()
    # the isothermal medium is one phase; the multiphase one visits all three
    iso = table[table["medium"] == "isothermal"]
    assert (iso["f_WNM"] == 1.0).all()
    multi = table[table["medium"] == "multiphase"]
    assert (multi[["f_CNM", "f_UNM", "f_WNM"]] > 0).all().all()
    # nothing half-written or left over
    assert not list(results.rglob("*.tmp")) and not list(results.rglob("*.ckpt.npz"))

    # a second run has nothing to do; the report builds from the results
    again = _snakemake(tmp_path, "--cores", "2", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    report = _snakemake(tmp_path, "--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    html = (results / "report.html").read_text(errors="replace")
    for fig in FIGURES:  # all eleven figures, captions without docutils errors
        assert f"{fig}.png" in html, fig
    assert "Undefined substitution" not in html and "System Message" not in html

    # the configured energy runs, not its 6-digit file label; the realisation is recorded
    with h5py.File(results / "multiphase" / "particles" / "E10_isotropic_b1.h5", "r") as f:
        attrs = {k: np.asarray(f.attrs[k]).ravel()[0] for k in ("energy_PeV", "realisation",
                                                               "realisation_source")}
    assert attrs["energy_PeV"] == 10.0000004
    assert attrs["realisation"] == 0 and str(attrs["realisation_source"]) == "seed=11"


def _figure_rules():
    """(rule, png output spec) of every figure rule, from the rule files."""
    rule_files = [*sorted((REPO / "workflow" / "rules").glob("figures_*.smk")),
                  REPO / "workflow" / "rules" / "mechanisms.smk"]
    text = "".join(p.read_text() for p in rule_files)
    return re.findall(r"(?:rule (fig\w+)|use rule \w+ as (fig\w+)).*?png=([^\n]*)", text, re.S)


def test_all_eleven_figures_go_into_the_report_with_clean_captions():
    rules = _figure_rules()
    names = {a or b for a, b, _ in rules}
    assert names == set(FIGURES)
    for a, b, png in rules:
        assert png.startswith("report(") and f"../report/{a or b}.rst" in png, (a or b, png)
    # every caption, the nine paper figures and the later ones (Figs. 10-11, theory, implications)
    captions = sorted(p.stem for p in (REPO / "workflow" / "report").glob("*.rst") if p.stem != "workflow")
    assert set(FIGURES) <= set(captions)
    for fig in captions:
        caption = (REPO / "workflow" / "report" / f"{fig}.rst").read_text()
        errors = io.StringIO()
        body = docutils.core.publish_parts(caption, writer="html", settings_overrides={
            "warning_stream": errors, "report_level": 2})["body"]
        assert errors.getvalue() == "" and "system-message" not in body, (fig, errors.getvalue())
