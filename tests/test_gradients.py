"""Periodic central-difference gradients, epsilon histograms and mean-field quantities."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from conftest import make_fields
from cosmicflow.constants import larmor_radius_pc
from cosmicflow.gradients import GRADIENT_BINS, gradient_magnitude, gradient_statistics, run_gradients
from cosmicflow.io import InputError
from cosmicflow.snapshot import write_snapshot

SHAPE = (16, 12, 10)
BOX = np.array([32.0, 12.0, 20.0])  # unequal cells: 2, 1, 2 pc


def _grid(shape=SHAPE, box=BOX):
    cell = box / np.array(shape)
    axes = [(np.arange(n) + 0.5) * c for n, c in zip(shape, cell)]
    return np.meshgrid(*axes, indexing="ij"), cell


def _sine_field(shape=SHAPE, box=BOX, modes=(1, 2, 3), amp=(1.0, 0.5, 2.0)):
    (x, y, z), cell = _grid(shape, box)
    ks = [2 * np.pi * m / L for m, L in zip(modes, box)]
    f = sum(a * np.sin(k * c) for a, k, c in zip(amp, ks, (x, y, z)))
    # central differences of sin(kx): cos(kx) sin(k dx) / dx, exactly
    g_discrete = [a * np.cos(k * c) * np.sin(k * d) / d for a, k, c, d in zip(amp, ks, (x, y, z), cell)]
    g_exact = [a * k * np.cos(k * c) for a, k, c in zip(amp, ks, (x, y, z))]
    norm = lambda g: np.sqrt(sum(gi**2 for gi in g))  # noqa: E731
    return f, cell, norm(g_discrete), norm(g_exact), ks


def test_gradient_of_periodic_sine():
    f, cell, g_discrete, g_exact, ks = _sine_field()
    g = gradient_magnitude(f, cell)
    np.testing.assert_allclose(g, g_discrete, rtol=1e-12, atol=1e-12)
    # and it approaches the true derivative to the O((k dx)^2 / 6) truncation error
    kdx = max(k * d for k, d in zip(ks, cell))
    assert np.max(np.abs(g - g_exact)) <= kdx**2 / 6 * np.max(g_exact) * 1.01
    assert np.max(np.abs(g - g_exact)) > 0  # the discretisation error is really there


def test_gradient_rejects_bad_input():
    with pytest.raises(ValueError, match="3-D"):
        gradient_magnitude(np.zeros((4, 4)), 1.0)
    with pytest.raises(ValueError, match="cell size"):
        gradient_magnitude(np.zeros((4, 4, 4)), 0.0)


def _sine_snapshot(path, b_amp=0.6, b0=3.0):
    """T and |B| varying as sines along every axis; B along z with |B| = bz > 0."""
    f = make_fields(SHAPE, seed=4)
    tpart, cell, gt, _, _ = _sine_field(amp=(1.0, 0.5, 2.0))
    bpart, _, gb, _, _ = _sine_field(modes=(2, 1, 1), amp=(b_amp, 0.5 * b_amp, 0.2 * b_amp))
    f["temperature"] = (3000.0 + 1900.0 * tpart / 3.5).astype(np.float32)
    f["bx"] = np.zeros(SHAPE, np.float32)
    f["by"] = np.zeros(SHAPE, np.float32)
    f["bz"] = (b0 + bpart).astype(np.float32)
    write_snapshot(path, f, tuple(BOX))
    return f, cell


@pytest.mark.parametrize("chunk_cells", [120, 700, 10**6])
def test_chunked_matches_in_memory(tmp_path, chunk_cells):
    path = tmp_path / "snap.h5"
    write_snapshot(path, make_fields(SHAPE, seed=6), tuple(BOX))
    mem = gradient_statistics(path, chunk_cells=None)
    chk = gradient_statistics(path, chunk_cells=chunk_cells, num_workers=2)
    for name in ("hist_grad_T_grad_B", "hist_epsilon", "clamped_epsilon"):
        np.testing.assert_array_equal(chk[name].values, mem[name].values)
    for name in ("mean_field", "b0", "b_rms", "db_rms", "db_over_b0", "larmor_radius_pc"):
        np.testing.assert_allclose(chk[name].values, mem[name].values, rtol=1e-12)


def test_histograms_match_independent_calculation(tmp_path):
    path = tmp_path / "snap.h5"
    f, cell = _sine_snapshot(path)
    energies = [1.0, 10.0]
    ds = gradient_statistics(path, energies_PeV=energies, chunk_cells=130, num_workers=2)
    n = np.prod(SHAPE)
    assert int(ds["hist_grad_T_grad_B"].sum()) == n
    np.testing.assert_array_equal(ds["hist_epsilon"].sum(("phase", "epsilon")).values, [n, n])
    # independent: np.gradient-free roll differences of the float32 fields as stored
    t = f["temperature"].astype(np.float64)
    b = np.abs(f["bz"].astype(np.float64))

    def roll_grad(a):
        return np.sqrt(sum(((np.roll(a, -1, ax) - np.roll(a, 1, ax)) / (2 * cell[ax])) ** 2
                           for ax in range(3)))

    gt, gb = roll_grad(t), roll_grad(b)
    bt, bb = GRADIENT_BINS["grad_temperature"], GRADIENT_BINS["grad_b"]
    def log_edges(bins):  # the bins are uniform in log10 x
        return np.linspace(bins.lo, bins.hi, bins.nbins + 1)

    expected, _, _ = np.histogram2d(np.log10(gt).ravel(), np.log10(gb).ravel(),
                                    bins=[log_edges(bt), log_edges(bb)])
    np.testing.assert_array_equal(ds["hist_grad_T_grad_B"].values, expected)
    b0 = float(np.mean(f["bz"].astype(np.float64)))
    assert ds.attrs["b_ref_uG"] == pytest.approx(b0, rel=1e-12)
    for i, e in enumerate(energies):
        eps = gb / b * larmor_radius_pc(e, b0)
        h, _ = np.histogram(np.log10(eps), bins=log_edges(GRADIENT_BINS["epsilon"]))
        # all of this box is UNM (T between 1100 and 4900 K)
        np.testing.assert_array_equal(ds["hist_epsilon"].isel(energy=i).sel(phase="UNM").values, h)
        assert int(ds["hist_epsilon"].isel(energy=i).sel(phase=["CNM", "WNM"]).sum()) == 0
    np.testing.assert_allclose(ds["larmor_radius_pc"].values, [1.0810 * e / b0 for e in energies],
                               rtol=1e-4)


def test_mean_field_quantities(tmp_path):
    # bx = a sin(2 pi i / N) over whole periods: <bx> = 0 and <bx^2> = a^2 / 2 exactly
    f = make_fields(SHAPE, seed=2)
    a, b0 = 2.0, 3.0
    i = np.arange(SHAPE[0])[:, None, None]
    f["bx"] = np.broadcast_to(a * np.sin(2 * np.pi * i / SHAPE[0]), SHAPE).astype(np.float32)
    f["by"] = np.zeros(SHAPE, np.float32)
    f["bz"] = np.full(SHAPE, b0, np.float32)
    path = tmp_path / "snap.h5"
    write_snapshot(path, f, tuple(BOX))
    ds = gradient_statistics(path, chunk_cells=240)
    bx32 = f["bx"].astype(np.float64)
    np.testing.assert_allclose(ds["mean_field"].values, [0.0, 0.0, b0], atol=1e-7)
    assert float(ds["b_rms"]) == pytest.approx(np.sqrt(b0**2 + a**2 / 2), rel=1e-6)
    assert float(ds["db_over_b0"]) == pytest.approx(np.sqrt(np.mean(bx32**2)) / b0, rel=1e-9)
    assert float(ds["db_over_b0"]) == pytest.approx(a / np.sqrt(2) / b0, rel=1e-6)


def test_isothermal_box_has_zero_temperature_gradient(tmp_path):
    f = make_fields(SHAPE, seed=8)
    f["temperature"] = np.full(SHAPE, 12000.0, np.float32)
    path = tmp_path / "snap.h5"
    write_snapshot(path, f, tuple(BOX))
    ds = gradient_statistics(path, chunk_cells=200)
    # |grad T| = 0 everywhere: every cell is clamped into the lowest |grad T| bin
    assert int(ds["hist_grad_T_grad_B"].isel(grad_temperature=0).sum()) == np.prod(SHAPE)
    assert list(ds["grad_temperature_edges"].attrs["clamped_below_above"]) == [np.prod(SHAPE), 0]
    assert int(ds["hist_epsilon"].sel(phase="WNM").sum()) == np.prod(SHAPE) * ds.sizes["energy"]


def test_zero_mean_field_needs_b_ref(tmp_path):
    f = make_fields(SHAPE, seed=1, b0=(0.0, 0.0, 0.0))
    for c in ("bx", "by", "bz"):
        f[c] = np.zeros(SHAPE, np.float32)
    f["bz"][::2] = 1.0
    f["bz"][1::2] = -1.0
    path = tmp_path / "snap.h5"
    write_snapshot(path, f, tuple(BOX))
    with pytest.raises(InputError, match="b_ref_uG"):
        gradient_statistics(path, chunk_cells=None)
    ds = gradient_statistics(path, b_ref_uG=2.0, chunk_cells=None)
    assert ds.attrs["b_ref_uG"] == 2.0


def test_run_gradients_writes_netcdf(tmp_path):
    path = tmp_path / "snap.h5"
    _sine_snapshot(path)
    out = tmp_path / "gradients.nc"
    run_gradients(path, out, {"energies_PeV": [2.5], "charge": 1, "b_ref_uG": None},
                  {"thresholds_K": [200.0, 5000.0], "names": ["CNM", "UNM", "WNM"]},
                  medium="box", chunk_cells=500)
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds["grad_temperature"].attrs["units"] == "K/pc"
        assert ds["grad_b"].attrs["units"] == "uG/pc"
        assert ds["b_rms"].attrs["units"] == "uG"
        assert ds.attrs["medium"] == "box"
        assert list(ds["phase"].values) == ["CNM", "UNM", "WNM"]
