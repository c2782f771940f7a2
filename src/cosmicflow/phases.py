"""Thermal phases of a snapshot: phase map, fractions, local Mach numbers, plasma beta (paper §3.1).

The `phases` stage reduces a canonical snapshot to

* a table (``phases.csv``): per phase (and for the whole box) the number of cells, volume and
  mass fractions, minimum, 5 %, median, 95 % and maximum of n, T, |B|, M_A, M_s and plasma
  beta, and rms Mach numbers;
* 2-D histograms T–M_A, T–M_s, T–n in log bins, counts of cells (``phase_histograms.nc``,
  paper Fig. 2);
* a slice through the box of n, T, |B|, M_A, M_s and the phase (``slices.nc``, paper Fig. 1).

Physics conventions (every formula in cgs, then converted):

* phase from temperature by :mod:`cosmicflow.phase_rule` (thresholds T_1 < T_2: CNM T < T_1,
  UNM T_1 <= T <= T_2, WNM T > T_2; paper: 200 K and 5000 K, so T = 5000 K is UNM);
* mass density rho = mu m_u n, where mu (snapshot attr ``mean_molecular_weight``, default 1.4)
  is the mass carried per unit of the snapshot's n, in atomic mass units. For AthenaK ISM
  media n is the hydrogen-nucleus density n_H and mu = 1.4 the mass per H nucleus (with He);
* thermal pressure P = n k_B T, the definition of T in the canonical snapshot;
* local turbulent speed dv = |v - <v>| with <v> the volume average over the box;
* Alfvén speed v_A = |B| / sqrt(4 pi rho); Alfvén Mach number M_A = dv / v_A;
* sound speed c_s = sqrt(gamma P / rho) = sqrt(gamma k_B T / (mu m_u)), gamma the snapshot attr
  ``adiabatic_index`` (default 5/3). For an isothermal medium (attr ``equation_of_state`` =
  ``isothermal`` or ``adiabatic_index`` = 1) gamma = 1 and c_s is the isothermal sound speed
  sqrt(P / rho), consistent with P = rho c_s^2 of the isothermal run; M_s = dv / c_s;
* plasma beta = 8 pi P / B^2.

Statistics are over cells (volume-weighted); mass fractions weight cells by n (mu uniform).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import xarray as xr

from cosmicflow.binning import FINE_BINS, LogBins, histogram_quantile, reduce_blocks
from cosmicflow.constants import K_B, KM_CM, M_U, UG_G
from cosmicflow.io import InputError, atomic_output, provenance_attrs
from cosmicflow.phase_rule import (DEFAULT_PHASE_NAMES, DEFAULT_THRESHOLDS_K, N_PHASES,
                                   check_thresholds, phase_index)
from cosmicflow.snapshot import (
    DEFAULT_ADIABATIC_INDEX,
    DEFAULT_MEAN_MOLECULAR_WEIGHT,
    FIELDS,
    read_snapshot,
)

__all__ = [
    "DEFAULT_CHUNK_CELLS",
    "HIST_BINS",
    "STAT_QUANTITIES",
    "PhaseResult",
    "gas_properties",
    "local_quantities",
    "mean_velocity",
    "open_chunked",
    "phase_index",
    "phase_slices",
    "phase_statistics",
    "run_phases",
    "stage_memory_mb",
]

log = logging.getLogger(__name__)

#: cells per dask block of the chunked path (2^21: 8 x 512 x 512, ~17 MB per float64 field)
DEFAULT_CHUNK_CELLS = 1 << 21

#: quantities summarised per phase: name -> (column label, units, long name)
STAT_QUANTITIES: dict[str, tuple[str, str, str]] = {
    "density": ("n", "cm^-3", "gas number density"),
    "temperature": ("T", "K", "gas temperature"),
    "b_magnitude": ("B", "uG", "magnetic field strength |B|"),
    "alfven_mach": ("M_A", "1", "local Alfven Mach number |v - <v>| / v_A"),
    "sonic_mach": ("M_s", "1", "local sonic Mach number |v - <v>| / c_s"),
    "plasma_beta": ("beta", "1", "plasma beta 8 pi P / B^2"),
}

#: bins of the 2-D histograms (20 per decade); out-of-range cells are clamped into the edge bins
HIST_BINS: dict[str, LogBins] = {
    "temperature": LogBins(0.0, 6.0, 20),  # 1 K .. 1e6 K
    "density": LogBins(-4.0, 4.0, 20),  # 1e-4 .. 1e4 cm^-3
    "alfven_mach": LogBins(-3.0, 3.0, 20),
    "sonic_mach": LogBins(-3.0, 3.0, 20),
}
#: the 2-D histograms: variable name -> quantity against temperature
HISTOGRAMS = {
    "hist_T_alfven_mach": "alfven_mach",
    "hist_T_sonic_mach": "sonic_mach",
    "hist_T_density": "density",
}

VELOCITY = ("vx", "vy", "vz")
FIELD_B = ("bx", "by", "bz")
QUANTILES = (0.05, 0.5, 0.95)


def gas_properties(
    attrs: Mapping[str, Any],
    mean_molecular_weight: float | None = None,
    adiabatic_index: float | None = None,
) -> tuple[float, float]:
    """Resolve (mu, gamma): explicit values (config) first, then snapshot attrs, then defaults.

    mu defaults to 1.4 (neutral atomic gas with helium, mass per H nucleus) and gamma to 5/3.
    A snapshot whose attr ``equation_of_state`` is ``isothermal`` gets gamma = 1, so that
    c_s is the isothermal sound speed.
    """
    mu = mean_molecular_weight
    if mu is None:
        mu = _scalar(attrs.get("mean_molecular_weight", DEFAULT_MEAN_MOLECULAR_WEIGHT))
    gamma = adiabatic_index
    if gamma is None:
        if str(attrs.get("equation_of_state", "")).lower() == "isothermal":
            gamma = 1.0
        else:
            gamma = _scalar(attrs.get("adiabatic_index", DEFAULT_ADIABATIC_INDEX))
    mu, gamma = float(mu), float(gamma)
    if not (mu > 0 and math.isfinite(mu)):
        raise ValueError(f"mean molecular weight must be positive and finite, got {mu}")
    if not (gamma >= 1 and math.isfinite(gamma)):
        raise ValueError(f"adiabatic index must be >= 1 (1 = isothermal), got {gamma}")
    return mu, gamma


def _scalar(value: Any) -> float:
    """A numeric attribute as float (netCDF stores scalars as 1-element arrays)."""
    arr = np.asarray(value, dtype=np.float64).ravel()
    if arr.size != 1:
        raise ValueError(f"expected a scalar attribute, got {value!r}")
    return float(arr[0])


def local_quantities(
    density: np.ndarray,
    temperature: np.ndarray,
    b: Sequence[np.ndarray],
    v: Sequence[np.ndarray],
    mean_velocity_kms: Sequence[float],
    mean_molecular_weight: float,
    adiabatic_index: float,
) -> dict[str, np.ndarray]:
    r"""Local magnetisation and turbulence of every cell (float64 arrays).

    .. math::

        v_A = \frac{|B|}{\sqrt{4\pi\mu m_u n}}, \quad
        c_s = \sqrt{\frac{\gamma k_B T}{\mu m_u}}, \quad
        M_A = \frac{|v - \langle v\rangle|}{v_A}, \quad
        M_s = \frac{|v - \langle v\rangle|}{c_s}, \quad
        \beta = \frac{8\pi n k_B T}{B^2}

    where n [cm^-3] is the snapshot density, T [K] its temperature (P = n k_B T), B [uG] the
    field, v [km/s] the velocity, <v> [km/s] its volume average, mu the mass per unit of n
    [m_u] and gamma the adiabatic index (1 for an isothermal medium).

    Returns ``b_magnitude`` [uG], ``dv`` [km/s], ``alfven_speed`` [km/s], ``sound_speed``
    [km/s], ``alfven_mach``, ``sonic_mach``, ``plasma_beta`` (dimensionless). Cells with
    B = 0 have M_A = beta = inf; cells with v = <v> have M_A = M_s = 0.
    """
    n = np.asarray(density, dtype=np.float64)
    t = np.asarray(temperature, dtype=np.float64)
    bmag = np.sqrt(sum(np.asarray(c, dtype=np.float64) ** 2 for c in b))
    dv = np.sqrt(
        sum((np.asarray(c, dtype=np.float64) - float(m)) ** 2 for c, m in zip(v, mean_velocity_kms))
    )
    mu = float(mean_molecular_weight)
    rho = mu * M_U * n
    v_a = bmag * (UG_G / KM_CM) / np.sqrt(4.0 * np.pi * rho)
    c_s = np.sqrt(adiabatic_index * K_B * t / (mu * M_U)) / KM_CM
    pressure = n * K_B * t
    with np.errstate(divide="ignore", invalid="ignore"):
        m_a = np.where(dv == 0.0, 0.0, dv / v_a)
        beta = 8.0 * np.pi * pressure / (bmag * UG_G) ** 2
    return {
        "b_magnitude": bmag,
        "dv": dv,
        "alfven_speed": v_a,
        "sound_speed": c_s,
        "alfven_mach": m_a,
        "sonic_mach": dv / c_s,
        "plasma_beta": beta,
    }


@dataclass(frozen=True)
class _PhaseSpec:
    where: str
    thresholds_K: tuple[float, float]
    mean_velocity_kms: tuple[float, float, float]
    mu: float
    gamma: float
    fine: bool


def _check_block(block: Mapping[str, np.ndarray], where: str) -> None:
    for name, a in block.items():
        if not np.all(np.isfinite(a)):
            raise InputError(f"{where}: variable {name!r} has non-finite values")
        if name in ("density", "temperature") and np.any(a <= 0):
            raise InputError(f"{where}: variable {name!r} has values <= 0")


def _hist2d(ix: np.ndarray, b_y: LogBins, y: np.ndarray, nx: int) -> np.ndarray:
    iy = b_y.index(y)
    flat = np.bincount((ix * b_y.nbins + iy).ravel(), minlength=nx * b_y.nbins)
    return flat.reshape(nx, b_y.nbins).astype(np.int64)


def _phase_block(block: Mapping[str, np.ndarray], spec: _PhaseSpec) -> dict[str, np.ndarray]:
    """Partial sums of one slab of cells (the kernel of both the chunked and in-memory paths)."""
    _check_block(block, spec.where)
    n = np.asarray(block["density"], dtype=np.float64)
    t = np.asarray(block["temperature"], dtype=np.float64)
    q = local_quantities(
        n, t, [block[c] for c in FIELD_B], [block[c] for c in VELOCITY],
        spec.mean_velocity_kms, spec.mu, spec.gamma,
    )
    q["density"], q["temperature"] = n, t
    phase = phase_index(t, spec.thresholds_K).ravel().astype(np.intp)
    out: dict[str, np.ndarray] = {
        "cells": np.bincount(phase, minlength=N_PHASES).astype(np.int64),
        "mass": np.bincount(phase, weights=n.ravel(), minlength=N_PHASES),
        "sum_alfven_mach_sq": np.bincount(phase, weights=q["alfven_mach"].ravel() ** 2, minlength=N_PHASES),
        "sum_sonic_mach_sq": np.bincount(phase, weights=q["sonic_mach"].ravel() ** 2, minlength=N_PHASES),
    }
    bt = HIST_BINS["temperature"]
    it = bt.index(t)
    out["clamped_temperature"] = bt.outside(t)
    for hname, qname in HISTOGRAMS.items():
        out[hname] = _hist2d(it, HIST_BINS[qname], q[qname], bt.nbins)
        out[f"clamped_{qname}"] = HIST_BINS[qname].outside(q[qname])
    if spec.fine:
        nf = FINE_BINS.nbins
        for name in STAT_QUANTITIES:
            k = FINE_BINS.index(q[name]).ravel()
            out[f"fine_{name}"] = np.bincount(phase * nf + k, minlength=N_PHASES * nf).reshape(N_PHASES, nf)
    for name in STAT_QUANTITIES:
        x = q[name].ravel()
        lo, hi = np.full(N_PHASES, np.nan), np.full(N_PHASES, np.nan)
        for p in range(N_PHASES):
            sel = x[phase == p]
            if sel.size:
                lo[p], hi[p] = sel.min(), sel.max()
        out[f"min_{name}"], out[f"max_{name}"] = lo, hi
    return out


@dataclass
class PhaseResult:
    """Output of :func:`phase_statistics`: the table and the 2-D histograms."""

    table: pd.DataFrame
    histograms: xr.Dataset
    mean_velocity_kms: np.ndarray
    mean_molecular_weight: float
    adiabatic_index: float
    attrs: dict[str, Any] = field(default_factory=dict)


def stage_memory_mb(snapshot_bytes: int, num_workers: int = 1,
                    chunk_cells: int = DEFAULT_CHUNK_CELLS) -> int:
    """Peak memory [MB] to request for the phases or gradients stage of a cubic snapshot.

    Model: 400 MB of interpreter and libraries plus, per worker thread, one x-slab block of
    max(chunk_cells, N^2) cells at 250 bytes per cell (float32 fields, float64 derived
    quantities, bin indices, halo copies). Measured peaks (benchmarks/
    bench_phases_gradients.py, 2 workers): 480 / 855 / 876 MB at 128^3 / 256^3 / 512^3
    against the model's 1400 MB from 256^3 up.
    """
    cells = max(1, int(snapshot_bytes) // (4 * len(FIELDS)))
    side = round(cells ** (1.0 / 3.0))
    block = max(int(chunk_cells), side * side)
    return int(400 + max(1, int(num_workers)) * block * 250 / 2**20)


def _x_chunk(shape: Sequence[int], chunk_cells: int) -> int:
    return int(max(1, min(shape[0], chunk_cells // max(1, shape[1] * shape[2]))))


def open_chunked(path: str | Path, chunk_cells: int = DEFAULT_CHUNK_CELLS) -> xr.Dataset:
    """Open a canonical snapshot lazily as dask arrays in x-slabs of about ``chunk_cells`` cells."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: snapshot file does not exist")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as probe:
            missing = [k for k in FIELDS if k not in probe]
            shape = tuple(probe.sizes[d] for d in ("x", "y", "z"))
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable canonical snapshot ({err})") from None
    if missing:
        raise InputError(f"{path}: missing variable(s) {', '.join(missing)}")
    if chunk_cells < 1:
        raise ValueError(f"chunk_cells must be >= 1, got {chunk_cells}")
    return xr.open_dataset(
        path, engine="h5netcdf", chunks={"x": _x_chunk(shape, chunk_cells), "y": -1, "z": -1}
    )


def mean_velocity(fields: Mapping[str, Any]) -> np.ndarray:
    """Volume-averaged velocity <v> [km/s] (float64 accumulation; dask or numpy fields)."""
    import dask

    sums = [fields[c].astype(np.float64).mean() for c in VELOCITY]
    return np.array([float(s) for s in dask.compute(*sums)])


def _load(path: Path, chunk_cells: int | None):
    if chunk_cells is None:
        snap = read_snapshot(path, validate=True)
        return snap.fields, snap.attrs
    ds = open_chunked(path, chunk_cells)
    return {k: ds[k].data for k in FIELDS}, dict(ds.attrs)


def phase_statistics(
    path: str | Path,
    thresholds_K: Sequence[float] = DEFAULT_THRESHOLDS_K,
    names: Sequence[str] = DEFAULT_PHASE_NAMES,
    chunk_cells: int | None = DEFAULT_CHUNK_CELLS,
    mean_molecular_weight: float | None = None,
    adiabatic_index: float | None = None,
    num_workers: int = 1,
) -> PhaseResult:
    """Phase fractions, per-phase statistics and T–M_A, T–M_s, T–n histograms of a snapshot.

    Parameters
    ----------
    path : canonical snapshot (``results/{medium}/snapshot.h5``).
    thresholds_K : (T_1, T_2) [K] separating the phases, see :func:`phase_index`.
    names : phase names, coldest first.
    chunk_cells : cells per dask block (x-slabs); peak memory is a few blocks per worker.
        ``None`` loads the whole snapshot (memory-mapped) and computes exact quantiles.
    mean_molecular_weight, adiabatic_index : override the snapshot attrs (see
        :func:`gas_properties`).
    num_workers : threads of the chunked path.

    Quantiles: the in-memory path returns exact sample quantiles (numpy "inverted_cdf": the
    ceil(qN)-th smallest value). The chunked path reads them off per-phase histograms of
    log10 x in 0.002 dex bins (:data:`cosmicflow.binning.FINE_BINS`), exact to within one bin:
    |log10 x_chunked - log10 x_exact| <= 0.002 (0.46 %), and clipped to the exact per-phase
    minimum and maximum (also in the table), so a single-valued phase is exact. Counts, fractions and 2-D histograms
    agree between the paths exactly (fractions to round-off of the float64 sums).
    """
    path = Path(path)
    if len(names) != N_PHASES:
        raise ValueError(f"need {N_PHASES} phase names, got {list(names)}")
    thresholds = check_thresholds(thresholds_K)
    fields, attrs = _load(path, chunk_cells)
    mu, gamma = gas_properties(attrs, mean_molecular_weight, adiabatic_index)
    vmean = mean_velocity(fields)
    spec = _PhaseSpec(str(path), thresholds, tuple(vmean), mu, gamma, fine=chunk_cells is not None)
    if chunk_cells is None:
        parts = _phase_block(fields, spec)
        quantiles = _exact_quantiles(fields, spec)
    else:
        parts = reduce_blocks(_phase_block, fields, num_workers=num_workers, spec=spec)
        quantiles = {}
        for name in STAT_QUANTITIES:
            counts = [*parts[f"fine_{name}"], parts[f"fine_{name}"].sum(axis=0)]
            lo, hi = _with_total(parts[f"min_{name}"], np.fmin), _with_total(parts[f"max_{name}"], np.fmax)
            quantiles[name] = np.array([histogram_quantile(c, FINE_BINS, QUANTILES, (a, b))
                                        for c, a, b in zip(counts, lo, hi)])
    ncells = int(np.prod(fields["density"].shape))
    if int(parts["cells"].sum()) != ncells:  # a dropped or doubled block would show here
        raise RuntimeError(f"{path}: counted {parts['cells'].sum()} cells of {ncells}")
    table = _table(parts, quantiles, thresholds, list(names))
    hists = _histograms(parts, list(names), thresholds, ncells)
    meta = {
        "mean_molecular_weight": mu,
        "adiabatic_index": gamma,
        "mean_velocity_kms": vmean,
        "phase_thresholds_K": np.array(thresholds),
        "phase_names": ",".join(names),
        "quantile_method": (
            "exact (inverted_cdf)" if chunk_cells is None
            else f"histogram, {FINE_BINS.width_dex:g} dex bins, linear in log10"
        ),
    }
    hists.attrs.update(meta)
    return PhaseResult(table, hists, vmean, mu, gamma, meta)


def _with_total(per_phase: np.ndarray, reduce) -> np.ndarray:
    """Per-phase values plus the whole-box one (min or max over phases, ignoring NaN)."""
    with np.errstate(invalid="ignore"):
        total = reduce.reduce(per_phase) if np.any(np.isfinite(per_phase)) else np.nan
    return np.append(per_phase, total)


def _exact_quantiles(fields: Mapping[str, np.ndarray], spec: _PhaseSpec) -> dict[str, np.ndarray]:
    n = np.asarray(fields["density"], dtype=np.float64)
    t = np.asarray(fields["temperature"], dtype=np.float64)
    q = local_quantities(n, t, [fields[c] for c in FIELD_B], [fields[c] for c in VELOCITY],
                         spec.mean_velocity_kms, spec.mu, spec.gamma)
    q["density"], q["temperature"] = n, t
    phase = phase_index(t, spec.thresholds_K)
    out = {}
    for name in STAT_QUANTITIES:
        rows = []
        for sel in [phase == 0, phase == 1, phase == 2, np.ones(phase.shape, bool)]:
            x = q[name][sel]
            rows.append(np.quantile(x, QUANTILES, method="inverted_cdf") if x.size
                        else np.full(len(QUANTILES), np.nan))
        out[name] = np.array(rows)
    return out


def _table(parts, quantiles, thresholds, names) -> pd.DataFrame:
    cells = np.append(parts["cells"], parts["cells"].sum())
    mass = np.append(parts["mass"], parts["mass"].sum())
    t1, t2 = thresholds
    rows = {
        "phase": [*names, "all"],
        "T_low_K": [0.0, t1, t2, 0.0],
        "T_high_K": [t1, t2, np.inf, np.inf],
        "cells": cells,
        "volume_fraction": cells / cells[-1],
        "mass_fraction": mass / mass[-1],
    }
    for label in ("alfven_mach", "sonic_mach"):
        s = parts[f"sum_{label}_sq"]
        s = np.append(s, s.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            rms = np.sqrt(s / cells)
        rows[f"{STAT_QUANTITIES[label][0]}_rms"] = np.where(cells > 0, rms, np.nan)
    for name, (label, units, _) in STAT_QUANTITIES.items():
        suffix = "" if units == "1" else f"_{units}"
        rows[f"{label}_min{suffix}"] = _with_total(parts[f"min_{name}"], np.fmin)
        for j, tag in enumerate(("p05", "median", "p95")):
            rows[f"{label}_{tag}{suffix}"] = quantiles[name][:, j]
        rows[f"{label}_max{suffix}"] = _with_total(parts[f"max_{name}"], np.fmax)
    return pd.DataFrame(rows)


def _histograms(parts, names, thresholds, ncells) -> xr.Dataset:
    bt = HIST_BINS["temperature"]
    coords = {"temperature": ("temperature", bt.centres, {"units": "K", "long_name": "bin centre"})}
    data: dict[str, Any] = {
        "temperature_edges": ("temperature_edge", bt.edges, {"units": "K"}),
    }
    for hname, qname in HISTOGRAMS.items():
        b = HIST_BINS[qname]
        units = STAT_QUANTITIES[qname][1]
        coords[qname] = (qname, b.centres, {"units": units, "long_name": "bin centre"})
        data[f"{qname}_edges"] = (f"{qname}_edge", b.edges, {"units": units})
        clamped = parts[f"clamped_{qname}"]
        data[hname] = (
            ("temperature", qname),
            parts[hname],
            {
                "units": "count",
                "long_name": f"cells per bin of T and {STAT_QUANTITIES[qname][2]}",
                "clamped_below_above": clamped,
                "note": "cells outside the bin range are counted in the outermost bins",
            },
        )
    data["cells"] = ("phase", parts["cells"], {"units": "count", "long_name": "cells per phase"})
    data["volume_fraction"] = ("phase", parts["cells"] / ncells, {"units": "1"})
    data["mass_fraction"] = ("phase", parts["mass"] / parts["mass"].sum(), {"units": "1"})
    coords["phase"] = ("phase", names)
    ds = xr.Dataset(data, coords=coords)
    ds["temperature_edges"].attrs["clamped_below_above"] = parts["clamped_temperature"]
    ds.attrs["total_cells"] = ncells
    return ds


def phase_slices(
    path: str | Path,
    mean_velocity_kms: Sequence[float],
    thresholds_K: Sequence[float] = DEFAULT_THRESHOLDS_K,
    axis: int = 1,
    index: int | None = None,
    mean_molecular_weight: float | None = None,
    adiabatic_index: float | None = None,
) -> xr.Dataset:
    """A plane through the box at ``index`` (default: the middle) normal to ``axis``.

    The default plane (normal to y) contains the z axis, along which the synthetic and AthenaK
    media carry their mean field. Holds n [cm^-3], T [K], |B| [uG], M_A, M_s, plasma beta and
    the phase index; M_A and M_s use the box-averaged <v> passed in (the same as the table's).
    """
    snap = read_snapshot(path, validate=False)
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    n_axis = snap.shape[axis]
    index = n_axis // 2 if index is None else int(index)
    if not 0 <= index < n_axis:
        raise ValueError(f"slice index {index} outside 0..{n_axis - 1}")
    sel = tuple(index if a == axis else slice(None) for a in range(3))
    # an HDF5 hyperslab read copies just the plane; slicing the memory map would fault in
    # (and count as resident) pages around every row of a large snapshot
    with h5py.File(snap.path, "r") as h5:
        plane = {k: np.asarray(h5[k][sel]) for k in FIELDS}
    _check_block(plane, str(path))
    mu, gamma = gas_properties(snap.attrs, mean_molecular_weight, adiabatic_index)
    q = local_quantities(plane["density"], plane["temperature"],
                         [plane[c] for c in FIELD_B], [plane[c] for c in VELOCITY],
                         mean_velocity_kms, mu, gamma)
    dims = tuple(d for a, d in enumerate(("x", "y", "z")) if a != axis)
    coords = {d: (d, snap.coordinate("xyz".index(d)), {"units": "pc"}) for d in dims}
    ds = xr.Dataset(coords=coords)
    ds["density"] = (dims, plane["density"], {"units": "cm^-3", "long_name": "gas number density"})
    ds["temperature"] = (dims, plane["temperature"], {"units": "K", "long_name": "gas temperature"})
    for name in ("b_magnitude", "alfven_mach", "sonic_mach", "plasma_beta"):
        label, units, long_name = STAT_QUANTITIES[name]
        ds[name] = (dims, q[name].astype(np.float32), {"units": units, "long_name": long_name})
    ds["phase"] = (dims, phase_index(plane["temperature"], thresholds_K),
                   {"units": "1", "long_name": "phase index, 0 = coldest"})
    normal = "xyz"[axis]
    ds.attrs.update({
        "slice_normal": normal,
        "slice_index": index,
        f"slice_{normal}_pc": float(snap.coordinate(axis)[index]),
        "box_size_pc": snap.box_pc,
        "mean_velocity_kms": np.asarray(mean_velocity_kms, dtype=np.float64),
        "mean_molecular_weight": mu,
        "adiabatic_index": gamma,
    })
    return ds


def run_phases(
    snapshot: str | Path,
    table: str | Path,
    histograms: str | Path,
    slices: str | Path,
    phases_config: Mapping[str, Any],
    medium: str = "",
    chunk_cells: int | None = DEFAULT_CHUNK_CELLS,
    num_workers: int = 1,
) -> PhaseResult:
    """The `phases` stage: write the table (CSV), the 2-D histograms and a slice (NetCDF)."""
    thresholds = phases_config.get("thresholds_K", DEFAULT_THRESHOLDS_K)
    names = phases_config.get("names", DEFAULT_PHASE_NAMES)
    mu = phases_config.get("mean_molecular_weight")
    gamma = phases_config.get("adiabatic_index")
    result = phase_statistics(snapshot, thresholds, names, chunk_cells, mu, gamma, num_workers)
    prov = provenance_attrs("cosmicflow.phases", {"medium": medium, "phases": dict(phases_config)})
    log.info("phase fractions of %s:\n%s", medium or snapshot,
             result.table[["phase", "cells", "volume_fraction", "mass_fraction"]].to_string())
    with atomic_output(table) as tmp:
        result.table.to_csv(tmp, index=False, float_format="%.6g")
    hist = result.histograms.assign_attrs(medium=medium, **prov)
    with atomic_output(histograms) as tmp:
        hist.to_netcdf(tmp, engine="h5netcdf")
    sl = phase_slices(snapshot, result.mean_velocity_kms, thresholds,
                      mean_molecular_weight=mu, adiabatic_index=gamma)
    sl.attrs.update(medium=medium, **prov)
    with atomic_output(slices) as tmp:
        sl.to_netcdf(tmp, engine="h5netcdf")
    return result
