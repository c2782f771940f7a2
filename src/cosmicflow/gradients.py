"""Temperature and field-strength gradients, adiabaticity and mean-field quantities (paper §3.2, Fig. 3).

The `gradients` stage reduces a canonical snapshot to ``gradients.nc``:

* the joint histogram of |grad T| [K/pc] and |grad |B|| [uG/pc] in log bins (paper Fig. 3);
* per particle energy E and phase, the distribution of the adiabaticity parameter

  .. math:: \\epsilon = \\frac{|\\nabla |B||\\, r_L}{|B|}, \\qquad
            r_L = 1.0810\\,\\mathrm{pc}\\,\\frac{E/\\mathrm{PeV}}{Z\\,B_\\mathrm{ref}/\\mu\\mathrm{G}}

  where |B| is the local field strength and B_ref = |<B>| (or ``particles.b_ref_uG``), the
  same reference field the particle stages use for r_L (paper §4: epsilon <~ 1 adiabatic,
  epsilon >~ 1 non-adiabatic);
* mean-field quantities <B> [uG], B0 = |<B>|, B_rms = sqrt(<|B|^2>) and
  dB/B0 = sqrt(<|B - <B>|^2>) / B0.

Gradients are second-order central differences on the periodic grid,

.. math:: \\partial_x f\\,\\big|_i = \\frac{f_{i+1} - f_{i-1}}{2\\Delta x}

(indices wrap), which for f = sin(kx) gives cos(kx) sin(k Delta x)/Delta x. The chunked path
computes them on dask x-slabs with a one-cell periodic halo (``dask.array.map_overlap``); the
in-memory path uses ``np.roll``. Both evaluate the same expression in float64, so their
histograms agree exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cosmicflow.binning import LogBins, reduce_blocks
from cosmicflow.constants import larmor_radius_pc
from cosmicflow.io import InputError, atomic_output, provenance_attrs
from cosmicflow.phase_rule import DEFAULT_PHASE_NAMES, DEFAULT_THRESHOLDS_K, N_PHASES, phase_index
from cosmicflow.phases import DEFAULT_CHUNK_CELLS, open_chunked
from cosmicflow.snapshot import read_snapshot

__all__ = [
    "GRADIENT_BINS",
    "gradient_magnitude",
    "gradient_statistics",
    "mean_field_quantities",
    "run_gradients",
]

log = logging.getLogger(__name__)

#: log bins (20 per decade) of |grad T| [K/pc], |grad B| [uG/pc] and epsilon; out-of-range
#: values (e.g. |grad T| = 0 in an isothermal medium) are clamped into the outermost bins
GRADIENT_BINS: dict[str, LogBins] = {
    "grad_temperature": LogBins(-2.0, 7.0, 20),  # 0.01 .. 1e7 K/pc
    "grad_b": LogBins(-5.0, 4.0, 20),  # 1e-5 .. 1e4 uG/pc
    "epsilon": LogBins(-6.0, 5.0, 20),
}
FIELD_B = ("bx", "by", "bz")


def _central_sq_sum(padded: np.ndarray, cell_pc: Sequence[float]) -> np.ndarray:
    """|grad f|^2 on the interior of an array padded by one cell on every side."""
    f = padded
    dx, dy, dz = (float(c) for c in cell_pc)
    gx = (f[2:, 1:-1, 1:-1] - f[:-2, 1:-1, 1:-1]) / (2.0 * dx)
    gy = (f[1:-1, 2:, 1:-1] - f[1:-1, :-2, 1:-1]) / (2.0 * dy)
    gz = (f[1:-1, 1:-1, 2:] - f[1:-1, 1:-1, :-2]) / (2.0 * dz)
    return gx * gx + gy * gy + gz * gz


def _gradient_block(padded: np.ndarray, cell_pc: Sequence[float]) -> np.ndarray:
    return np.sqrt(_central_sq_sum(np.asarray(padded, dtype=np.float64), cell_pc))


def gradient_magnitude(f: np.ndarray, cell_pc: float | Sequence[float]) -> np.ndarray:
    r"""|grad f| by periodic central differences (float64, same shape as ``f``).

    .. math:: |\nabla f|_{ijk} = \Big[\sum_a \Big(\frac{f_{+a} - f_{-a}}{2\Delta_a}\Big)^2\Big]^{1/2}

    where f_{+-a} are the neighbours along axis a, wrapping at the box faces, and Delta_a
    [pc] the cell edge. Units: [f] per pc.
    """
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 3:
        raise ValueError(f"gradient_magnitude needs a 3-D field, got shape {f.shape}")
    cell = np.broadcast_to(np.asarray(cell_pc, dtype=np.float64), (3,))
    if np.any(cell <= 0) or not np.all(np.isfinite(cell)):
        raise ValueError(f"cell size must be positive [pc], got {cell_pc}")
    return _gradient_block(np.pad(f, 1, mode="wrap"), cell)


@dataclass(frozen=True)
class _GradSpec:
    where: str
    thresholds_K: tuple[float, float]
    larmor_pc: tuple[float, ...]
    mean_field_ug: tuple[float, float, float]


def _gradient_partials(block: Mapping[str, np.ndarray], spec: _GradSpec) -> dict[str, np.ndarray]:
    """Partial histograms and sums of one slab (kernel of both paths)."""
    t = np.asarray(block["temperature"], dtype=np.float64)
    bmag = np.asarray(block["b_magnitude"], dtype=np.float64)
    gt = np.asarray(block["grad_temperature"])
    gb = np.asarray(block["grad_b"])
    if not (np.all(np.isfinite(gt)) and np.all(np.isfinite(gb))):
        raise InputError(f"{spec.where}: non-finite temperature or magnetic field values")
    bins_t, bins_b, bins_e = (GRADIENT_BINS[k] for k in ("grad_temperature", "grad_b", "epsilon"))
    it, ib = bins_t.index(gt), bins_b.index(gb)
    out: dict[str, np.ndarray] = {
        "hist_grad": np.bincount((it * bins_b.nbins + ib).ravel(),
                                 minlength=bins_t.nbins * bins_b.nbins)
        .reshape(bins_t.nbins, bins_b.nbins).astype(np.int64),
        "clamped_grad_temperature": bins_t.outside(gt),
        "clamped_grad_b": bins_b.outside(gb),
    }
    phase = phase_index(t, spec.thresholds_K).ravel().astype(np.intp)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_scale = np.where(gb == 0.0, 0.0, gb / bmag).ravel()  # |grad B| / B [1/pc]
    ne = bins_e.nbins
    hist_e = np.zeros((len(spec.larmor_pc), 3, ne), np.int64)
    clamped_e = np.zeros((len(spec.larmor_pc), 2), np.int64)
    for i, r_l in enumerate(spec.larmor_pc):
        eps = inv_scale * r_l
        hist_e[i] = np.bincount(phase * ne + bins_e.index(eps), minlength=N_PHASES * ne).reshape(N_PHASES, ne)
        clamped_e[i] = bins_e.outside(eps)
    out["hist_epsilon"] = hist_e
    out["clamped_epsilon"] = clamped_e
    b0 = np.asarray(spec.mean_field_ug)
    out["sum_db_sq"] = np.array(sum(
        np.sum((np.asarray(block[c], dtype=np.float64) - m) ** 2) for c, m in zip(FIELD_B, b0)
    ))
    out["sum_b_sq"] = np.array(np.sum(bmag * bmag))
    out["cells"] = np.array(t.size, np.int64)
    return out


def mean_field_quantities(mean_field_ug: Sequence[float], sum_b_sq: float, sum_db_sq: float,
                          cells: int) -> dict[str, Any]:
    r"""<B>, B0 = |<B>|, B_rms = sqrt(<B^2>), dB_rms = sqrt(<|B - <B>|^2>) and dB/B0 [uG, 1]."""
    b0_vec = np.asarray(mean_field_ug, dtype=np.float64)
    b0 = float(np.linalg.norm(b0_vec))
    db = float(np.sqrt(sum_db_sq / cells))
    return {
        "mean_field_uG": b0_vec,
        "b0_uG": b0,
        "b_rms_uG": float(np.sqrt(sum_b_sq / cells)),
        "db_rms_uG": db,
        "db_over_b0": db / b0 if b0 > 0 else float("inf"),
    }


def gradient_statistics(
    path: str | Path,
    energies_PeV: Sequence[float] = (1.5, 2.5, 5.0, 7.5, 10.0, 15.0),
    charge: int = 1,
    b_ref_uG: float | None = None,
    thresholds_K: Sequence[float] = DEFAULT_THRESHOLDS_K,
    names: Sequence[str] = DEFAULT_PHASE_NAMES,
    chunk_cells: int | None = DEFAULT_CHUNK_CELLS,
    num_workers: int = 1,
) -> xr.Dataset:
    """Gradient histograms, epsilon distributions and mean-field quantities of a snapshot.

    Parameters
    ----------
    path : canonical snapshot.
    energies_PeV : particle energies E [PeV] for epsilon = |grad B| r_L(E) / |B|.
    charge : charge number Z.
    b_ref_uG : reference field for r_L [uG]; None means B0 = |<B>|.
    thresholds_K, names : phase definition (see :func:`cosmicflow.phase_rule.phase_index`).
    chunk_cells : cells per dask x-slab; None computes in memory with ``np.roll`` differences.
    num_workers : threads of the chunked path.
    """
    import dask
    import dask.array as da

    path = Path(path)
    energies = [float(e) for e in energies_PeV]
    if not energies or any(not e > 0 for e in energies):
        raise ValueError(f"energies_PeV must be positive, got {list(energies_PeV)}")
    if len(names) != N_PHASES:
        raise ValueError(f"need {N_PHASES} phase names, got {list(names)}")
    if chunk_cells is None:
        snap = read_snapshot(path, validate=True)
        cell = snap.cell_pc
        fields = {k: snap.fields[k] for k in ("temperature", *FIELD_B)}
    else:
        ds = open_chunked(path, chunk_cells)
        box = np.broadcast_to(np.asarray(ds.attrs["box_size_pc"], dtype=np.float64), (3,))
        cell = box / np.array([ds.sizes[d] for d in ("x", "y", "z")])
        fields = {k: ds[k].data for k in ("temperature", *FIELD_B)}
    mean_b = np.array([float(m) for m in dask.compute(
        *[fields[c].astype(np.float64).mean() for c in FIELD_B])])
    b0 = float(np.linalg.norm(mean_b))
    b_ref = float(b_ref_uG) if b_ref_uG is not None else b0
    if not b_ref > 0:
        raise InputError(
            f"{path}: the mean field |<B>| is 0, so r_L has no reference field; set "
            "particles.b_ref_uG in the config"
        )
    larmor = tuple(larmor_radius_pc(e, b_ref, charge) for e in energies)
    th = tuple(float(x) for x in thresholds_K)
    spec = _GradSpec(str(path), th, larmor, tuple(mean_b))

    if chunk_cells is None:
        bmag = np.sqrt(sum(np.asarray(fields[c], dtype=np.float64) ** 2 for c in FIELD_B))
        block = {
            "temperature": fields["temperature"],
            "b_magnitude": bmag,
            "grad_temperature": gradient_magnitude(fields["temperature"], cell),
            "grad_b": gradient_magnitude(bmag, cell),
            **{c: fields[c] for c in FIELD_B},
        }
        parts = _gradient_partials(block, spec)
    else:
        bmag = da.sqrt(sum(fields[c].astype(np.float64) ** 2 for c in FIELD_B))
        grad = dict(depth=1, boundary="periodic", trim=False, dtype=np.float64, cell_pc=tuple(cell))
        arrays = {
            "temperature": fields["temperature"],
            "b_magnitude": bmag,
            "grad_temperature": fields["temperature"].astype(np.float64)
            .map_overlap(_gradient_block, **grad),
            "grad_b": bmag.map_overlap(_gradient_block, **grad),
            **{c: fields[c] for c in FIELD_B},
        }
        parts = reduce_blocks(_gradient_partials, arrays, num_workers=num_workers, spec=spec)
    return _gradient_dataset(parts, spec, energies, charge, b_ref, b_ref_uG is None, names, cell)


def _gradient_dataset(parts, spec, energies, charge, b_ref, b_ref_is_mean, names, cell) -> xr.Dataset:
    bt, bb, be = (GRADIENT_BINS[k] for k in ("grad_temperature", "grad_b", "epsilon"))
    ncells = int(parts["cells"])
    mf = mean_field_quantities(spec.mean_field_ug, float(parts["sum_b_sq"]),
                               float(parts["sum_db_sq"]), ncells)
    note = "values outside the bin range are counted in the outermost bins"
    ds = xr.Dataset(
        {
            "hist_grad_T_grad_B": (
                ("grad_temperature", "grad_b"), parts["hist_grad"],
                {"units": "count", "long_name": "cells per bin of |grad T| and |grad |B||",
                 "note": note},
            ),
            "grad_temperature_edges": ("grad_temperature_edge", bt.edges,
                                       {"units": "K/pc", "clamped_below_above":
                                        parts["clamped_grad_temperature"]}),
            "grad_b_edges": ("grad_b_edge", bb.edges,
                             {"units": "uG/pc", "clamped_below_above": parts["clamped_grad_b"]}),
            "hist_epsilon": (
                ("energy", "phase", "epsilon"), parts["hist_epsilon"],
                {"units": "count", "note": note,
                 "long_name": "cells per bin of epsilon = |grad |B|| r_L / |B|, per phase"},
            ),
            "clamped_epsilon": (("energy", "bound"), parts["clamped_epsilon"], {"units": "count"}),
            "epsilon_edges": ("epsilon_edge", be.edges, {"units": "1"}),
            "larmor_radius_pc": ("energy", np.array(spec.larmor_pc),
                                 {"units": "pc", "long_name": "r_L at B_ref"}),
            "mean_field": ("component", mf["mean_field_uG"],
                           {"units": "uG", "long_name": "volume-averaged field <B>"}),
            "b0": ((), mf["b0_uG"], {"units": "uG", "long_name": "|<B>|"}),
            "b_rms": ((), mf["b_rms_uG"], {"units": "uG", "long_name": "sqrt(<|B|^2>)"}),
            "db_rms": ((), mf["db_rms_uG"], {"units": "uG", "long_name": "sqrt(<|B - <B>|^2>)"}),
            "db_over_b0": ((), mf["db_over_b0"], {"units": "1", "long_name": "dB_rms / |<B>|"}),
        },
        coords={
            "grad_temperature": ("grad_temperature", bt.centres, {"units": "K/pc"}),
            "grad_b": ("grad_b", bb.centres, {"units": "uG/pc"}),
            "epsilon": ("epsilon", be.centres, {"units": "1"}),
            "energy": ("energy", np.array(energies), {"units": "PeV"}),
            "phase": ("phase", list(names)),
            "component": ("component", ["x", "y", "z"]),
            "bound": ("bound", ["below", "above"]),
        },
    )
    ds.attrs.update({
        "total_cells": ncells,
        "cell_size_pc": np.asarray(cell, dtype=np.float64),
        "charge": int(charge),
        "b_ref_uG": b_ref,
        "b_ref_definition": "|<B>|" if b_ref_is_mean else "particles.b_ref_uG",
        "phase_thresholds_K": np.array(spec.thresholds_K),
        "gradient_scheme": "periodic second-order central differences, float64",
    })
    return ds


def run_gradients(
    snapshot: str | Path,
    output: str | Path,
    particles_config: Mapping[str, Any],
    phases_config: Mapping[str, Any],
    medium: str = "",
    chunk_cells: int | None = DEFAULT_CHUNK_CELLS,
    num_workers: int = 1,
) -> xr.Dataset:
    """The `gradients` stage: write ``gradients.nc`` for one medium."""
    ds = gradient_statistics(
        snapshot,
        energies_PeV=particles_config.get("energies_PeV", (1.5, 2.5, 5.0, 7.5, 10.0, 15.0)),
        charge=int(particles_config.get("charge", 1)),
        b_ref_uG=particles_config.get("b_ref_uG"),
        thresholds_K=phases_config.get("thresholds_K", DEFAULT_THRESHOLDS_K),
        names=phases_config.get("names", DEFAULT_PHASE_NAMES),
        chunk_cells=chunk_cells,
        num_workers=num_workers,
    )
    ds.attrs.update(medium=medium, **provenance_attrs(
        "cosmicflow.gradients",
        {"medium": medium, "particles": dict(particles_config), "phases": dict(phases_config)},
    ))
    log.info("%s: <B> = %s uG, B_rms = %.4g uG, dB/B0 = %.4g", medium or snapshot,
             ds["mean_field"].values, float(ds["b_rms"]), float(ds["db_over_b0"]))
    with atomic_output(output) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    return ds
