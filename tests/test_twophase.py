"""Two-phase laws, QLT from D_mumu, Bohm limit, energy slopes and the Galactic implications.

Expected values are closed forms worked out here (the textbook cases named in each test), never
outputs of the code under test. The physics through the integrator is in
tests/test_twophase_physics.py.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from cosmicflow import implications as im
from cosmicflow import twophase as tp
from cosmicflow import transport as tr
from cosmicflow.constants import C_CM_S, M_U, PC_CM, YR_S

from particle_batches import log_times, make_batch, random_walk

PC_C = PC_CM * C_CM_S


# ------------------------------------------------------------------------------------------
# means and rates
# ------------------------------------------------------------------------------------------


def test_two_phase_means_match_seed001_eq5():
    # two phases, f = 0.1 of the low-diffusion phase, kappa_low = 1, kappa_high = 100
    f, lo, hi = 0.1, 1.0, 100.0
    kh, ka = tp.mean_bounds([lo, hi], [f, 1 - f])
    assert kh == pytest.approx(1.0 / (f / lo + (1 - f) / hi), rel=1e-14)
    assert ka == pytest.approx(f * lo + (1 - f) * hi, rel=1e-14)
    assert kh < ka
    # unvisited phases carry no weight; fractions are renormalised
    kh3, ka3 = tp.mean_bounds([lo, 5.0, hi], [2 * f, 0.0, 2 * (1 - f)])
    assert (kh3, ka3) == pytest.approx((kh, ka), rel=1e-14)
    # equal coefficients: both means equal it
    assert tp.mean_bounds([3.0, 3.0, 3.0], [0.2, 0.3, 0.5]) == pytest.approx((3.0, 3.0))
    # a visited phase without a positive coefficient: no bound
    assert all(math.isnan(x) for x in tp.mean_bounds([1.0, -1.0], [0.5, 0.5]))
    with pytest.raises(ValueError, match="fraction"):
        tp.mean_bounds([1.0, 2.0], [0.0, 0.0])


def test_mean_bounds_interval_brackets_the_means():
    m = tp.mean_bounds_interval([1.0, 10.0], [0.9, 8.0], [1.2, 11.0], [0.3, 0.7])
    assert m["kappa_H_lo"] < m["kappa_H"] < m["kappa_H_hi"]
    assert m["kappa_A_lo"] < m["kappa_A"] < m["kappa_A_hi"]
    assert m["kappa_A_lo"] == pytest.approx(0.3 * 0.9 + 0.7 * 8.0)


def test_effective_rate_and_micromirror_law_agree():
    # seed 004 Eq. 10 and Eq. 11 are one law: kappa = c^2/(3 nu)
    f_mm, nu_mm, nu_res = 0.2, 50.0, 1.0
    nu_eff = tp.micromirror_effective_rate(f_mm, nu_mm, nu_res)
    assert nu_eff == pytest.approx(0.2 * 50 + 0.8 * 1)
    assert tp.effective_rate([f_mm, 1 - f_mm], [nu_mm, nu_res]) == pytest.approx(nu_eff)
    k = tp.micromirror_kappa_eff(1.0 / nu_mm, 1.0 / nu_res, f_mm)
    assert k == pytest.approx(1.0 / nu_eff, rel=1e-14)
    assert tp.hard_sphere_diffusion(2.0) == pytest.approx(C_CM_S**2 / 6.0)
    with pytest.raises(ValueError, match="f_mm"):
        tp.micromirror_effective_rate(1.5, 1.0, 1.0)


def test_energy_law():
    assert tp.rate_at_energy(0.3, 4.0, 2.0, 2.0) == pytest.approx(0.3 / 4.0)
    assert tp.rate_at_energy(0.3, 4.0, 2.0, 0.0) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="energies"):
        tp.rate_at_energy(0.3, 0.0, 2.0, 2.0)


def test_micromirror_fraction_counts_cells_above_threshold():
    bz = np.full((6, 5, 40), 3.0, np.float32)
    bz[:, :, ::4] = 3.3  # one plane in four above 3.15 uG
    zero = np.zeros_like(bz)
    assert tp.micromirror_fraction(zero, zero, bz, 3.15) == pytest.approx(0.25)
    # |B|, not B_z: a transverse component lifts a cell over the threshold
    bx = zero.copy()
    bx[0] = 2.0
    expected = (bz.size / 4 + (bz[0] < 3.15).sum()) / bz.size
    assert tp.micromirror_fraction(bx, zero, bz, 3.15, slab_cells=7) == pytest.approx(expected)


# ------------------------------------------------------------------------------------------
# theory: QLT, Bohm, slopes
# ------------------------------------------------------------------------------------------


def test_qlt_isotropic_small_angle_scattering_gives_v2_over_3nu():
    # D_mumu = (nu/2)(1 - mu^2)  =>  kappa_par = (c^2/8) int (1-mu^2)^2 / ((nu/2)(1-mu^2)) = c^2/(3 nu)
    nu_over_omega, r_l = 0.05, 2.0
    mu = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 0.95])
    kappa = tp.qlt_kappa_par(mu, 0.5 * nu_over_omega * (1 - mu**2), r_l)
    omega = C_CM_S / (r_l * PC_CM)
    assert kappa == pytest.approx(C_CM_S**2 / (3 * nu_over_omega * omega), rel=1e-9)


def test_qlt_against_a_closed_form_with_mu_dependence():
    # D_mumu/Omega = a (1 - mu^2)(1 + mu^2): int_0^1 (1-mu^2)/(a(1+mu^2)) dmu = (pi/2 - 1)/a
    a, r_l = 0.01, 1.0
    mu = np.linspace(0.0, 0.99, 400)
    kappa = tp.qlt_kappa_par(mu, a * (1 - mu**2) * (1 + mu**2), r_l)
    assert kappa == pytest.approx(0.25 * r_l * PC_C * (math.pi / 2 - 1) / a, rel=1e-4)
    # negative mu folds onto |mu|
    assert tp.qlt_kappa_par(-mu, a * (1 - mu**2) * (1 + mu**2), r_l) == pytest.approx(kappa)
    assert math.isnan(tp.qlt_kappa_par([0.1, 0.5], [0.1, 0.0], r_l))


def test_bohm_limit():
    assert float(tp.bohm_diffusion(1.0)) == pytest.approx(PC_C / 3)


def test_energy_slope_recovers_a_power_law_with_an_honest_interval():
    rng = np.random.default_rng(3)
    e = np.array([1.5, 2.5, 5.0, 7.5, 10.0, 15.0])
    covered = 0
    for trial in range(200):
        err = 0.05 * 1e29 * e**0.4
        d = 1e29 * e**0.4 + rng.normal(size=e.size) * err
        s, lo, hi = tp.energy_slope(e, d, err, samples=400, seed=trial)
        assert lo < s < hi
        covered += lo <= 0.4 <= hi
    # a 68 % interval covers the truth in about 68 % of the trials
    assert 0.58 < covered / 200 < 0.78
    assert all(math.isnan(x) for x in tp.energy_slope([1.0, 2.0], [1.0, np.nan], [0.1, 0.1]))


# ------------------------------------------------------------------------------------------
# reading transport results
# ------------------------------------------------------------------------------------------


def fake_result(d_eff, fractions, d_par, d_par_interval, omega=1e-9, attrs=None):
    """The variables of a transport result that summary_columns reads, with given values."""
    d_eff = np.asarray(d_eff, float)
    return xr.Dataset(
        {
            "phase_fraction_total": ("phase", np.asarray(fractions, float)),
            "D_eff_par_plateau": ("phase", d_eff),
            "D_eff_par_plateau_interval": (("phase", "bound"), np.stack([0.9 * d_eff, 1.1 * d_eff], 1)),
            "D_par_plateau": ((), float(d_par)),
            "D_par_plateau_interval": ("bound", np.asarray(d_par_interval, float)),
        },
        coords={"phase": ["CNM", "UNM", "WNM"], "bound": ["lower", "upper"]},
        attrs={"omega_ref_rad_s": omega, **(attrs or {})},
    )


def test_summary_columns_place_d_par_and_predict_the_subgrid_d():
    f = [0.25, 0.25, 0.5]
    d_eff = [1e28, 1e29, 1e30]
    kh = 1 / sum(fi / d for fi, d in zip(f, d_eff))
    ka = sum(fi * d for fi, d in zip(f, d_eff))
    nu = [10.0, 1.0, 0.1]  # nu_alpha / Omega_ref
    res = fake_result(d_eff, f, 2 * kh, [1.9 * kh, 2.1 * kh], attrs={
        "scattering_model": "phase", "scattering_nu_over_omega_phase": nu})
    row = tp.summary_columns(res)
    assert row["kappa_H_par_cm2_s"] == pytest.approx(kh)
    assert row["kappa_A_par_cm2_s"] == pytest.approx(ka)
    assert row["kappa_H_par_lo_cm2_s"] == pytest.approx(0.9 * kh)
    assert row["D_par_vs_means"] == "between"
    assert row["D_par_position_HA"] == pytest.approx(math.log(2) / math.log(ka / kh))
    nu_eff = 0.25 * 10 + 0.25 * 1 + 0.5 * 0.1
    assert row["nu_eff_over_omega"] == pytest.approx(nu_eff)
    assert row["D_par_subgrid_cm2_s"] == pytest.approx(C_CM_S**2 / (3 * nu_eff * 1e-9))
    # below the harmonic mean, and a micromirror model on top of a uniform background
    res = fake_result(d_eff, f, 0.5 * kh, [0.4 * kh, 0.6 * kh], attrs={
        "scattering_model": "micromirror", "scattering_nu_over_omega_phase": [0.1, 0.1, 0.1],
        "scattering_micromirror_nu_over_omega": 2.0, "micromirror_volume_fraction": 0.2})
    row = tp.summary_columns(res)
    assert row["D_par_vs_means"] == "below_harmonic"
    assert row["nu_eff_over_omega"] == pytest.approx(0.1 + 0.2 * 2.0)
    # no sub-grid scattering: no prediction
    row = tp.summary_columns(fake_result(d_eff, f, ka * 3, [ka * 2.9, ka * 3.1]))
    assert row["D_par_vs_means"] == "above_arithmetic"
    assert math.isnan(row["D_par_subgrid_cm2_s"])


@pytest.fixture(scope="module")
def walk_results():
    """Isotropic random-walk results D ∝ E^0.5 at three energies, and one mono result."""
    rng = np.random.default_rng(11)
    t = log_times(30, 1e9, 1e12)
    out = {}
    params = tr.TransportParams(bootstrap_samples=200)
    for e in (1.0, 2.0, 4.0):
        d_par = 0.05 * e**0.5  # pc^2/s
        disp, pdisp, ptime = random_walk(rng, 3000, t, d_par, d_par / 4, phase_probabilities=[0.2, 0.3, 0.5])
        ds = make_batch(t, disp, phase_displacement=pdisp, phase_time=ptime, energy_PeV=e)
        out[e] = tr.analyse_transport(ds, params)
    return out


def test_transport_summary_carries_the_two_phase_columns(walk_results):
    row = tr.summary_row(walk_results[2.0])
    for key in ("kappa_H_par_cm2_s", "kappa_A_par_cm2_s", "D_par_vs_means", "D_par_subgrid_cm2_s"):
        assert key in row
    # phases by coin flip: every D_eff,alpha is D itself, so kappa_H = kappa_A = D within noise
    assert row["kappa_H_par_cm2_s"] == pytest.approx(row["D_par_cm2_s"], rel=0.15)
    assert row["kappa_H_par_cm2_s"] <= row["kappa_A_par_cm2_s"]


def test_theory_table_slopes_bohm_and_qlt_ratio(walk_results):
    # a mono result at 2 PeV whose D_mumu is isotropic small-angle scattering with the nu
    # that makes c^2/(3 nu) equal to the isotropic D_par: the ratio must be 1
    iso = walk_results[2.0]
    d_par = float(iso["D_par_plateau"])
    rl = float(iso.attrs["larmor_radius_pc"])
    omega = float(iso.attrs["omega_ref_rad_s"])
    nu_over_omega = C_CM_S**2 / (3 * d_par) / omega
    mu0 = np.array([0.0, 0.3, 0.6, 0.9])
    dmm = 0.5 * nu_over_omega * (1 - mu0**2)
    mono = xr.Dataset(
        {"D_mumu_over_omega_mu0": ("mu0", dmm),
         "D_mumu_over_omega_mu0_interval": (("mu0", "bound"), np.stack([0.95 * dmm, 1.05 * dmm], 1))},
        coords={"mu0": mu0}, attrs={"larmor_radius_pc": rl})
    table = tp.theory_table({"walk": walk_results}, {"walk": {2.0: mono}})
    assert list(table["energy_PeV"]) == [1.0, 2.0, 4.0]
    assert np.allclose(table["delta_par"], table["delta_par"].iloc[0])
    r = table.iloc[0]
    assert r.delta_par_lo < 0.5 < r.delta_par_hi or abs(r.delta_par - 0.5) < 0.1
    assert abs(r.delta_perp - 0.5) < 0.15
    assert table["D_bohm_cm2_s"].iloc[1] == pytest.approx(C_CM_S * rl * PC_CM / 3)
    two = table[table["energy_PeV"] == 2.0].iloc[0]
    assert two.D_par_over_qlt == pytest.approx(1.0, rel=1e-9)
    assert two.D_par_over_qlt_lo < 1.0 < two.D_par_over_qlt_hi
    assert two.D_par_over_qlt_lo == pytest.approx(two.D_par_lo_cm2_s / (d_par / 0.95), rel=1e-9)
    assert table[table["energy_PeV"] != 2.0]["kappa_qlt_par_cm2_s"].isna().all()


def test_figure_overlays_draw(walk_results):
    import matplotlib

    matplotlib.use("Agg")
    from cosmicflow import plotting_transport as pt

    fig7 = pt.fig7_diffusion_vs_energy({"walk": walk_results})
    labels = [line.get_label() for line in fig7.axes[0].get_lines()]
    assert any("Bohm" in lab for lab in labels)
    fig9 = pt.fig9_effective_diffusion({"walk": walk_results})
    assert any("kappa_H" in str(c.get_label()) for c in fig9.axes[0].collections)


# ------------------------------------------------------------------------------------------
# implications
# ------------------------------------------------------------------------------------------


def summary_frame():
    return pd.DataFrame({
        "medium": ["m", "m", "m"], "energy_PeV": [1.0, 2.0, 2.0],
        "injection": ["isotropic", "isotropic", "mono"],
        "D_par_cm2_s": [4e29, 1e30, 1e30], "D_par_lo_cm2_s": [3e29, 0.9e30, 0.9e30],
        "D_par_hi_cm2_s": [5e29, 1.1e30, 1.1e30],
        "D_perp_cm2_s": [1e29, np.nan, 1e29], "D_perp_lo_cm2_s": [0.8e29, np.nan, 0.8e29],
        "D_perp_hi_cm2_s": [1.2e29, np.nan, 1.2e29],
    })


def test_implications_by_hand():
    p = im.ImplicationParams(halo_height_pc=4000.0, gradient_length_pc=2000.0, mean_density_cm3=0.05,
                             mean_mass_amu=1.4, source_age_yr=1e5, vertical_coefficient="perp")
    t = im.implications_table(summary_frame(), p)
    assert len(t) == 2  # the mono row is not a Galactic coefficient
    r = t.iloc[0]
    t_res = (4000 * PC_CM) ** 2 / (2 * 1e29) / YR_S
    assert r.residence_time_yr == pytest.approx(t_res)
    assert r.residence_time_lo_yr == pytest.approx((4000 * PC_CM) ** 2 / (2 * 1.2e29) / YR_S)
    assert r.grammage_g_cm2 == pytest.approx(1.4 * M_U * 0.05 * C_CM_S * t_res * YR_S)
    assert r.anisotropy_par == pytest.approx(3 * 4e29 / (C_CM_S * 2000 * PC_CM))
    assert r.anisotropy_perp_hi == pytest.approx(3 * 1.2e29 / (C_CM_S * 2000 * PC_CM))
    assert r.halo_aspect_ratio == pytest.approx(2.0)
    assert r.halo_aspect_ratio_lo == pytest.approx(math.sqrt(3e29 / 1.2e29))
    assert r.halo_radius_par_pc == pytest.approx(math.sqrt(2 * 4e29 * 1e5 * YR_S) / PC_CM)
    assert r.assumed_halo_height_pc == 4000.0
    # the row without a perpendicular plateau has no residence time (D_zz = D_perp) nor aspect
    assert math.isnan(t.iloc[1].residence_time_yr) and math.isnan(t.iloc[1].halo_aspect_ratio)
    # vertical mean field: D_zz = D_par
    t2 = im.implications_table(summary_frame(), im.ImplicationParams(vertical_coefficient="par"))
    assert t2.iloc[1].D_zz_cm2_s == pytest.approx(1e30)


def test_implications_file_and_bad_input(tmp_path):
    src = tmp_path / "transport_summary.csv"
    summary_frame().to_csv(src, index=False)
    out = im.write_implications(src, tmp_path / "implications.csv", {"halo_height_pc": 3000.0})
    table = pd.read_csv(out)
    assert table["assumed_halo_height_pc"].eq(3000.0).all()
    with pytest.raises(ValueError, match="halo_height_pc"):
        im.ImplicationParams(halo_height_pc=-1.0)
    with pytest.raises(ValueError, match="unknown"):
        im.ImplicationParams.from_config({"halo_height": 1.0})
    summary_frame().drop(columns=["D_perp_cm2_s"]).to_csv(src, index=False)
    with pytest.raises(im.InputError, match="transport_summary.csv.*D_perp_cm2_s"):
        im.write_implications(src, tmp_path / "x.csv")


def test_schema_defaults_match_the_dataclass():
    import yaml
    from pathlib import Path

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow" / "schemas"
                             / "config.schema.yaml").read_text())
    props = schema["properties"]["implications"]["properties"]
    defaults = im.ImplicationParams()
    for k, v in props.items():
        assert getattr(defaults, k) == v["default"], k


def test_micromirror_fraction_flows_from_the_batch_to_the_summary(tmp_path):
    # integrate_batch records f_mm for model micromirror; transport copies it and the rates;
    # the summary's nu_eff is then nu_res + f_mm nu_mm (Reichherzer et al. Eq. 10)
    from cosmicflow.integrate import IntegrateSettings, integrate_batch
    from cosmicflow.snapshot import write_snapshot

    shape = (4, 4, 8)
    f = {k: np.zeros(shape, np.float32) for k in ("bx", "by", "vx", "vy", "vz")}
    f["bz"] = np.full(shape, 3.0, np.float32)
    f["bz"][:, :, :2] = 3.3  # f_mm = 1/4
    f["density"] = np.ones(shape, np.float32)
    f["temperature"] = np.full(shape, 8000.0, np.float32)
    snap = write_snapshot(tmp_path / "mm" / "snapshot.h5", f, 10.0)
    cfg = {"integrate": {"duration_gyroperiods": 2.0, "output_times": 5, "trajectories": 0,
                         "scattering": {"model": "micromirror", "nu_over_omega": 0.01,
                                        "micromirror": {"b_threshold_uG": 3.15, "nu_over_omega": 0.2},
                                        "energy_law": {"e0_PeV": 1.0, "q": 2.0}}}}
    batch = integrate_batch(snap, tmp_path / "b.h5", energy_pev=2.0, n_particles=20,
                            settings=IntegrateSettings.from_config(cfg), progress=False)
    with xr.open_dataset(batch, engine="h5netcdf") as ds:
        assert float(ds.attrs["micromirror_volume_fraction"]) == 0.25
    res = tr.analyse_transport(tr.load_batches([batch]), tr.TransportParams(bootstrap_samples=20))
    row = tp.summary_columns(res)
    # rates at 2 PeV in units of the job's Omega_ref: nu0 (E/E0)^(1-q)
    assert row["nu_eff_over_omega"] == pytest.approx((0.01 + 0.25 * 0.2) * 2.0 ** (1 - 2.0))
