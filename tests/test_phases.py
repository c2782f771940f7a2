"""Phase map, fractions, local Mach numbers and the chunked/in-memory agreement of the phases stage."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import make_fields
from cosmicflow.binning import FINE_BINS, LogBins, histogram_quantile
from cosmicflow.constants import K_B, M_U
from cosmicflow.io import InputError
from cosmicflow.phases import (
    HISTOGRAMS,
    STAT_QUANTITIES,
    gas_properties,
    local_quantities,
    phase_index,
    phase_statistics,
    run_phases,
)
from cosmicflow.snapshot import write_snapshot

SHAPE = (8, 6, 4)


def _three_phase_box(path):
    """x-slabs 0-1 CNM (100 K, 50 cm^-3), 2-4 UNM (1000 K, 5), 5-7 WNM (8000 K, 0.5)."""
    f = make_fields(SHAPE, seed=3)
    t = np.empty(SHAPE, np.float32)
    n = np.empty(SHAPE, np.float32)
    t[:2], n[:2] = 100.0, 50.0
    t[2:5], n[2:5] = 1000.0, 5.0
    t[5:], n[5:] = 8000.0, 0.5
    f["temperature"], f["density"] = t, n
    write_snapshot(path, f, 8.0)
    return f


@pytest.mark.parametrize("chunk_cells", [None, 24, 1000])
def test_fractions_of_hand_built_box(tmp_path, chunk_cells):
    path = tmp_path / "snap.h5"
    _three_phase_box(path)
    res = phase_statistics(path, chunk_cells=chunk_cells)
    tab = res.table.set_index("phase")
    np.testing.assert_allclose(tab.loc[["CNM", "UNM", "WNM"], "volume_fraction"], [2 / 8, 3 / 8, 3 / 8])
    mass = np.array([2 * 50.0, 3 * 5.0, 3 * 0.5])
    np.testing.assert_allclose(tab.loc[["CNM", "UNM", "WNM"], "mass_fraction"], mass / mass.sum())
    for col in ("volume_fraction", "mass_fraction"):
        assert tab.loc[["CNM", "UNM", "WNM"], col].sum() == pytest.approx(1.0, abs=1e-12)
        assert tab.loc["all", col] == 1.0
    # a phase holding one temperature has that temperature as every quantile
    np.testing.assert_allclose(tab.loc["CNM", ["T_min_K", "T_p05_K", "T_median_K", "T_p95_K"]],
                               100.0, rtol=1e-7)
    np.testing.assert_allclose(tab.loc[["CNM", "UNM", "WNM", "all"], "n_max_cm^-3"], [50, 5, 0.5, 50],
                               rtol=1e-7)
    np.testing.assert_allclose(tab.loc[["CNM", "UNM", "WNM", "all"], "n_min_cm^-3"], [50, 5, 0.5, 0.5],
                               rtol=1e-7)
    assert int(tab.loc["all", "cells"]) == np.prod(SHAPE)


def test_phase_index_boundaries():
    t = np.array([1.0, 199.999, 200.0, 4999.0, 5000.0, 5000.01, 1e6])
    np.testing.assert_array_equal(phase_index(t, (200.0, 5000.0)), [0, 0, 1, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="thresholds"):
        phase_index(t, (5000.0, 200.0))


def test_local_quantities_physics():
    # mu = 1, gamma = 1: T = m_u c_s^2 / k_B makes c_s = 10 km/s; B = sqrt(4 pi m_u) * 10 km/s
    # makes v_A = 10 km/s at n = 1 cm^-3; then beta = 2 c_s^2 / v_A^2 = 2.
    t = M_U * (10.0e5) ** 2 / K_B
    b = np.sqrt(4 * np.pi * M_U) * 10.0e5 / 1e-6
    dv = np.array([0.0, 5.0, 10.0, 30.0])
    ones = np.ones(4)
    q = local_quantities(ones, t * ones, [0 * ones, 0 * ones, b * ones],
                         [dv + 7.0, 2.0 * ones, -1.0 * ones], (7.0, 2.0, -1.0), 1.0, 1.0)
    np.testing.assert_allclose(q["sound_speed"], 10.0, rtol=1e-12)
    np.testing.assert_allclose(q["alfven_speed"], 10.0, rtol=1e-12)
    np.testing.assert_allclose(q["alfven_mach"], dv / 10.0, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(q["sonic_mach"], dv / 10.0, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(q["plasma_beta"], 2.0, rtol=1e-12)
    # adiabatic gas: c_s grows by sqrt(gamma), M_s drops by it
    q53 = local_quantities(ones, t * ones, [0 * ones, 0 * ones, b * ones],
                           [dv, 0 * ones, 0 * ones], (0, 0, 0), 1.0, 5.0 / 3.0)
    np.testing.assert_allclose(q53["sonic_mach"], dv / 10.0 / np.sqrt(5.0 / 3.0), rtol=1e-12)


def test_gas_properties_sources():
    assert gas_properties({}) == (1.4, pytest.approx(5.0 / 3.0))
    assert gas_properties({"mean_molecular_weight": np.array([1.0]), "adiabatic_index": 1.4}) == (1.0, 1.4)
    assert gas_properties({"equation_of_state": "isothermal"})[1] == 1.0
    assert gas_properties({"adiabatic_index": 5 / 3}, 2.0, 1.0) == (2.0, 1.0)
    with pytest.raises(ValueError, match="adiabatic index"):
        gas_properties({}, adiabatic_index=0.5)


@pytest.mark.parametrize("chunk_cells", [24, 100, 10**6])
def test_chunked_matches_in_memory(tmp_path, chunk_cells):
    path = tmp_path / "snap.h5"
    write_snapshot(path, make_fields((16, 12, 10), seed=5), 10.0)
    mem = phase_statistics(path, chunk_cells=None)
    chk = phase_statistics(path, chunk_cells=chunk_cells, num_workers=2)
    for name in HISTOGRAMS:
        np.testing.assert_array_equal(chk.histograms[name].values, mem.histograms[name].values)
    np.testing.assert_array_equal(chk.table["cells"], mem.table["cells"])
    for col in ("volume_fraction", "mass_fraction", "M_A_rms", "M_s_rms"):
        np.testing.assert_allclose(chk.table[col], mem.table[col], rtol=1e-12)
    np.testing.assert_allclose(chk.mean_velocity_kms, mem.mean_velocity_kms, rtol=1e-12, atol=1e-15)
    # histogram quantiles are within one fine bin (0.002 dex) of the exact sample quantiles
    quant_cols = [c for c in mem.table.columns if any(t in c for t in ("_p05", "_median", "_p95"))]
    assert len(quant_cols) == 3 * len(STAT_QUANTITIES)
    a = np.log10(chk.table[quant_cols].to_numpy(float))
    b = np.log10(mem.table[quant_cols].to_numpy(float))
    ok = np.isfinite(b)
    assert ok.sum() > 50
    for col in [c for c in mem.table.columns if "_min" in c or "_max" in c]:
        np.testing.assert_array_equal(chk.table[col], mem.table[col])
    assert np.max(np.abs(a[ok] - b[ok])) <= FINE_BINS.width_dex * (1 + 1e-9)


def test_histogram_counts_sum_to_cells(tmp_path):
    path = tmp_path / "snap.h5"
    shape = (12, 10, 8)
    write_snapshot(path, make_fields(shape, seed=9), 10.0)
    res = phase_statistics(path, chunk_cells=200)
    h = res.histograms
    rows = []
    for name in HISTOGRAMS:
        assert int(h[name].sum()) == np.prod(shape)
        rows.append(h[name].sum(dim=HISTOGRAMS[name]).values)
    # every histogram bins the same temperatures, so the T marginals agree
    np.testing.assert_array_equal(rows[0], rows[1])
    np.testing.assert_array_equal(rows[0], rows[2])
    # the T marginal is an ordinary histogram of log10 T
    t = make_fields(shape, seed=9)["temperature"].astype(np.float64)
    expected, _ = np.histogram(np.log10(t), bins=np.log10(h["temperature_edges"].values))
    np.testing.assert_array_equal(rows[0], expected)


def test_histogram_quantile_accuracy():
    rng = np.random.default_rng(0)
    x = np.exp(rng.normal(size=20001) * 2.0)
    bins = LogBins(-12, 12, 500)
    counts = np.bincount(bins.index(x), minlength=bins.nbins)
    qs = [0.05, 0.5, 0.95]
    got = histogram_quantile(counts, bins, qs)
    exact = np.quantile(x, qs, method="inverted_cdf")
    assert np.max(np.abs(np.log10(got / exact))) <= bins.width_dex
    assert np.all(np.isnan(histogram_quantile(np.zeros(10), LogBins(0, 1, 10), 0.5)))


def test_run_phases_outputs(tmp_path):
    path = tmp_path / "snap.h5"
    f = _three_phase_box(path)
    out = {k: tmp_path / n for k, n in
           (("table", "phases.csv"), ("histograms", "h.nc"), ("slices", "s.nc"))}
    run_phases(path, **out, phases_config={"thresholds_K": [200.0, 5000.0],
                                          "names": ["CNM", "UNM", "WNM"]}, medium="box",
               chunk_cells=48)
    tab = pd.read_csv(out["table"])
    assert {"n_median_cm^-3", "T_median_K", "B_median_uG", "M_A_median", "beta_p95"} <= set(tab.columns)
    with xr.open_dataset(out["histograms"], engine="h5netcdf") as h:
        assert h["hist_T_density"].attrs["units"] == "count"
        assert h.attrs["medium"] == "box" and "cosmicflow_version" in h.attrs
    with xr.open_dataset(out["slices"], engine="h5netcdf") as s:
        assert s["density"].dims == ("x", "z")
        np.testing.assert_array_equal(s["density"].values, f["density"][:, SHAPE[1] // 2, :])
        np.testing.assert_array_equal(s["phase"].values[:, 0], [0, 0, 1, 1, 1, 2, 2, 2])
        assert s["alfven_mach"].attrs["units"] == "1"


def test_bad_snapshot_is_named(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        phase_statistics(tmp_path / "nope.h5")
    path = tmp_path / "snap.h5"
    write_snapshot(path, make_fields(SHAPE, seed=1), 8.0)
    with h5py.File(path, "r+") as h:
        h["temperature"][3, 2, 1] = np.nan
    with pytest.raises(InputError, match=r"snap\.h5.*temperature"):
        phase_statistics(path, chunk_cells=24)


def test_real_athenak_multiphase_fractions(athenak_data, tmp_path):
    """Fractions of the 32^3 AthenaK ISM run at 50 Myr match those stated in its README."""
    athenak = pytest.importorskip("cosmicflow.athenak", reason="AthenaK ingest not on this branch")
    snap = tmp_path / "ism32.h5"
    athenak.athenak_to_snapshot(athenak_data / "ism-32" / "ISM.mhd_w_bcc.00005.bin", snap, {}, {}, {})
    res = phase_statistics(snap, chunk_cells=5000, num_workers=2)
    tab = res.table.set_index("phase").loc[["CNM", "UNM", "WNM"]]
    # README: mass / volume fractions 0.0031 / 0.0002, 0.522 / 0.349, 0.475 / 0.651
    np.testing.assert_allclose(tab["mass_fraction"], [0.0031, 0.522, 0.475], atol=6e-4)
    np.testing.assert_allclose(tab["volume_fraction"], [0.0002, 0.349, 0.651], atol=6e-4)
    # README: n_H 0.124-20.8 cm^-3, T 131-8725 K
    assert res.table.set_index("phase").loc["all", "n_min_cm^-3"] == pytest.approx(0.124, abs=6e-4)
    assert res.table.set_index("phase").loc["all", "T_max_K"] == pytest.approx(8725, abs=1)


def test_config_schema_gas_property_overrides():
    from pathlib import Path

    from snakemake.utils import validate

    schema = str(Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml")
    cfg = {"media": {"m": {"source": "kolmogorov"}}}
    validate(cfg, schema)
    assert cfg["phases"]["mean_molecular_weight"] is None and cfg["phases"]["adiabatic_index"] is None
    validate({"media": {"m": {"source": "kolmogorov"}}, "phases": {"adiabatic_index": 1.0}}, schema)
    with pytest.raises(Exception, match="less than the minimum"):
        validate({"media": {"m": {"source": "kolmogorov"}}, "phases": {"adiabatic_index": 0.5}}, schema)


def test_stage_memory_model_covers_measured_peaks():
    from cosmicflow.phases import stage_memory_mb

    # measured with benchmarks/bench_phases_gradients.py (2 workers): 480, 855, 876 MB
    for n, measured in ((128, 480), (256, 855), (512, 876)):
        assert stage_memory_mb(32 * n**3, 2) >= measured
    # 2048^3: one x-slab of 2048^2 cells per block, still well under a node
    assert 2000 < stage_memory_mb(32 * 2048**3, 2) < 4000
