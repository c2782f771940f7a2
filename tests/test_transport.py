"""Transport stage on fabricated particle batches with known answers (no integrator needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from particle_batches import (
    C_PC_S,
    hard_sphere_helices,
    log_times,
    make_batch,
    orthonormal_frame,
    random_walk,
    write_batch,
)

from cosmicflow import transport as tr
from cosmicflow.constants import PC_CM
from cosmicflow.io import InputError

REPO = Path(__file__).resolve().parents[1]
TILTED = np.array([1.0, 2.0, 2.0]) / 3.0  # a mean field along no axis, to catch projection bugs
FAST = tr.TransportParams(bootstrap_samples=300)


def analyse(ds: xr.Dataset, params: tr.TransportParams = FAST) -> xr.Dataset:
    return tr.analyse_transport(ds, params)


# --- units and the exact 2t / 4t denominators ------------------------------------------------


def test_one_pc_in_one_second_in_cm2_per_s():
    """Δr∥ = 1 pc at t = 1 s gives D∥ = 1/2 pc² s⁻¹ = PC_CM²/2 cm² s⁻¹ (4.7607e36)."""
    t = np.array([0.0, 0.5, 1.0])
    disp = np.zeros((4, 3, 3))
    disp[:, 2, :] = TILTED  # 1 pc along the mean field
    res = analyse(make_batch(t, disp, b0hat=TILTED))
    assert float(res["D_par"].sel(time=1.0)) == pytest.approx(0.5 * PC_CM**2, rel=1e-12)
    assert float(res["D_par"].sel(time=1.0)) == pytest.approx(4.7607e36, rel=1e-4)
    assert float(res["D_perp"].sel(time=1.0)) == pytest.approx(0.0, abs=1e-12 * PC_CM**2)
    disp[:, 2, :] = orthonormal_frame(TILTED)[1]  # 1 pc across it
    res = analyse(make_batch(t, disp, b0hat=TILTED))
    assert float(res["D_perp"].sel(time=1.0)) == pytest.approx(0.25 * PC_CM**2, rel=1e-12)
    assert res["D_par"].attrs["units"] == "cm^2 s^-1"


def test_denominators_2t_and_4t_exact():
    """Δr = a B̂0 + b e1 + c e2: D∥ = ⟨a²⟩/(2t), D⊥ = ⟨b² + c²⟩/(4t) to round-off."""
    rng = np.random.default_rng(3)
    t = log_times(5, 10.0, 1e3)
    n = 50
    abc = rng.normal(size=(n, t.size, 3)) * np.sqrt(t)[None, :, None]
    abc[:, 0] = 0.0
    disp = abc @ orthonormal_frame(TILTED)
    res = analyse(make_batch(t, disp, b0hat=TILTED))
    tp = t[1:]
    d_par = (abc[:, 1:, 0] ** 2).mean(0) / (2 * tp) * PC_CM**2
    d_perp = (abc[:, 1:, 1] ** 2 + abc[:, 1:, 2] ** 2).mean(0) / (4 * tp) * PC_CM**2
    np.testing.assert_allclose(res["D_par"].values, d_par, rtol=1e-12)
    np.testing.assert_allclose(res["D_perp"].values, d_perp, rtol=1e-12)
    assert np.all(res["time"].values > 0)


# --- a random walk with known D --------------------------------------------------------------


@pytest.fixture(scope="module")
def walk_batches(tmp_path_factory):
    """Two batch files of an anisotropic random walk, D∥ = 1e29, D⊥ = 3e28 cm²/s, tilted B̂0."""
    rng = np.random.default_rng(2024)
    d_par, d_perp = 1e29 / PC_CM**2, 3e28 / PC_CM**2
    t = log_times(40, 1e8, 1e11)
    folder = tmp_path_factory.mktemp("walk")
    paths = []
    for b in range(2):
        disp, pdisp, ptime = random_walk(rng, 1000, t, d_par, d_perp, TILTED, [0.1, 0.3, 0.6])
        ds = make_batch(t, disp, phase_displacement=pdisp, phase_time=ptime, b0hat=TILTED, batch=b)
        paths.append(write_batch(ds, folder / f"E2.5_isotropic_b{b}.h5"))
    return paths


@pytest.fixture(scope="module")
def walk_result(walk_batches, tmp_path_factory):
    out = tmp_path_factory.mktemp("walkres") / "E2.5_isotropic.nc"
    tr.write_transport(walk_batches, out, {"bootstrap_samples": 500})
    with xr.open_dataset(out, engine="h5netcdf") as res:
        return res.load()


def test_random_walk_gives_D_back_within_its_error(walk_result):
    res = walk_result
    assert res.attrs["n_particles"] == 2000 and res.attrs["n_batches"] == 2
    for comp, truth in (("par", 1e29), ("perp", 3e28)):
        assert res.attrs[f"D_{comp}_regime"] == "diffusive"
        assert res.attrs[f"D_{comp}_plateau_reached"] == 1
        value = float(res[f"D_{comp}_plateau"])
        err = float(res[f"D_{comp}_plateau_stderr"])
        lo, hi = res[f"D_{comp}_plateau_interval"].values
        print(f"D_{comp}: {value:.4e} +- {err:.2e} (truth {truth:.1e}), 68% [{lo:.3e}, {hi:.3e}]")
        assert abs(value - truth) < 3 * err
        assert err < 0.05 * truth  # the error itself is small enough to mean something
        assert lo < value < hi
        # the bootstrap half-width is the standard error for a mean (within 25 %)
        assert (hi - lo) / 2 == pytest.approx(err, rel=0.25)


def test_random_walk_running_curves_and_exponent(walk_result):
    res = walk_result
    gamma = res["msd_exponent"].values
    assert np.all(np.abs(gamma - 1) < 0.25)
    assert np.all(res["regime_par"].values == tr.REGIMES.index("diffusive"))
    # every running D is within 20 % of the truth at late times
    late = res["time"] >= res.attrs["plateau_window_s"][0]
    np.testing.assert_allclose(res["D_par"].where(late, drop=True), 1e29, rtol=0.2)


def test_random_walk_phase_fractions_and_effective_D(walk_result):
    """Phases drawn independently per interval: f_α = p_α and D_αα = f_α D, so D_eff,α = D."""
    res = walk_result
    np.testing.assert_allclose(res["phase_fraction_total"].values, [0.1, 0.3, 0.6], atol=0.01)
    np.testing.assert_allclose(res["phase_fraction"].sum("phase").values, 1.0, rtol=1e-12)
    for comp, truth in (("par", 1e29), ("perp", 3e28)):
        eff = res[f"D_eff_{comp}_plateau"].values
        np.testing.assert_allclose(eff, truth, rtol=0.1)
        bounds = res[f"D_eff_{comp}_plateau_interval"].values
        assert np.all(bounds[:, 0] < eff) and np.all(eff < bounds[:, 1])
        # independent increments: the off-diagonal matrix elements are small against the diagonal
        m = res[f"D_{comp}_matrix_plateau"].values
        assert np.all(np.abs(m - np.diag(np.diag(m))) < 0.1 * m.max())


# --- ballistic motion ------------------------------------------------------------------------


def test_ballistic_motion_is_flagged_and_gets_no_plateau():
    rng = np.random.default_rng(5)
    n = 300
    t = log_times(30, 1e7, 1e10)
    n_hat = rng.normal(size=(n, 3))
    n_hat /= np.linalg.norm(n_hat, axis=1, keepdims=True)
    disp = C_PC_S * t[None, :, None] * n_hat[:, None, :]
    res = analyse(make_batch(t, disp, b0hat=TILTED))
    for comp in ("par", "perp"):
        assert res.attrs[f"D_{comp}_regime"] == "ballistic"
        assert res.attrs[f"D_{comp}_late_exponent"] == pytest.approx(2.0, abs=1e-9)
        assert res.attrs[f"D_{comp}_plateau_reached"] == 0
        assert math.isnan(float(res[f"D_{comp}_plateau"]))
        assert np.all(np.isnan(res[f"D_{comp}_plateau_interval"].values))
        assert np.all(np.isnan(res[f"D_{comp}_matrix_plateau"].values))
        assert np.all(np.isnan(res[f"D_eff_{comp}_plateau"].values))
    np.testing.assert_allclose(res["msd_exponent"].values, 2.0, atol=1e-9)
    row = tr.summary_row(res)
    assert row["D_par_plateau_reached"] is False and math.isnan(row["D_par_cm2_s"])


@pytest.mark.parametrize(
    "gamma, regime",
    [(2.0, "ballistic"), (1.85, "ballistic"), (1.5, "superdiffusive"), (1.1, "diffusive"),
     (0.9, "diffusive"), (0.5, "subdiffusive"), (math.nan, None)],
)
def test_regime_rule(gamma, regime):
    code = int(tr.classify_exponent(gamma, tr.TransportParams()))
    assert code == (tr.REGIMES.index(regime) if regime else -1)


def test_local_exponent_of_a_power_law():
    t = np.geomspace(1.0, 1e4, 17)
    msd = xr.DataArray(3.0 * t**1.37, coords={"time": t}, dims="time")
    np.testing.assert_allclose(tr.local_exponent(msd).values, 1.37, rtol=1e-12)
    assert tr.window_exponent(t, msd.values, t > 10) == pytest.approx(1.37, rel=1e-12)


def test_subdiffusive_saturation_gets_no_plateau():
    """Displacements frozen after a short time (trapped particles): γ → 0, no plateau."""
    rng = np.random.default_rng(8)
    t = log_times(30, 1e7, 1e10)
    disp, _, _ = random_walk(rng, 500, np.minimum(t, 1e8), 1e-8, 1e-8, TILTED)
    res = analyse(make_batch(t, disp, b0hat=TILTED))
    assert res.attrs["D_par_regime"] == "subdiffusive"
    assert math.isnan(float(res["D_par_plateau"]))


# --- the phase decomposition -----------------------------------------------------------------


def test_sum_rule_holds_to_round_off_with_random_phases():
    rng = np.random.default_rng(11)
    t = log_times(20, 1.0, 1e3)
    disp, pdisp, ptime = random_walk(rng, 400, t, 2.0, 0.5, TILTED, [0.25, 0.25, 0.5])
    res = analyse(make_batch(t, disp, phase_displacement=pdisp, phase_time=ptime, b0hat=TILTED))
    for comp in ("par", "perp"):
        total = res[f"D_{comp}_matrix"].sum(("phase_a", "phase_b"))
        np.testing.assert_allclose(total.values, res[f"D_{comp}"].values, rtol=1e-12)
        assert res.attrs[f"sum_rule_max_rel_dev_{comp}"] < 1e-12
        m = res[f"D_{comp}_matrix"].values
        np.testing.assert_allclose(m, np.swapaxes(m, 1, 2), rtol=1e-12)  # symmetric
        # off-diagonal terms are really there (at t_1 each particle has seen one phase only)
        assert m[0, 0, 1] == 0 and np.all(np.abs(m[1:, 0, 1]) > 0)
    assert res.attrs["sum_rule_ok"] == 1


def test_sum_rule_violation_is_reported():
    """A batch whose phase displacements do not add up to Δr is flagged (the check can fail)."""
    rng = np.random.default_rng(12)
    t = log_times(10, 1.0, 1e3)
    disp, pdisp, ptime = random_walk(rng, 100, t, 1.0, 1.0, TILTED, [0.3, 0.3, 0.4])
    pdisp[:, :, 0, :] *= 1.01
    res = analyse(make_batch(t, disp, phase_displacement=pdisp, phase_time=ptime, b0hat=TILTED))
    assert res.attrs["sum_rule_ok"] == 0
    assert 1e-4 < res.attrs["sum_rule_max_rel_dev_par"] < 0.1


def test_one_phase_medium_D_eff_equals_total():
    rng = np.random.default_rng(13)
    t = log_times(20, 1.0, 1e3)
    disp, _, _ = random_walk(rng, 1000, t, 2.0, 0.5, TILTED)
    pdisp = np.zeros(disp.shape[:2] + (3, 3))
    pdisp[:, :, 1, :] = disp  # everything in the UNM
    ptime = np.zeros(disp.shape[:2] + (3,))
    ptime[:, :, 1] = t
    res = analyse(make_batch(t, disp, phase_displacement=pdisp, phase_time=ptime, b0hat=TILTED))
    np.testing.assert_allclose(res["phase_fraction_total"].values, [0, 1, 0])
    for comp in ("par", "perp"):
        np.testing.assert_allclose(
            res[f"D_eff_{comp}"].sel(phase="UNM").values, res[f"D_{comp}"].values, rtol=1e-12
        )
        eff = res[f"D_eff_{comp}_plateau"].values
        assert eff[1] == pytest.approx(float(res[f"D_{comp}_plateau"]), rel=1e-12)
        assert np.isnan(eff[0]) and np.isnan(eff[2])  # never visited: NaN, not infinity


# --- pitch-angle diffusion -------------------------------------------------------------------


def hard_sphere_mu(rng, mu0, t, nu):
    """μ(t) at the output times for isotropic hard-sphere jumps at rate ν in a uniform field.

    Between scatterings μ is constant; each scattering draws μ uniform in [−1, 1]. Sampling
    'at least one scattering in the interval' is exact at the output times (Poisson process).
    """
    mu = np.empty((mu0.size, t.size))
    mu[:, 0] = mu0
    for k in range(1, t.size):
        hit = rng.random(mu0.size) < -np.expm1(-nu * (t[k] - t[k - 1]))
        mu[:, k] = np.where(hit, rng.uniform(-1, 1, mu0.size), mu[:, k - 1])
    return mu


def test_dmumu_hard_sphere_vs_mu0_matches_exact_formula():
    """⟨(μ − μ0)²⟩ = (1 − e^{−νt})(1/3 + μ0²) exactly, → (ν/2)(1/3 + μ0²)·2t at νt ≪ 1."""
    rng = np.random.default_rng(21)
    mu0_values = np.array([0.0, 0.4, 0.8, 0.95])
    per = 1500
    mu0 = np.repeat(mu0_values, per) + rng.normal(scale=1e-9, size=mu0_values.size * per)
    ds0 = make_batch(log_times(3, 1, 2), np.zeros((1, 4, 3)))
    omega = ds0.attrs["omega_ref_rad_s"]
    gyro = 2 * np.pi / omega
    t = log_times(30, 0.1 * gyro, 20 * gyro)
    nu = 0.005 * omega  # νt ≤ 0.3 over the 1–10 gyro-period window
    mu = hard_sphere_mu(rng, mu0, t, nu)
    ds = make_batch(t, np.zeros((mu0.size, t.size, 3)), mu=mu, injection="mono")
    res = analyse(ds)
    assert np.allclose(res["mu0"].values, mu0_values, atol=1e-6)
    assert list(res["particles_per_mu0"].values) == [per] * mu0_values.size
    tt = t[1:]
    window = (tt * omega / (2 * np.pi) >= 1) & (tt * omega / (2 * np.pi) <= 10)
    for i, m0 in enumerate(mu0_values):
        exact = np.mean(-np.expm1(-nu * tt[window]) * (1 / 3 + m0**2) / (2 * tt[window] * omega))
        small_t_limit = 0.5 * (nu / omega) * (1 / 3 + m0**2)
        value = float(res["D_mumu_over_omega_mu0"][i])
        err = float(res["D_mumu_over_omega_mu0_stderr"][i])
        print(f"mu0={m0}: D_mumu/Omega = {value:.4e} +- {err:.1e}, exact {exact:.4e}, "
              f"nu t << 1 limit {small_t_limit:.4e}")
        assert abs(value - exact) < 3 * err
        assert value == pytest.approx(small_t_limit, rel=0.15)
    # the running curve per mu0 follows the exact law where many particles have scattered
    last = res["D_mumu_over_omega_running_mu0"].isel(time=-1).values
    exact_last = -np.expm1(-nu * t[-1]) * (1 / 3 + mu0_values**2) / (2 * t[-1] * omega)
    np.testing.assert_allclose(last, exact_last, rtol=0.1)


def test_dmumu_brownian_mu_walk():
    """μ(t) = μ0 + √(2 D t)·N(0,1): D_μμ/Ω = D/Ω, diffusive, within its error."""
    rng = np.random.default_rng(22)
    ds0 = make_batch(log_times(3, 1, 2), np.zeros((1, 4, 3)))
    omega = ds0.attrs["omega_ref_rad_s"]
    gyro = 2 * np.pi / omega
    t = log_times(25, 0.1 * gyro, 30 * gyro)
    d_mumu = 1e-3 * omega
    n = 2000
    steps = rng.normal(size=(n, t.size - 1)) * np.sqrt(2 * d_mumu * np.diff(t))
    mu0 = rng.uniform(-0.5, 0.5, n)
    mu = mu0[:, None] + np.concatenate([np.zeros((n, 1)), np.cumsum(steps, axis=1)], axis=1)
    res = analyse(make_batch(t, np.zeros((n, t.size, 3)), mu=mu))
    value = float(res["D_mumu_over_omega_early"])
    err = float(res["D_mumu_over_omega_early_stderr"])
    assert abs(value - 1e-3) < 3 * err and err < 5e-5
    assert res.attrs["D_mumu_regime"] == "diffusive"
    assert "mu0" not in res.dims  # isotropic runs get no D_mumu(mu0)


def test_bootstrap_interval_covers_truth_at_about_68_percent():
    rng = np.random.default_rng(31)
    params = tr.TransportParams(bootstrap_samples=400)
    t = np.array([0.0, 1.0, 2.0, 4.0])
    mask = np.ones(3, bool)
    hits, reps = 0, 300
    for r in range(reps):
        disp, _, _ = random_walk(rng, 80, t, 1.0, 1.0)
        per = disp[:, 1:, 2] ** 2 / (2 * t[1:])
        est = tr.window_estimate(per, mask, tr.TransportParams(bootstrap_samples=400, bootstrap_seed=r))
        hits += est.lower <= 1.0 <= est.upper
    coverage = hits / reps
    print(f"bootstrap 68% interval coverage: {coverage:.3f} over {reps} random walks")
    assert 0.58 <= coverage <= 0.78
    assert params.interval_percent == pytest.approx(68.27)


# --- files, merging, errors ------------------------------------------------------------------


def test_batches_of_different_runs_are_refused(tmp_path):
    t = log_times(5, 1.0, 10.0)
    disp = np.zeros((3, t.size, 3))
    a = write_batch(make_batch(t, disp, energy_PeV=2.5), tmp_path / "a.h5")
    b = write_batch(make_batch(t, disp, energy_PeV=5.0), tmp_path / "b.h5")
    out = tmp_path / "res.nc"
    with pytest.raises(InputError, match=r"b\.h5.*energy_PeV"):
        tr.write_transport([a, b], out)
    assert not out.exists() and not list(tmp_path.glob(".res.nc*"))


def test_realisation_batches_merge_despite_roundoff_in_mean_field_direction(tmp_path):
    """Outputs of one run give B0 directions whose zero components differ by ~1e-11 (round-off
    of each snapshot's <B>); those batches are one medium. A different axis is still refused."""
    t = log_times(5, 1.0, 10.0)
    disp = np.zeros((3, t.size, 3))
    a = write_batch(make_batch(t, disp, b0hat=(-2.9e-12, 1.7e-14, 1.0)), tmp_path / "a.h5")
    b = write_batch(make_batch(t, disp, b0hat=(1.1e-11, 3.6e-12, 1.0)), tmp_path / "b.h5")
    assert tr.load_batches([a, b]).sizes["particle"] == 6
    c = write_batch(make_batch(t, disp, b0hat=(1e-3, 0.0, 1.0)), tmp_path / "c.h5")
    with pytest.raises(InputError, match=r"c\.h5.*mean_field_direction"):
        tr.load_batches([a, c])


def test_batch_missing_a_variable_is_refused_by_name(tmp_path):
    t = log_times(5, 1.0, 10.0)
    ds = make_batch(t, np.zeros((3, t.size, 3))).drop_vars("phase_time")
    p = write_batch(ds, tmp_path / "bad.h5")
    with pytest.raises(InputError, match=r"bad\.h5.*'phase_time'"):
        tr.load_batches([p])


def test_batch_with_wrong_units_is_refused(tmp_path):
    t = log_times(5, 1.0, 10.0)
    ds = make_batch(t, np.zeros((3, t.size, 3)))
    ds["displacement"].attrs["units"] = "cm"
    p = write_batch(ds, tmp_path / "cm.h5")
    with pytest.raises(InputError, match=r"cm\.h5.*'displacement' has units 'cm'"):
        tr.load_batches([p])


def test_summary_table(walk_result, tmp_path):
    a = tmp_path / "a.nc"
    walk_result.to_netcdf(a, engine="h5netcdf")
    b_res = walk_result.copy()
    b_res.attrs = {**walk_result.attrs, "medium": "isothermal"}
    b = tmp_path / "b.nc"
    b_res.to_netcdf(b, engine="h5netcdf")
    out = tr.write_summary([a, b], tmp_path / "transport_summary.csv")
    table = pd.read_csv(out)
    assert list(table["medium"]) == ["isothermal", "synthetic"]
    for col in ("D_par_cm2_s", "D_perp_lo_cm2_s", "D_mumu_over_omega", "f_WNM",
                "D_par_CNM_UNM_cm2_s", "D_eff_perp_WNM_hi_cm2_s", "D_par_regime",
                "sum_rule_max_rel_dev_par"):
        assert col in table.columns
    assert table["D_par_cm2_s"].iloc[0] == pytest.approx(float(walk_result["D_par_plateau"]), rel=1e-5)
    assert table["D_par_regime"].iloc[0] == "diffusive"


def test_transport_params_match_the_schema_defaults():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    props = schema["properties"]["transport"]["properties"]
    defaults = tr.TransportParams().as_dict()
    assert set(props) == set(defaults)
    for key, spec in props.items():
        want = defaults[key]
        if key == "regime":
            sub = spec["properties"]
            assert set(sub) == set(want)
            assert all(sub[k]["default"] == want[k] and "description" in sub[k] for k in sub)
            continue
        assert (list(want) if isinstance(want, tuple) else want) == spec["default"], key
        assert "description" in spec and "type" in spec
    with pytest.raises(ValueError, match="unknown key"):
        tr.TransportParams.from_config({"plateau_window": 1})
    with pytest.raises(ValueError, match="diffusive_tolerance"):
        tr.TransportParams(diffusive_tolerance=1.5)


# --- quasi-linear theory ---------------------------------------------------------------------


def test_slab_spectrum_has_unit_power():
    from scipy.integrate import quad

    total, _ = quad(lambda x: float(tr.kolmogorov_slab_spectrum(x)), -np.inf, np.inf)
    assert total == pytest.approx(1.0, rel=1e-7)


def test_qlt_dmumu_shape():
    mu = np.linspace(-1, 1, 41)
    d = tr.qlt_slab_dmumu_over_omega(mu, 0.1, 0.01)
    np.testing.assert_allclose(d, d[::-1], rtol=1e-12)
    assert d[0] == 0 and d[-1] == 0 and d[20] == 0 and np.all(d[1:20] > 0)


def test_qlt_d_par_small_rigidity_limit():
    r"""R = r_L/ℓ ≪ 1: pure power law G̃ ≈ C x^{-s} gives the closed form

    D∥ = r_L c (B0²/δB²) R^{1−s} / (2π C) · [1/(2−s) − 1/(4−s)]  (= 18/7 for s = 5/3),

    from D∥ = (r_L c/4) ∫0^1 (1−μ²)²/(D_μμ/Ω) dμ with D_μμ/Ω = (π/2) C (δB²/B0²)(1−μ²)(Rμ)^{s−1}.
    """
    s, level, rl = 5.0 / 3.0, 0.01, 1.0
    c_norm = math.gamma(s / 2) / (math.sqrt(math.pi) * math.gamma((s - 1) / 2))
    for rig in (1e-3, 1e-4):
        closed = (rl * PC_CM * C_PC_S * PC_CM) / level * rig ** (1 - s) / (2 * math.pi * c_norm) * (
            1 / (2 - s) - 1 / (4 - s))
        assert tr.qlt_slab_d_par(rl, rl / rig, level, s) == pytest.approx(closed, rel=3 * rig**2 + 1e-7)


def test_qlt_d_par_matches_a_direct_integration_of_dmumu():
    """The weighted quadrature equals a plain sum over the public D_μμ (substitution μ = u³)."""
    rig, level, rl = 0.2, 0.05, 0.9
    u = np.linspace(0, 1, 200001)[1:-1]
    mu = u**3
    f = (1 - mu**2) ** 2 / tr.qlt_slab_dmumu_over_omega(mu, rig, level) * 3 * u**2
    # end points by their limits: f(u→0) is finite for s = 5/3, f(1) = 0 as D_μμ ∝ 1 − μ²
    direct = 0.25 * rl * PC_CM * C_PC_S * PC_CM * np.trapezoid(np.r_[f[0], f, 0.0], np.r_[0, u, 1])
    assert tr.qlt_slab_d_par(rl, rl / rig, level) == pytest.approx(direct, rel=1e-5)


def test_bootstrap_in_chunks_equals_one_draw(monkeypatch):
    """Bounding memory (drawing resamples in chunks) does not change the resamples."""
    rng = np.random.default_rng(41)
    q = rng.exponential(size=(257, 3))
    params = tr.TransportParams(bootstrap_samples=50, bootstrap_seed=9)
    whole = tr.bootstrap_means(q, params)
    monkeypatch.setattr(tr, "_BOOTSTRAP_CHUNK_ELEMENTS", 1000)  # 1 sample per chunk
    np.testing.assert_array_equal(tr.bootstrap_means(q, params), whole)
    # and it is a real resampling: the spread of the means is the standard error
    np.testing.assert_allclose(whole.std(axis=0), q.std(axis=0) / np.sqrt(257), rtol=0.35)


@pytest.mark.parametrize("omega_over_nu", [0.3, 1.0, 3.0])
def test_green_kubo_hard_sphere_helices(omega_over_nu):
    """Exact helices with hard-sphere scattering (no integrator): the estimators give
    D∥ = v²/(3ν) and D⊥ = (v²/3) ν/(ν² + Ω²) (velocity correlations e^{−νt} and
    e^{−νt} cos Ωt), in a tilted mean field."""
    rng = np.random.default_rng(int(10 * omega_over_nu))
    ds0 = make_batch(log_times(3, 1, 2), np.zeros((1, 4, 3)))
    omega = ds0.attrs["omega_ref_rad_s"]
    nu = omega / omega_over_nu
    # to ν t_end = 200: the late window starts at ν t ≈ 63, finite-time bias ≈ −1 %
    t_req = log_times(40, 0.01 / nu, 200 / nu)
    t, disp, mu = hard_sphere_helices(rng, t_req, omega, nu, TILTED, n=1500)
    ds = make_batch(t, disp, mu=mu, b0hat=TILTED)
    res = analyse(ds)
    expected = {"par": C_PC_S**2 / (3 * nu), "perp": C_PC_S**2 / 3 * nu / (nu**2 + omega**2)}
    b0hat = tr.mean_field_direction(ds)
    sq_par, sq_perp = (x.values[:, 1:] for x in tr._per_particle_sq(ds, b0hat))
    mask = tr.late_window(t[1:], FAST)
    for comp, truth_pc2 in expected.items():
        truth = truth_pc2 * PC_CM**2
        # the estimator itself, independent of the plateau decision (which refuses a true
        # plateau in ~5 % of runs by design; its rate is tested in test_plateau_statistics)
        per = (sq_par / (2 * t[1:]) if comp == "par" else sq_perp / (4 * t[1:])) * PC_CM**2
        est = tr.window_estimate(per, mask, FAST)
        value, err = est.value, est.stderr
        print(f"Omega/nu = {omega_over_nu}: D_{comp} = {value:.4e} +- {err:.1e}, Green-Kubo {truth:.4e}, "
              f"regime {res.attrs[f'D_{comp}_regime']}")
        assert abs(res.attrs[f"D_{comp}_late_exponent"] - 1) < 0.1
        if res.attrs[f"D_{comp}_regime"] == "diffusive":
            assert float(res[f"D_{comp}_plateau"]) == pytest.approx(value, rel=1e-12)
        assert abs(value - truth) < 3 * err + 0.015 * truth  # + the finite-time bias bound
        assert err < 0.04 * truth
