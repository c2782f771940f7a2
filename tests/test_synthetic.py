"""Synthetic media: each generator delivers the statistics its docstring promises.

Expected values come from the physics (spectral slopes, divergence, rms, pressure equilibrium,
phase thresholds) and are measured here with independent float64 NumPy FFTs and differences.
Grids are 32^3-64^3 so the whole module runs in seconds.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import xarray as xr

from cosmicflow import synthetic
from cosmicflow.constants import K_B, KM_CM, M_U, UG_G
from cosmicflow.media import build_medium
from cosmicflow.snapshot import FIELDS, check_fields, read_snapshot

BOX = 100.0
MU = 1.4


# ----------------------------------------------------------------------------------------
# independent measurements
# ----------------------------------------------------------------------------------------
def half_spectrum(*components):
    """float64 rfftn of each component and the integer mode numbers (mx, my, mz, |m|)."""
    n = components[0].shape[0]
    spec = [np.fft.rfftn(np.asarray(c, dtype=np.float64)) for c in components]
    m = np.fft.fftfreq(n, 1.0 / n)
    mx, my, mz = np.meshgrid(m, m, np.arange(n // 2 + 1), indexing="ij")
    return spec, mx, my, mz, np.sqrt(mx**2 + my**2 + mz**2)


def shell_spectrum(*components):
    """(m, mode-averaged power P(m), shell-summed power E(m)) over integer shells |m|."""
    spec, _, _, mz, mag = half_spectrum(*components)
    n = components[0].shape[0]
    # rfft stores one of each +-k pair except in the kz = 0 and Nyquist planes
    weight = np.where((mz == 0) | ((n % 2 == 0) & (mz == n // 2)), 1.0, 2.0)
    power = sum(np.abs(s) ** 2 for s in spec) * weight
    shell = np.rint(mag).astype(int).ravel()
    e = np.bincount(shell, power.ravel())
    count = np.bincount(shell, weight.ravel())
    m = np.arange(e.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return m, e / count, e


def loglog_slope(x, y):
    return np.polyfit(np.log(x), np.log(y), 1)[0]


def central_gradient_norm(f, dx):
    """|grad f| with periodic central differences (float64)."""
    f = np.asarray(f, dtype=np.float64)
    return np.sqrt(sum(((np.roll(f, -1, a) - np.roll(f, 1, a)) / (2 * dx)) ** 2 for a in range(3)))


def phase_of(temperature):
    return np.where(temperature < 200.0, 0, np.where(temperature > 5000.0, 2, 1))


def alfven_speed(b_ug, n):
    return b_ug * UG_G / math.sqrt(4 * math.pi * MU * M_U * n) / KM_CM


# ----------------------------------------------------------------------------------------
# fixtures (each medium generated once per module)
# ----------------------------------------------------------------------------------------
KOLMO = dict(b0_uG=2.0, db_rms_uG=1.5, l_min_pc=100.0 / 16, l_max_pc=100.0, sigma_v_kms=7.0)


@pytest.fixture(scope="module")
def kolmo():
    return synthetic.kolmogorov(64, BOX, 5, **KOLMO)


@pytest.fixture(scope="module")
def mp():
    return synthetic.multiphase(64, BOX, 11)


GENERATORS = {
    "kolmogorov": synthetic.kolmogorov,
    "slab": synthetic.slab,
    "multiphase": synthetic.multiphase,
}


# ----------------------------------------------------------------------------------------
# common contract
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(GENERATORS))
def test_output_contract(name):
    fields, attrs = GENERATORS[name](32, 50.0, 1)
    assert list(fields) == list(FIELDS)
    for k, a in fields.items():
        assert a.dtype == np.float32 and a.flags.c_contiguous and a.shape == (32, 32, 32), k
    assert check_fields(fields, where=name) == (32, 32, 32)
    assert attrs["generator"] == f"cosmicflow.synthetic.{name}"
    assert attrs["mean_molecular_weight"] == MU
    assert attrs["adiabatic_index"] in (1.0, 5.0 / 3.0)
    # every keyword parameter is documented with a default, and reported in attrs
    for p in inspect.signature(GENERATORS[name]).parameters.values():
        if p.kind is p.KEYWORD_ONLY:
            assert p.name in attrs, p.name
            assert p.name in GENERATORS[name].__doc__, p.name


@pytest.mark.parametrize("name", list(GENERATORS))
def test_same_seed_same_medium_other_seed_other_medium(name):
    gen = GENERATORS[name]
    a, _ = gen(32, BOX, 7)
    b, _ = gen(32, BOX, 7)
    c, _ = gen(32, BOX, 8)
    for k in FIELDS:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["bx"], c["bx"])
    if name == "multiphase":
        assert not np.array_equal(a["density"], c["density"])


@pytest.mark.parametrize(
    "name, kwargs, fragment",
    [
        ("kolmogorov", dict(l_min_pc=2.0), "below 2 cells"),
        ("kolmogorov", dict(l_min_pc=30.0, l_max_pc=20.0), "l_min_pc < l_max_pc"),
        ("kolmogorov", dict(l_max_pc=150.0), "exceeds the box"),
        ("kolmogorov", dict(db_rms_uG=-1.0), "db_rms_uG"),
        ("kolmogorov", dict(density_cm3=0.0), "density_cm3"),
        ("kolmogorov", dict(temperature_K=float("nan")), "temperature_K"),
        ("kolmogorov", dict(l_min_pc=97.0, l_max_pc=99.0), "no Fourier mode"),
        ("slab", dict(sigma_v_kms=-2.0), "sigma_v_kms"),
        ("slab", dict(l_min_pc=1.0), "below 2 cells"),
        ("multiphase", dict(cnm_mass_fraction=0.7, wnm_mass_fraction=0.4), "sum < 1"),
        ("multiphase", dict(phase_density_jump=0.5), "phase_density_jump"),
        ("multiphase", dict(t_cnm_K=6000.0), "t_cnm_K < t_wnm_K"),
        ("multiphase", dict(mean_density_cm3=-1.0), "mean_density_cm3"),
        ("multiphase", dict(mean_density_cm3=50.0), "cannot reach"),
        ("multiphase", dict(density_spectral_index=2.0), "density_spectral_index"),
    ],
)
def test_bad_parameters_raise_clear_value_errors(name, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        GENERATORS[name](32, BOX, 0, **kwargs)


def test_bad_grid_and_box():
    with pytest.raises(ValueError, match="grid"):
        synthetic.kolmogorov(4, BOX, 0)
    with pytest.raises(ValueError, match="box_pc"):
        synthetic.slab(32, -1.0, 0)


# ----------------------------------------------------------------------------------------
# kolmogorov
# ----------------------------------------------------------------------------------------
def test_kolmogorov_spectrum_slope_and_band(kolmo):
    fields, _ = kolmo
    db = [fields["bx"], fields["by"], fields["bz"] - KOLMO["b0_uG"]]
    m, p_mode, e_shell = shell_spectrum(*db)
    # inertial range: shells 2..15 (band is |m| = 1..16)
    sel = (m >= 2) & (m <= 15)
    assert loglog_slope(m[sel], p_mode[sel]) == pytest.approx(-11.0 / 3.0, abs=0.2)
    assert loglog_slope(m[sel], e_shell[sel]) == pytest.approx(-5.0 / 3.0, abs=0.25)
    # nothing outside the band 2 pi / l_max <= k <= 2 pi / l_min, i.e. 1 <= |m| <= 16
    outside = e_shell[m > 17].sum() + e_shell[0]
    assert outside < 1e-10 * e_shell.sum()


def test_kolmogorov_mode_power_follows_the_model_without_bias(kolmo):
    """Sharper than a slope fit: divide out the model averaged over the same integer shells
    (rounding |m| biases a plain fit to about -3.57) and the ratio must be flat; the kz = 0
    plane, which the real inverse FFT treats apart, must carry the same power per mode."""
    fields, _ = kolmo
    spec, _, _, mz, mag = half_spectrum(fields["bx"], fields["by"], fields["bz"] - KOLMO["b0_uG"])
    power = sum(np.abs(x) ** 2 for x in spec)
    with np.errstate(divide="ignore"):
        model = np.where((mag >= 1) & (mag <= 16), mag ** (-11.0 / 3.0), 0.0)
    ratio = np.divide(power, model, out=np.zeros_like(power), where=model > 0)
    shell = np.rint(mag).astype(int)
    m = np.arange(2, 16)
    per_shell = np.array([ratio[(shell == k) & (model > 0)].mean() for k in m])
    assert abs(loglog_slope(m, per_shell)) < 0.12
    assert np.all((per_shell / per_shell.mean() > 0.6) & (per_shell / per_shell.mean() < 1.6))
    band = (model > 0) & (mag > 1.5)
    plane0 = ratio[band & (mz == 0)].mean() / ratio[band & (mz > 0)].mean()
    assert plane0 == pytest.approx(1.0, abs=0.2)


def test_kolmogorov_rms_mean_and_uniform_gas(kolmo):
    fields, attrs = kolmo
    b = [fields[c].astype(np.float64) for c in ("bx", "by", "bz")]
    np.testing.assert_allclose([x.mean() for x in b], [0.0, 0.0, KOLMO["b0_uG"]], atol=1e-5)
    db2 = b[0] ** 2 + b[1] ** 2 + (b[2] - KOLMO["b0_uG"]) ** 2
    assert math.sqrt(db2.mean()) == pytest.approx(KOLMO["db_rms_uG"], rel=1e-5)
    v2 = sum(fields[c].astype(np.float64) ** 2 for c in ("vx", "vy", "vz"))
    assert math.sqrt(v2.mean()) == pytest.approx(KOLMO["sigma_v_kms"], rel=1e-5)
    assert np.ptp(fields["density"]) == 0 and np.ptp(fields["temperature"]) == 0
    assert attrs["db_rms_uG_measured"] == pytest.approx(KOLMO["db_rms_uG"], rel=1e-5)
    # isotropy: each component carries a third of <dB^2> within cosmic variance
    thirds = [np.mean(x**2) for x in (b[0], b[1], b[2] - KOLMO["b0_uG"])] / db2.mean()
    np.testing.assert_allclose(thirds, 1 / 3, atol=0.12)


def test_kolmogorov_divergence_free(kolmo):
    fields, _ = kolmo
    for names in (("bx", "by", "bz"), ("vx", "vy", "vz")):
        spec, mx, my, mz, mag = half_spectrum(*(fields[c] for c in names))
        div = mx * spec[0] + my * spec[1] + mz * spec[2]
        amp = mag * np.sqrt(sum(np.abs(s) ** 2 for s in spec))
        # spectral divergence vanishes to float32 round-off
        assert np.abs(div).max() < 1e-5 * amp.max()
    # the central-difference divergence only sees k - sin(k dx)/dx: small, not zero
    dx = BOX / 64
    div_c = synthetic.central_divergence(fields["bx"], fields["by"], fields["bz"], dx)
    grad = np.sqrt(sum(central_gradient_norm(fields[c], dx) ** 2 for c in ("bx", "by", "bz")))
    assert np.sqrt(np.mean(div_c.astype(np.float64) ** 2)) < 0.1 * np.sqrt(np.mean(grad**2))


def test_kolmogorov_odd_grid():
    """Odd grids have no Nyquist plane; the field must still be solenoidal with exact rms."""
    fields, _ = synthetic.kolmogorov(33, BOX, 1, db_rms_uG=2.0)
    spec, mx, my, mz, mag = half_spectrum(fields["bx"], fields["by"], fields["bz"])
    div = mx * spec[0] + my * spec[1] + mz * spec[2]
    assert np.abs(div).max() < 1e-5 * (mag * np.abs(spec[0])).max()
    db2 = sum(fields[c].astype(np.float64) ** 2 for c in ("bx", "by")) + (fields["bz"] - 3.0) ** 2
    assert math.sqrt(db2.mean()) == pytest.approx(2.0, rel=1e-5)


def test_kolmogorov_velocity_independent_of_field(kolmo):
    fields, _ = kolmo
    dot = sum(fields[v].astype(np.float64) * fields[b] for v, b in (("vx", "bx"), ("vy", "by")))
    corr = dot.mean() / (KOLMO["sigma_v_kms"] * KOLMO["db_rms_uG"])
    assert abs(corr) < 0.15


def test_kolmogorov_defaults_are_the_papers_control_run():
    fields, attrs = synthetic.kolmogorov(32, BOX, 12)
    sig = inspect.signature(synthetic.kolmogorov).parameters
    b0, n, t = (sig[k].default for k in ("b0_uG", "density_cm3", "temperature_K"))
    sigma_v = math.sqrt(np.mean(sum(fields[c].astype(np.float64) ** 2 for c in ("vx", "vy", "vz"))))
    c_s = math.sqrt(K_B * t / (MU * M_U)) / KM_CM  # isothermal, P = n k_B T
    m_a, m_s = sigma_v / alfven_speed(b0, n), sigma_v / c_s
    assert m_a == pytest.approx(1.5, abs=0.05) and m_s == pytest.approx(1.0, abs=0.05)
    assert attrs["alfven_mach_number"] == pytest.approx(m_a, rel=1e-4)
    assert attrs["sonic_mach_number"] == pytest.approx(m_s, rel=1e-4)


# ----------------------------------------------------------------------------------------
# slab
# ----------------------------------------------------------------------------------------
def test_slab_geometry_and_rms():
    fields, attrs = synthetic.slab(32, BOX, 4, b0_uG=3.0, db_rms_uG=0.7, sigma_v_kms=2.0)
    for k in FIELDS:
        a = fields[k]
        assert np.ptp(a, axis=(0, 1)).max() == 0, f"{k} depends on x or y"
    assert np.all(fields["bz"] == 3.0) and np.all(fields["vz"] == 0.0)
    prof = [fields[c][0, 0].astype(np.float64) for c in ("bx", "by")]
    assert math.sqrt(np.mean(prof[0] ** 2 + prof[1] ** 2)) == pytest.approx(0.7, rel=1e-5)
    vprof = [fields[c][0, 0].astype(np.float64) for c in ("vx", "vy")]
    assert math.sqrt(np.mean(vprof[0] ** 2 + vprof[1] ** 2)) == pytest.approx(2.0, rel=1e-5)
    np.testing.assert_allclose([p.mean() for p in prof], 0.0, atol=1e-6)
    assert attrs["db_rms_uG"] == 0.7


def test_slab_realises_its_documented_spectrum():
    grid, l_min, l_max = 64, 100.0 / 24, 100.0
    fields, attrs = synthetic.slab(grid, BOX, 9, db_rms_uG=1.3, l_min_pc=l_min, l_max_pc=l_max)
    spec = synthetic.slab_spectrum(grid, BOX, 1.3, l_min, l_max)
    # modes n = 1..24, k_n = 2 pi n / L, power ~ k^-5/3 summing to dB^2
    np.testing.assert_allclose(spec.k_per_pc, 2 * np.pi * np.arange(1, 25) / BOX)
    assert spec.db2_uG2 == pytest.approx(1.3**2, rel=1e-12)
    assert loglog_slope(spec.k_per_pc, spec.power_uG2) == pytest.approx(-5.0 / 3.0, abs=1e-9)
    np.testing.assert_allclose(spec.spectral_density_uG2_pc * spec.dk_per_pc, spec.power_uG2)
    g0 = attrs["slab_spectrum_G0"]
    np.testing.assert_allclose(spec.spectral_density_uG2_pc, g0 * spec.k_per_pc ** (-5 / 3),
                               rtol=1e-9)
    # the realised profile carries exactly that power in each mode (fixed amplitudes)
    c = [np.fft.rfft(fields[k][0, 0].astype(np.float64)) / grid for k in ("bx", "by")]
    realised = 2 * (np.abs(c[0]) ** 2 + np.abs(c[1]) ** 2)
    np.testing.assert_allclose(realised[1:25], spec.power_uG2, rtol=1e-4, atol=1e-9)
    assert realised[25:].max() < 1e-9 and realised[0] < 1e-9


# ----------------------------------------------------------------------------------------
# multiphase
# ----------------------------------------------------------------------------------------
def test_multiphase_fractions_near_paper(mp):
    fields, attrs = mp
    n, t = fields["density"].astype(np.float64), fields["temperature"]
    ph = phase_of(t)
    vol = np.array([np.mean(ph == p) for p in range(3)])
    mass = np.array([n[ph == p].sum() for p in range(3)]) / n.sum()
    np.testing.assert_allclose(mass, [0.2179, 0.4428, 0.3393], atol=0.02)
    assert np.all(vol > 0.002), vol  # all three phases present
    # mass sits in dense gas: CNM takes far more mass than volume, WNM the opposite
    assert mass[0] > 10 * vol[0] and vol[2] > mass[2]
    np.testing.assert_allclose(attrs["mass_fractions"], mass, atol=1e-6)
    np.testing.assert_allclose(attrs["volume_fractions"], vol, atol=1e-6)
    assert n.mean() == pytest.approx(1.0, rel=1e-4)


def test_multiphase_other_targets_are_met():
    fields, attrs = synthetic.multiphase(32, BOX, 2, cnm_mass_fraction=0.1,
                                         wnm_mass_fraction=0.5, mean_density_cm3=0.8)
    n = fields["density"].astype(np.float64)
    ph = phase_of(fields["temperature"])
    mass = np.array([n[ph == p].sum() for p in range(3)]) / n.sum()
    np.testing.assert_allclose(mass, [0.1, 0.4, 0.5], atol=0.03)
    assert n.mean() == pytest.approx(0.8, rel=1e-4)


def test_multiphase_pressure_equilibrium_and_phase_temperatures(mp):
    fields, _ = mp
    n, t = fields["density"].astype(np.float64), fields["temperature"].astype(np.float64)
    p = n * t  # P / k_B [K cm^-3]
    assert 3000 < np.median(p) < 4000
    lo, hi = np.percentile(p, [5, 95])
    assert 2500 < lo < hi < 5000 and hi / lo > 1.1  # scatter, but not much
    ph = phase_of(t)
    # CNM dense and cold, WNM diffuse and warm (paper Fig. 2)
    assert np.median(n[ph == 0]) > 10 and np.median(t[ph == 0]) < 150
    assert np.median(n[ph == 2]) < 1 and 6000 < np.median(t[ph == 2]) < 2e4


def test_multiphase_sharp_boundaries(mp):
    fields, _ = mp
    t = fields["temperature"]
    # the temperature jumps across each threshold: little gas lingers within 20 % of one
    near = ((t > 5000 / 1.2) & (t < 5000 * 1.2)) | ((t > 200 / 1.2) & (t < 200 * 1.2))
    assert near.mean() < 0.03
    # and adjacent cells of different phases differ in density by more than the jump factor
    n = fields["density"]
    ph = phase_of(t)
    diff = ph != np.roll(ph, 1, axis=0)
    ratio = np.maximum(n, np.roll(n, 1, 0))[diff] / np.minimum(n, np.roll(n, 1, 0))[diff]
    assert np.median(ratio) > 1.35**2 * 0.9


def test_multiphase_field_divergence_free_mean_b0_rms(mp):
    fields, attrs = mp
    dx = BOX / 64
    b = [fields[c] for c in ("bx", "by", "bz")]
    div = synthetic.central_divergence(*b, dx).astype(np.float64)
    grad = np.sqrt(sum(central_gradient_norm(c, dx) ** 2 for c in b))
    assert np.abs(div).max() < 1e-5 * grad.max()
    np.testing.assert_allclose([c.mean(dtype=np.float64) for c in b], [0, 0, 3.0], atol=1e-5)
    db2 = b[0].astype(np.float64) ** 2 + b[1] ** 2 + (b[2] - 3.0) ** 2
    assert math.sqrt(db2.mean()) == pytest.approx(3.0, rel=1e-5)
    babs = np.sqrt(b[0].astype(np.float64) ** 2 + b[1] ** 2 + b[2] ** 2)
    assert 2.0 < np.median(babs) < 6.0 and babs.max() < 60.0
    assert attrs["b_abs_max_uG"] == pytest.approx(babs.max(), rel=1e-5)


def test_multiphase_field_stronger_in_dense_gas_and_gradients_at_boundaries(mp):
    fields, _ = mp
    dx = BOX / 64
    b = [fields[c].astype(np.float64) for c in ("bx", "by", "bz")]
    babs = np.sqrt(sum(c**2 for c in b))
    ph = phase_of(fields["temperature"])
    med = [np.median(babs[ph == p]) for p in range(3)]
    assert med[0] > med[1] > med[2]
    boundary = np.zeros(ph.shape, bool)
    for axis in range(3):
        for shift in (1, -1):
            boundary |= np.roll(ph, shift, axis) != ph
    grad_b = central_gradient_norm(babs, dx)
    # (ratio of medians ~2 at 64^3, ~2.8 at 128^3; ~1 for a field without phase structure)
    assert np.median(grad_b[boundary]) > 1.5 * np.median(grad_b[~boundary])
    assert grad_b[boundary].mean() > 1.5 * grad_b[~boundary].mean()


def test_multiphase_velocity_dispersion_and_mach_numbers(mp):
    fields, _ = mp
    v2 = sum(fields[c].astype(np.float64) ** 2 for c in ("vx", "vy", "vz"))
    assert math.sqrt(v2.mean()) == pytest.approx(10.0, rel=1e-5)
    t = fields["temperature"].astype(np.float64)
    m_s = np.sqrt(v2) / (np.sqrt(K_B * t / (MU * M_U)) / KM_CM)
    ph = phase_of(t)
    assert np.median(m_s[ph == 0]) > 5  # cold gas highly supersonic
    assert 0.5 < np.median(m_s[ph == 2]) < 2  # warm gas transonic


def test_central_curl_is_divergence_free_and_zero_mean():
    rng = np.random.default_rng(0)
    f = [rng.standard_normal((16, 12, 10)).astype(np.float32) for _ in range(3)]
    c = synthetic.central_curl(*f, 0.5)
    assert np.abs(synthetic.central_divergence(*c, 0.5)).max() < 1e-5
    np.testing.assert_allclose([x.mean(dtype=np.float64) for x in c], 0.0, atol=1e-6)
    # x-component against an explicit loop
    i, j, k = 3, 0, 9
    dy = (f[2][i, (j + 1) % 12, k] - f[2][i, j - 1, k]) / 1.0
    dz = (f[1][i, j, (k + 1) % 10] - f[1][i, j, k - 1]) / 1.0
    assert c[0][i, j, k] == pytest.approx(dy - dz, rel=1e-5)


# ----------------------------------------------------------------------------------------
# through the snapshot stage
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["multiphase", "kolmogorov", "slab"])
def test_build_medium_writes_readable_snapshot(tmp_path, source):
    medium = {"source": source, "grid": 16, "box_pc": 40.0, "seed": 3, "params": {"b0_uG": 2.5}}
    out = build_medium(source, medium, tmp_path / source / "snapshot.h5")
    snap = read_snapshot(out)
    assert snap.shape == (16, 16, 16)
    np.testing.assert_allclose(snap.box_pc, 40.0)
    np.testing.assert_allclose(snap.mean_field_ug(), [0, 0, 2.5], atol=1e-5)
    assert snap.attrs["generator"] == f"cosmicflow.synthetic.{source}"
    assert snap.attrs["source"] == f"cosmicflow.synthetic.{source}"
    direct, _ = synthetic.__dict__[source](16, 40.0, 3, b0_uG=2.5)
    np.testing.assert_array_equal(snap["bx"], direct["bx"])
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds["density"].attrs["units"] == "cm^-3"


def test_build_medium_rejects_unknown_parameter(tmp_path):
    medium = {"source": "kolmogorov", "grid": 16, "params": {"dB_rms": 1.0}}
    with pytest.raises(ValueError, match="unknown parameter"):
        build_medium("iso", medium, tmp_path / "s.h5")
    assert not (tmp_path / "s.h5").exists()


def test_docstring_examples():
    import doctest

    assert doctest.testmod(synthetic).failed == 0
