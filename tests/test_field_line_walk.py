"""Field-line random walk and patch statistics (cosmicflow.fieldlines, issue 13)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from cosmicflow import synthetic
from cosmicflow.fieldlines import (
    FieldLineParams,
    field_line_statistics,
    first_passage_perp_sq,
    fit_power_law,
    flrw_expectations,
    phase_runs,
    slab_field_line_msd,
    trace_many,
)
from cosmicflow.snapshot import read_snapshot, write_snapshot


@pytest.fixture(scope="module")
def slab_medium():
    n, box = 32, 100.0
    fields, attrs = synthetic.slab(n, box, seed=3, b0_uG=3.0, db_rms_uG=1.5, l_min_pc=12.5, l_max_pc=100.0)
    return fields, box / n


def test_slab_field_lines_match_the_exact_formula(slab_medium):
    """<Δx²+Δy²>(z) of traced slab lines = (2/B0²)∫(z−u)[R_x(u)+R_y(u)]du over the realisation."""
    fields, dz = slab_medium
    bx, by = fields["bx"], fields["by"]
    refine = 8
    du = dz / refine
    z0 = 0.5 * dz + np.arange(32 * refine) * du  # every sub-grid start point, 4 x-y offsets
    xy = np.array([[10.0, 20.0], [37.3, 81.1], [55.0, 5.0], [90.2, 60.7]])
    seeds = np.array([[x, y, z] for x, y in xy for z in z0])
    assert seeds.shape[0] >= 1000
    z_t = du * np.array([4, 16, 64, 200, 300, 700])  # up to 2.7 boxes along B0 (not whole boxes:
    # this slab realisation has no k = 0 mode, so a line returns to its x, y after each box)
    lines = trace_many(fields, 0.0, dz, seeds, length_pc=1.6 * z_t[-1], step_pc=du / 2)
    sq = first_passage_perp_sq(lines, (0, 0, 1), z_t)
    assert np.all(np.isfinite(sq))
    traced = sq[:, 1].mean(axis=0)  # forward branch: z0 -> z0 + z, the formula's average
    exact = (slab_field_line_msd(bx[0, 0], dz, 3.0, z_t, refine)
             + slab_field_line_msd(by[0, 0], dz, 3.0, z_t, refine))
    np.testing.assert_allclose(traced, exact, rtol=1e-4)
    # the backward branch averages over the same start points: the same law
    np.testing.assert_allclose(sq[:, 0].mean(axis=0), exact, rtol=1e-4)


def test_tracer_is_bit_identical_for_one_and_two_threads(slab_medium):
    fields, dz = slab_medium
    seeds = np.random.default_rng(0).random((64, 3)) * 100
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = trace_many(fields, 0.0, dz, seeds, 50.0, 0.5)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = trace_many(fields, 0.0, dz, seeds, 50.0, 0.5)
    finally:
        numba.set_num_threads(old)
    np.testing.assert_array_equal(one, two)


def test_phase_runs_drop_cut_segments_and_measure_arc_length():
    ph = np.array([[2, 2, 0, 0, 0, 1, 2, 2], [1, 1, 1, 1, 1, 1, 1, 1], [0, 2, 0, 0, 2, 2, 2, 1]])
    runs = phase_runs(ph, 0.5)
    np.testing.assert_allclose(runs[0], [1.5, 1.0])
    np.testing.assert_allclose(runs[1], [0.5])
    np.testing.assert_allclose(runs[2], [0.5, 1.5])


def test_power_law_exponent_recovered_within_its_interval():
    rng = np.random.default_rng(5)
    alpha, n = 2.5, 4000
    tail = (1 - rng.random(n)) ** (-1 / (alpha - 1))  # Pareto, x >= 1
    body = rng.uniform(0.2, 1.0, 1500)  # not a power law: the fit must cut it off
    fit = fit_power_law(np.concatenate([tail, body]), bootstrap_samples=200, seed=1)
    half = 0.5 * (fit.alpha_upper - fit.alpha_lower)
    assert fit.alpha_lower < fit.alpha < fit.alpha_upper
    assert abs(fit.alpha - alpha) <= 2 * half, fit
    assert half < 0.15 and abs(half - fit.alpha_stderr) < 0.5 * fit.alpha_stderr + 0.02
    assert 0.9 < fit.x_min < 3.0  # the uniform body below 1 is cut off
    # a Sparre-Andersen exponent 3/2 is told apart from 2.5
    assert fit.alpha_lower > 1.5 + 3 * half


def test_lattice_power_law_with_discrete_correction():
    rng = np.random.default_rng(6)
    step = 0.25
    x = (1 - rng.random(6000)) ** (-1 / 1.5) * 2.0  # alpha = 2.5, x >= 2 pc
    on_lattice = np.ceil(x / step) * step
    fit = fit_power_law(on_lattice, lattice=step, bootstrap_samples=100)
    assert abs(fit.alpha - 2.5) < 3 * (fit.alpha_upper - fit.alpha_lower) / 2 + 0.02


def test_field_line_statistics_on_a_snapshot(tmp_path, slab_medium):
    fields, dz = slab_medium
    f = dict(fields)
    # a temperature with three phases in z slabs: CNM 1/8, UNM 3/8, WNM 1/2 of the cells
    z = np.arange(32)
    t = np.where(z < 4, 100.0, np.where(z < 16, 1000.0, 8000.0))
    f["temperature"] = np.broadcast_to(t[None, None, :], (32, 32, 32)).astype(np.float32)
    snap = read_snapshot(write_snapshot(tmp_path / "s.h5", f, 100.0))
    ds = field_line_statistics(snap, FieldLineParams(n_lines=200, length_box=2.0, step_cells=0.5,
                                                     bootstrap_samples=20))
    np.testing.assert_allclose(ds["volume_fraction"].values, [1 / 8, 3 / 8, 1 / 2])
    # lines run along z, so the arc length in each phase follows the z slabs
    np.testing.assert_allclose(ds["linear_filling_fraction"].values, [1 / 8, 3 / 8, 1 / 2], atol=0.02)
    # the CNM slab is 4 cells = 12.5 pc thick along z, the arc length a little longer
    mean_cnm = float(ds["segment_mean_pc"].values[0])
    assert 12.5 <= mean_cnm < 12.5 * 1.2
    assert ds["kappa_fl"].attrs["units"] == "pc"
    # slab lines return to their start after each box (no k = 0 mode): no diffusive walk, so no
    # plateau is invented; the running peak is reported instead
    assert ds.attrs["kappa_fl_regime"] != "diffusive"
    assert np.isnan(float(ds["kappa_fl_plateau"]))
    k = float(ds["kappa_fl_peak"])
    lo, hi = ds["kappa_fl_peak_interval"].values
    assert lo <= k <= hi and k > 0
    e = flrw_expectations(k, 1e30, 1e12)
    assert e["ballistic_cm2_s"] == pytest.approx(0.5 * k * 3.0856775814913673e18 * 2.99792458e10)
