"""Regime diagnostics (cosmicflow.regime): exact correlation lengths, ε fractions, flags, and
the shipped AthenaK multiphase medium flagged unresolved at 1.5 PeV."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from particle_batches import log_times, make_batch, random_walk

from cosmicflow import regime
from cosmicflow import transport as tr
from cosmicflow.constants import C_CM_S, PC_CM, larmor_radius_pc


def test_correlation_length_of_a_single_mode_is_exact():
    """δB_x = sin(2π x/L): C(r x̂) = cos(2π r/L), ∫ to the first zero = L/(2π); along y and z
    the field is constant, C = 1, and the integral runs to half the box, L/2."""
    n, box = 64, 100.0
    x = (np.arange(n) + 0.5) * box / n
    bx = np.broadcast_to(np.sin(2 * np.pi * x / box)[:, None, None], (n, n, n)).astype(np.float32)
    zero = np.zeros((n, n, n), np.float32)
    lc, axes, stride = regime.correlation_length((bx, zero, zero + 3.0), np.full(3, box / n))
    assert stride == 1
    assert axes[0] == pytest.approx(box / (2 * np.pi), rel=2e-3)
    assert axes[1] == pytest.approx(box / 2) and axes[2] == pytest.approx(box / 2)
    assert lc == pytest.approx(axes.mean())
    # a large grid is sampled with a stride and gives the same answer for a smooth field
    lc2, axes2, stride2 = regime.correlation_length((bx, zero, zero), np.full(3, box / n), max_cells=16)
    assert stride2 == 4 and axes2[0] == pytest.approx(box / (2 * np.pi), rel=0.02)
    with pytest.raises(ValueError, match="no fluctuations"):
        regime.correlation_length((zero, zero, zero + 1.0), np.ones(3))


def test_fraction_above_one_with_a_straddling_bin():
    edges = np.logspace(-2, 2, 9)  # an edge at exactly 1
    counts = np.ones((2, 8))
    counts[1, :4] = 0
    np.testing.assert_allclose(regime.fraction_above(counts, edges), [0.5, 1.0])
    # threshold in the middle (in ln) of bin 4, [1, 10^0.5]: half of that bin counts
    assert regime.fraction_above(counts[0], edges, 10**0.25) == pytest.approx(3.5 / 8)
    assert math.isnan(float(regime.fraction_above(np.zeros(8), edges)))


def _stats(cell=1.0, box=100.0, b_med=3.0, lc=10.0):
    return {"cell_pc": cell, "box_pc": box, "median_B_uG": b_med, "rms_dB_uG": 1.0,
            "correlation_length_pc": lc, "correlation_length_axes_pc": [lc] * 3, "fft_stride": 1}


def test_diagnose_raises_each_flag_for_its_reason():
    d_par = 1e29  # λ∥ = 3 D∥/c = 3.2 pc, τ = 1.1e8 s
    good = regime.diagnose(larmor_radius_pc=2.0, b_ref_uG=3.0, duration_s=1e13, d_par_cm2_s=d_par,
                           mfp_basis="plateau", eps_gt1_fraction=0.2, field_stats=_stats(cell=0.1))
    assert good["regime_ok"] and good["caveats"] == ""
    assert good["rl_over_dx_ref"] == pytest.approx(20.0)
    assert good["mfp_par_pc"] == pytest.approx(3 * d_par / C_CM_S / PC_CM)
    bad = regime.diagnose(larmor_radius_pc=0.5, b_ref_uG=3.0, duration_s=1e9,
                          d_par_cm2_s=1e31, mfp_basis="running D(t_end), superdiffusive",
                          eps_gt1_fraction=0.0, field_stats=_stats(cell=1.0, box=100.0, b_med=6.0, lc=0.2))
    assert bad["rl_over_dx_median_B"] == pytest.approx(0.25)  # r_L halves where |B| doubles
    assert all(bad[f"flag_{f}"] for f in regime.FLAGS)
    assert not bad["regime_ok"]
    assert "does not resolve the gyration" in bad["caveats"] and "box" in bad["caveats"]
    assert bad["caveats"].count(" | ") == len(regime.FLAGS) - 1
    none = regime.diagnose(larmor_radius_pc=0.5, b_ref_uG=3.0, duration_s=1e9, d_par_cm2_s=math.nan,
                           mfp_basis="plateau", eps_gt1_fraction=math.nan, field_stats=None)
    assert not any(none[f"flag_{f}"] for f in regime.FLAGS)
    assert "no field statistics" in none["caveats"] and "unknown" in none["caveats"]


def test_thresholds_are_configurable_and_checked():
    th = regime.RegimeThresholds.from_config({"min_rl_cells": 0.1})
    d = regime.diagnose(larmor_radius_pc=0.5, b_ref_uG=3.0, duration_s=1e9, d_par_cm2_s=math.nan,
                        mfp_basis="plateau", eps_gt1_fraction=0.5, field_stats=_stats(), thresholds=th)
    assert not d["flag_rl_unresolved"]
    with pytest.raises(ValueError, match="unknown key"):
        regime.RegimeThresholds.from_config({"min_rl": 1})
    with pytest.raises(ValueError, match="min_rl_cells"):
        regime.RegimeThresholds(min_rl_cells=-1)


def test_transport_result_and_summary_carry_the_diagnostics(tmp_path):
    rng = np.random.default_rng(4)
    t = log_times(30, 1e8, 1e11)
    disp, _, _ = random_walk(rng, 1000, t, 1e-8, 1e-9, (0, 0, 1))
    ds = make_batch(t, disp, energy_PeV=1.5)
    ds["hist_epsilon"].values[:] = 0
    ds["hist_epsilon"].values[2, 2] = 10  # all samples below ε = 1 (edges 1e-4 .. 10)
    path = tmp_path / "b0.h5"
    ds.to_netcdf(path, engine="h5netcdf")
    stats = tmp_path / "field_statistics.json"
    stats.write_text(json.dumps(_stats(cell=0.78, box=100.0, b_med=3.5, lc=8.0)))
    out = tr.write_transport([path], tmp_path / "res.nc", {"bootstrap_samples": 200},
                             field_statistics=stats)
    import xarray as xr

    with xr.open_dataset(out, engine="h5netcdf") as res:
        row = tr.summary_row(res.load())
    assert row["flag_rl_unresolved"] and row["flag_no_nonadiabatic"]
    assert row["eps_gt1_fraction"] == 0.0
    assert row["rl_over_dx_ref"] == pytest.approx(larmor_radius_pc(1.5, 3.0) / 0.78)
    assert row["lc_pc"] == 8.0
    assert row["mfp_basis"] == "plateau" if row["D_par_plateau_reached"] else row["mfp_basis"].startswith("running")
    assert not row["regime_ok"] and "resolve" in row["caveats"]


def test_shipped_multiphase_medium_is_unresolved_at_1p5_pev(athenak_data, tmp_path):
    """config/paper.yaml's multiphase medium (ism-48, 2.08 pc cells): r_L(1.5 PeV, 3 µG) is
    0.26 cells, far below 10; the flag is raised at 1.5 PeV and still at 15 PeV (2.6 cells)."""
    from cosmicflow.athenak import athenak_to_snapshot

    snap = athenak_to_snapshot(athenak_data / "ism-48" / "ISM48.mhd_w_bcc.00002.bin",
                               tmp_path / "snapshot.h5", {}, {}, {})
    stats = regime.read_field_statistics(regime.write_field_statistics(snap, tmp_path / "fs.json"))
    assert stats["cell_pc"] == pytest.approx(100 / 48, rel=1e-6)
    assert 2 * stats["cell_pc"] < stats["correlation_length_pc"] < 50  # between the cell and the box
    for e_pev, cells in ((1.5, 0.26), (15.0, 2.6)):
        rl = larmor_radius_pc(e_pev, 3.0)
        d = regime.diagnose(larmor_radius_pc=rl, b_ref_uG=3.0, duration_s=1e12, d_par_cm2_s=math.nan,
                            mfp_basis="plateau", eps_gt1_fraction=math.nan, field_stats=stats)
        assert d["rl_over_dx_ref"] == pytest.approx(cells, rel=0.01)
        assert d["flag_rl_unresolved"]
