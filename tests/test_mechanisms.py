"""Geometry baseline and adiabaticity-class split (cosmicflow.mechanisms) on constructed batches."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from particle_batches import labelled_ou_walk, make_batch, random_labels, with_classes, write_batch

from cosmicflow import transport as tr
from cosmicflow.io import InputError

FAST = tr.TransportParams(bootstrap_samples=300)
F = np.array([0.2, 0.3, 0.5])  # phase probabilities per step
OUT = np.unique(np.geomspace(50, 8000, 30).astype(int))  # output step counts


def _walk(seed, tau, next_labels, n_groups, speed=None, n=400):
    rng = np.random.default_rng(seed)
    return labelled_ou_walk(rng, n, int(OUT[-1]), 1.0, tau, 1e-3, OUT, next_labels, n_groups, speed)


def _result(time, disp, gdisp, gtime):
    ds = make_batch(time, disp, phase_displacement=gdisp, phase_time=gtime)
    return tr.analyse_transport(ds, FAST)


@pytest.fixture(scope="module")
def random_phase_result():
    # velocity correlation time 200 steps >> one step: labels drawn per step are "short dwell"
    return _result(*_walk(1, 200.0, random_labels(F), 3))


def _expected_ratio(tau, n_steps_window):
    """Exact ρ_ab for labels drawn independently per step on AR(1) velocities (a = e^{-1/τ}):
    ⟨Δr_a·Δr_b⟩ = f_a f_b Σ_ij C_ij + (δ_ab f_a − f_a f_b) Σ_i C_ii, averaged over the window
    like the estimator (each time weighted 1/t)."""
    a = np.exp(-1.0 / tau)
    n = np.asarray(n_steps_window, float)
    s_all = n * (1 + a) / (1 - a) - 2 * a * (1 - a**n) / (1 - a) ** 2  # Σ_ij a^|i-j|
    ff = np.outer(F, F)
    num = ff[None] * (s_all / n)[:, None, None] + (np.diag(F) - ff)[None] * 1.0
    return num.mean(axis=0) / (ff * (s_all / n).mean())


def test_random_per_step_phases_give_baseline_ratio_one(random_phase_result):
    res = random_phase_result
    np.testing.assert_allclose(res["phase_fraction_late"].values, F, atol=0.01)
    t = res["time"].values
    expected = _expected_ratio(200.0, t[tr.late_window(t, FAST)])
    # geometry: with dwell (1 step) << correlation time (200 steps) the baseline is 1 to ~1 %
    assert np.all(np.abs(expected - 1) < 0.012)
    for comp in ("par", "perp"):
        ratio = res[f"phase_baseline_ratio_{comp}"].values
        bounds = res[f"phase_baseline_ratio_{comp}_interval"].values
        for a in range(3):
            for b in range(3):
                lo, hi = bounds[a, b]
                assert abs(ratio[a, b] - expected[a, b]) <= 1.5 * (hi - lo), (comp, a, b, ratio[a, b], bounds[a, b])
                assert abs(ratio[a, b] - 1) < 0.05
        # the interval is informative: a few percent, not an order of magnitude
        assert np.all(bounds[..., 1] - bounds[..., 0] < 0.3)
        np.testing.assert_allclose(res[f"phase_share_{comp}"].values, F, atol=0.03)
        np.testing.assert_allclose(res[f"phase_share_{comp}"].values.sum(), 1.0, rtol=1e-12)
        np.testing.assert_allclose(res[f"phase_mobility_{comp}"].values, 1.0, atol=0.1)


def test_uncorrelated_steps_are_not_geometry():
    # the same labels on a walk whose velocity decorrelates every step: D_aa = f_a D, ratio 1/f_a
    res = _result(*_walk(2, 0.05, random_labels(F), 3))
    diag = np.diagonal(res["phase_baseline_ratio_perp"].values)
    np.testing.assert_allclose(diag, 1 / F, rtol=0.1)
    # ... while the share over the time fraction (mobility) is 1 in both limits
    np.testing.assert_allclose(res["phase_mobility_perp"].values, 1.0, atol=0.1)


def test_confining_phase_ratio_significantly_above_one():
    # phase 0 is entered rarely and held for ~10 correlation times with a slower speed: its
    # displacement decorrelates from the rest (long dwell), D_00 ~ f_0 D_0 >> f_0^2 D
    tau = 50.0

    def sticky(rng, labels):
        new = rng.choice([1, 2], size=labels.size, p=[0.4, 0.6])
        stay = (labels == 0) & (rng.random(labels.size) > 1 / 500)
        enter = (labels != 0) & (rng.random(labels.size) < 1 / 5000)
        return np.where(stay | enter, 0, new)

    res = _result(*_walk(3, tau, sticky, 3, speed=[0.5, 1.0, 1.0], n=600))
    f0 = float(res["phase_fraction_late"].values[0])
    assert 0.02 < f0 < 0.2
    for comp in ("par", "perp"):
        lo, _ = res[f"phase_baseline_ratio_{comp}_interval"].values[0, 0]
        assert lo > 2.0, (comp, res[f"phase_baseline_ratio_{comp}"].values[0, 0])
        # the short-dwell phases stay near the geometry value (within the spread that the
        # particle-to-particle variation of f_2 adds: <f_2^2> > <f_2>^2), far below phase 0
        r = res[f"phase_baseline_ratio_{comp}"].values
        assert abs(r[2, 2] - 1) < 0.3 and r[2, 2] < 0.5 * lo
        # the slow phase carries less than its time share: mobility ~ (speed ratio)^2 < 1
        m_lo, m_hi = res[f"phase_mobility_{comp}_interval"].values[0]
        assert m_hi < 0.6


def _class_batch(seed, n=200, hist=None):
    # joint (phase, class) label per step; 9 groups = 3 phases x 3 classes
    p = np.outer(F, [0.6, 0.3, 0.1]).ravel()
    time, disp, gdisp, gtime = _walk(seed, 100.0, random_labels(p), 9, n=n)
    nt = time.size
    jd = gdisp.reshape(n, nt, 3, 3, 3)
    jt = gtime.reshape(n, nt, 3, 3)
    ds = make_batch(time, disp, batch=seed)
    return with_classes(ds, jd, jt, scatter_counts=hist)


def test_class_split_sum_rule_and_joint_fractions(tmp_path):
    h0 = np.zeros((3, 8), np.int64)
    h0[0, 5] = 7
    h0[2, 3] = 2
    h1 = np.zeros((3, 8), np.int64)
    h1[2, 3] = 1
    h1[2, 4] = 3
    paths = [write_batch(_class_batch(s, hist=h), tmp_path / f"b{s}.h5") for s, h in ((10, h0), (11, h1))]
    res = tr.analyse_transport(tr.load_batches(paths), FAST)
    assert res.attrs["class_accounting"] == 1
    assert res.attrs["class_sum_rule_max_rel_dev_par"] < 1e-12
    assert res.attrs["class_sum_rule_max_rel_dev_perp"] < 1e-12
    for comp in ("par", "perp"):
        m = res[f"D_{comp}_class_matrix_late"].values
        # the late-window total from the same window is the class matrix sum, to round-off
        share = res[f"class_share_{comp}"].values
        np.testing.assert_allclose(share.sum(), 1.0, rtol=1e-12)
        np.testing.assert_allclose(m.sum(axis=1) / m.sum(), share, rtol=1e-12)
        assert np.all(np.abs(res[f"class_baseline_ratio_{comp}"].values - 1) < 0.5)
    joint = res["phase_class_fraction_late"].values
    np.testing.assert_allclose(joint.sum(axis=0), res["class_fraction_late"].values, rtol=1e-12)
    np.testing.assert_allclose(joint.sum(axis=1), res["phase_fraction_late"].values, rtol=1e-12)
    np.testing.assert_allclose(joint, np.outer(F, [0.6, 0.3, 0.1]), atol=0.01)
    np.testing.assert_array_equal(res["hist_epsilon_scatter"].values, h0 + h1)
    np.testing.assert_allclose(res["eps_scatter_fraction"].values[2, 3:5], [0.5, 0.5])
    assert list(res["eps_class"].values) == ["eps<0.1", "0.1<=eps<1", "eps>=1"]
    row = tr.summary_row(res)
    assert row["share_perp_eps>=1"] == pytest.approx(float(res["class_share_perp"].values[2]))
    assert "ratio_par_CNM_CNM" in row and "f_late_eps<0.1" in row


def test_class_accounting_off_leaves_phase_baseline_only(tmp_path):
    time, disp, gdisp, gtime = _walk(4, 100.0, random_labels(F), 3, n=50)
    res = _result(time, disp, gdisp, gtime)
    assert res.attrs["class_accounting"] == 0
    assert "class_share_perp" not in res.variables
    assert "phase_baseline_ratio_perp" in res.variables


def test_class_accounting_that_does_not_add_up_is_refused(tmp_path):
    ds = _class_batch(5, n=20)
    bad = ds.copy()
    bad["class_displacement"] = bad["class_displacement"] * 1.01
    with pytest.raises(InputError, match="class accounting does not add up"):
        tr.load_batches([write_batch(bad, tmp_path / "bad.h5")])
    partial = ds.drop_vars("phase_class_time")
    with pytest.raises(InputError, match="lacks"):
        tr.load_batches([write_batch(partial, tmp_path / "partial.h5")])


def test_summary_has_phase_baseline_columns(random_phase_result):
    row = tr.summary_row(random_phase_result)
    for ph in ("CNM", "UNM", "WNM"):
        for comp in ("par", "perp"):
            assert row[f"ratio_{comp}_{ph}_{ph}_lo"] <= row[f"ratio_{comp}_{ph}_{ph}"] <= row[f"ratio_{comp}_{ph}_{ph}_hi"]
    assert isinstance(xr, object)


def test_real_recorder_batches_split_by_class_with_the_sum_rule(tmp_path):
    """Batches from the pusher's class recorder: class matrices add up to D to round-off, the
    joint fractions to the phase and class fractions, and the ε-at-scattering histogram merges."""
    from cosmicflow import synthetic
    from cosmicflow.integrate import IntegrateSettings, integrate_batch
    from cosmicflow.snapshot import write_snapshot

    fields, _ = synthetic.multiphase(32, 100.0, 11, l_min_pc=12.5, l_max_pc=50.0)
    snap = write_snapshot(tmp_path / "snapshot.h5", fields, 100.0)
    st = IntegrateSettings(duration_gyroperiods=30.0, output_times=15)
    paths = [integrate_batch(snap, tmp_path / f"b{b}.h5", energy_pev=5.0, n_particles=20, batch=b,
                             medium="m", settings=st, progress=False) for b in (0, 1)]
    res = tr.analyse_transport(tr.load_batches(paths), FAST)
    assert res.attrs["class_accounting"] == 1
    assert res.attrs["class_sum_rule_max_rel_dev_par"] < 1e-10
    assert res.attrs["class_sum_rule_max_rel_dev_perp"] < 1e-10
    for comp in ("par", "perp"):
        np.testing.assert_allclose(res[f"class_share_{comp}"].values.sum(), 1.0, rtol=1e-10)
    joint = res["phase_class_fraction_late"].values
    np.testing.assert_allclose(joint.sum(axis=1), res["phase_fraction_late"].values, rtol=1e-10)
    np.testing.assert_allclose(joint.sum(axis=0), res["class_fraction_late"].values, rtol=1e-10)
    per_batch = sum(xr.load_dataset(p)["hist_epsilon_scatter"].values for p in paths)
    np.testing.assert_array_equal(res["hist_epsilon_scatter"].values, per_batch)
