"""Diffusion coefficients from particle batches: running D(t), plateaus, phase–phase matrices.

The `transport` stage of cosmicflow (paper §2.4–2.5, Eqs. 6–15). Input: the particle batches of
one (medium, energy, injection) in the layout of ``docs/data-contracts.md`` ("Particle batch");
output: one NetCDF file ("Transport result") and a row of ``results/transport_summary.csv``.

Conventions
-----------
* Positions are in pc, times in s; spatial diffusion coefficients are reported in
  cm^2 s^-1 (``D[cm^2/s] = D[pc^2/s] * PC_CM**2``; 1 pc c = 9.2508e28 cm^2 s^-1).
* Parallel means along the mean-field direction B̂0 = <B>/|<B>| stored in the batch attribute
  ``mean_field_direction`` (Eqs. 6–7); perpendicular is the 2-D complement.
* D_μμ is reported as D_μμ/Ω with Ω = ``omega_ref_rad_s`` of the batch (Ω = c / r_L(B_ref)).
* The result's time axis is the batches' output times with t > 0 (every D is undefined at 0).

Plateau rule (documented once, used for D∥, D⊥, the matrices and D_eff)
-----------------------------------------------------------------------
The late window is the set of output times with ``t >= t_end * 10**(-plateau_window_dex)``
(the last ``plateau_window_dex`` decades of the run). Its late exponent γ is the
least-squares slope of ln⟨Δr²⟩ against ln t over that window (of the component's own MSD,
⟨Δr∥²⟩ for D∥, ⟨|Δr⊥|²⟩ for D⊥). Since D(t) ∝ ⟨Δr²⟩/t, the drift of the running coefficient
across the window is the slope s = d ln D / d ln t = γ − 1. Its interval [γ_lo, γ_hi] is the
percentile bootstrap over particles (``plateau_test_percent``, default 95 %: a true plateau
is refused in about 5 % of runs) of the same fit, each resample refitting the whole window so
the correlation of D(t) between output times is kept. The regime is

* ``ballistic``       if γ >= ``ballistic_exponent`` (default 1.8; free streaming is γ = 2),
* ``superdiffusive``  if γ_lo > 1 (D(t) still rising: the drift is significant),
* ``subdiffusive``    if γ_hi < 1 (D(t) still falling),
* ``diffusive``       if γ_lo <= 1 <= γ_hi *and* the whole interval lies within
  ``diffusive_tolerance`` of 1 (the data exclude a drift larger than the tolerance),
* ``undetermined``    if the interval contains 1 but is wider than the tolerance (too few
  particles to tell a plateau from a drift).

Only ``diffusive`` gives a plateau (the reasoning is in docs/physics.md, "Plateau rule"): the
value is the window mean of D(t) (equal weight per output time, i.e. per ln t for log-spaced
outputs) and its interval the percentile bootstrap over particles. Any other regime gives
``NaN`` and ``plateau = False``; no value is invented and no running value is substituted
anywhere downstream. The pointwise γ(t) (central differences in ln t) and a pointwise regime
are kept as running curves.

Error sources beyond the particles
----------------------------------
* Window choice: the plateau mean is recomputed over windows of ``plateau_window_dex × f``
  for f in ``window_spread_factors``; half the range of those means is ``window_spread``.
* Realisations: each batch carries the attr ``realisation`` (0-based; absent = 0), another
  snapshot of a time series or another synthetic seed. Each realisation gets its own plateau
  value (window mean over its particles, bootstrap stderr). With k >= 2 realisations the
  combined value is the unweighted mean of the k values and its interval the Student-t
  interval over them, mean ± t_{k−1} s/√k (s the sample standard deviation of the k values),
  which covers at the nominal rate when the realisation values scatter normally whatever
  the split of that scatter into particle noise and realisation-to-realisation variance
  (``between_realisation_std`` reports the latter, √max(0, s² − mean stderr²)). With one
  realisation the combined interval is the particle bootstrap interval.
* The combined interval (``D_*_combined_interval``) adds the window spread in quadrature to
  each side; the summary's ``D_*_lo/hi`` are that interval.

D_μμ headline
-------------
The mean of D_μμ(t)/Ω = ⟨(μ(t) − μ0)²⟩ / (2 t Ω) over the early window
``dmumu_window_gyroperiods`` (default 1 to 10 gyro-periods 2π/Ω: after the first gyration,
whose phase-dependent wiggle of μ in a turbulent field is not scattering, and before
⟨Δμ²⟩ saturates at its bounded maximum). Its exponent (slope of ln⟨Δμ²⟩ vs ln t over the
window) and regime are stored so a non-linear window is visible; the value is reported
either way, with the regime beside it.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from cosmicflow import mechanisms
from cosmicflow.constants import PC_CM
from cosmicflow.io import InputError, atomic_output, load_netcdf, provenance_attrs
from cosmicflow.regime import RegimeThresholds

log = logging.getLogger(__name__)

__all__ = [
    "REGIMES",
    "TransportParams",
    "WindowEstimate",
    "load_batches",
    "mean_field_direction",
    "project_displacement",
    "running_coefficients",
    "running_dmumu",
    "local_exponent",
    "window_exponent",
    "classify_exponent",
    "late_window",
    "window_estimate",
    "bootstrap_means",
    "phase_matrices",
    "sum_rule_deviation",
    "phase_fractions",
    "effective_phase_coefficients",
    "dmumu_vs_mu0",
    "analyse_transport",
    "write_transport",
    "summary_row",
    "write_summary",
    "kolmogorov_slab_spectrum",
    "qlt_slab_dmumu_over_omega",
    "qlt_slab_d_par",
]

#: pc^2 -> cm^2, the conversion of every spatial diffusion coefficient
PC2_CM2 = PC_CM**2
#: regime names; their index is the integer code stored in the running regime variables
REGIMES = ("ballistic", "superdiffusive", "diffusive", "subdiffusive")
#: injection μ0 values closer than this are one group in mono runs (float noise in the batches)
MU0_GROUP_ATOL = 1e-6

_BATCH_VARIABLES = {
    "displacement": ("particle", "time", "component"),
    "phase_displacement": ("particle", "time", "phase", "component"),
    "phase_time": ("particle", "time", "phase"),
    "mu": ("particle", "time"),
    "mu0_injected": ("particle",),
}
_BATCH_UNITS = {"time": "s", "displacement": "pc", "phase_displacement": "pc", "phase_time": "s"}
#: batch attributes that must agree between the batches merged into one result
_SHARED_ATTRS = ("medium", "energy_PeV", "injection", "omega_ref_rad_s", "mean_field_direction")


@dataclass(frozen=True)
class TransportParams:
    """Parameters of the transport analysis (config section ``transport``; see the schema).

    Attributes
    ----------
    plateau_window_dex : float
        The late window is the last ``plateau_window_dex`` decades of output time.
    diffusive_tolerance : float
        |γ − 1| at or below this is diffusive.
    ballistic_exponent : float
        γ at or above this is ballistic.
    dmumu_window_gyroperiods : (float, float)
        Early window for the D_μμ headline value [gyro-periods 2π/Ω].
    bootstrap_samples : int
        Resamples of the particles for the intervals.
    interval_percent : float
        Central coverage of the bootstrap interval [%] (68.27 = ±1σ).
    bootstrap_seed : int
        Seed of the bootstrap (results are reproducible).
    sum_rule_rtol : float
        Largest accepted relative deviation of Σ_αβ D_αβ from D (Eq. 15) before a warning and
        ``sum_rule_ok = 0``.
    plateau_test_percent : float
        Coverage [%] of the bootstrap interval of the late exponent γ that must contain 1
        (and lie within ``diffusive_tolerance``) for a plateau.
    window_spread_factors : tuple of float
        Late-window widths, in units of ``plateau_window_dex``, whose plateau means give the
        window-choice spread.
    regime : RegimeThresholds
        Thresholds of the regime diagnostics (:mod:`cosmicflow.regime`).
    """

    plateau_window_dex: float = 0.5
    diffusive_tolerance: float = 0.2
    ballistic_exponent: float = 1.8
    dmumu_window_gyroperiods: tuple[float, float] = (1.0, 10.0)
    bootstrap_samples: int = 1000
    interval_percent: float = 68.27
    bootstrap_seed: int = 0
    sum_rule_rtol: float = 1e-8
    plateau_test_percent: float = 95.0
    window_spread_factors: tuple[float, ...] = (0.5, 1.0, 1.5)
    regime: RegimeThresholds = field(default_factory=RegimeThresholds)

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.dmumu_window_gyroperiods)
        object.__setattr__(self, "dmumu_window_gyroperiods", (lo, hi))
        object.__setattr__(self, "window_spread_factors",
                           tuple(float(f) for f in self.window_spread_factors))
        if not isinstance(self.regime, RegimeThresholds):
            object.__setattr__(self, "regime", RegimeThresholds.from_config(self.regime))
        checks = [
            (self.plateau_window_dex > 0, "plateau_window_dex must be > 0"),
            (0 < self.diffusive_tolerance < 1, "diffusive_tolerance must be in (0, 1)"),
            (
                1 + self.diffusive_tolerance < self.ballistic_exponent <= 2.5,
                "ballistic_exponent must be above 1 + diffusive_tolerance and at most 2.5",
            ),
            (0 <= lo < hi, "dmumu_window_gyroperiods must be [lo, hi] with 0 <= lo < hi"),
            (self.bootstrap_samples >= 10, "bootstrap_samples must be >= 10"),
            (0 < self.interval_percent < 100, "interval_percent must be in (0, 100)"),
            (self.sum_rule_rtol > 0, "sum_rule_rtol must be > 0"),
            (0 < self.plateau_test_percent < 100, "plateau_test_percent must be in (0, 100)"),
            (
                len(self.window_spread_factors) >= 1 and all(f > 0 for f in self.window_spread_factors),
                "window_spread_factors must be a non-empty list of numbers > 0",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"transport parameters: {message}; got {self}")

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> TransportParams:
        """Build from the (schema-validated) ``transport`` config section; unknown keys raise."""
        section = dict(section or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"transport config: unknown key(s) {unknown}; known: {sorted(known)}")
        if "dmumu_window_gyroperiods" in section:
            section["dmumu_window_gyroperiods"] = tuple(section["dmumu_window_gyroperiods"])
        if "window_spread_factors" in section:
            section["window_spread_factors"] = tuple(section["window_spread_factors"])
        if "regime" in section:
            section["regime"] = RegimeThresholds.from_config(section["regime"])
        return cls(**section)

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["regime"] = self.regime.as_dict()
        return out


@dataclass(frozen=True)
class WindowEstimate:
    """A window-averaged estimate over particles with its bootstrap interval.

    ``value`` is the mean over particles; ``lower``/``upper`` the percentile bootstrap interval;
    ``stderr`` the standard error std/√N of the per-particle window means.
    """

    value: float
    lower: float
    upper: float
    stderr: float

    @classmethod
    def nan(cls) -> WindowEstimate:
        return cls(math.nan, math.nan, math.nan, math.nan)


# --------------------------------------------------------------------------------------------
# Reading and merging batches


def _check_batch(ds: xr.Dataset, path: str) -> None:
    for name, dims in _BATCH_VARIABLES.items():
        if name not in ds.variables:
            raise InputError(f"{path}: particle batch lacks variable {name!r} (docs/data-contracts.md)")
        if tuple(ds[name].dims) != dims:
            raise InputError(f"{path}: {name!r} has dims {ds[name].dims}, expected {dims}")
    for name, units in _BATCH_UNITS.items():
        got = ds[name].attrs.get("units")
        if got != units:
            raise InputError(f"{path}: {name!r} has units {got!r}, expected {units!r}")
    for name in _SHARED_ATTRS:
        if name not in ds.attrs:
            raise InputError(f"{path}: particle batch lacks global attribute {name!r}")
    t = ds["time"].values
    if t.size < 3 or t[0] != 0 or np.any(np.diff(t) <= 0):
        raise InputError(
            f"{path}: time must start at 0 and increase strictly, with >= 3 outputs; got {t[:5]}..."
        )
    if list(ds["component"].values) != ["x", "y", "z"]:
        raise InputError(f"{path}: component coordinate must be ['x', 'y', 'z']")
    for name in ("displacement", "phase_displacement", "phase_time", "mu"):
        if not np.all(np.isfinite(ds[name].values)):
            raise InputError(f"{path}: {name!r} has non-finite values")
    if not float(ds.attrs["omega_ref_rad_s"]) > 0:
        raise InputError(f"{path}: omega_ref_rad_s must be > 0, got {ds.attrs['omega_ref_rad_s']}")


#: relative tolerance for output times and numeric attributes of merged batches: realisations
#: (other snapshots or seeds) have B_ref = |<B>| equal only to round-off (~1e-11 relative for
#: a synthetic medium's float32 field), which shifts Omega and the output times in seconds
_MERGE_RTOL = 1e-9


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    a, b = np.asarray(a, float), np.asarray(b, float)
    # vectors (the output times) compare against their largest component
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    return bool(np.allclose(a, b, rtol=_MERGE_RTOL, atol=_MERGE_RTOL * scale))


def load_batches(paths: Sequence[str | os.PathLike]) -> xr.Dataset:
    """Read particle batches of one (medium, energy, injection) and merge them along ``particle``.

    Each file is checked against the particle-batch contract (variables, dims, units, finite
    values, attributes); batches must share the output times and the attributes
    ``medium, energy_PeV, injection, omega_ref_rad_s, mean_field_direction``. Only the variables
    the transport analysis needs are loaded. The merged dataset gets ``n_batches`` and
    ``batch_files`` attributes; ``particle`` is renumbered 0..N-1.

    Raises
    ------
    InputError
        Naming the offending file and the problem.
    """
    if not paths:
        raise ValueError("load_batches: no batch files given")
    parts = []
    scatter_hists = []  # per-batch ε histograms at scattering events (cosmicflow.mechanisms)
    first: xr.Dataset | None = None
    first_path = ""
    eps_hist: tuple[np.ndarray, np.ndarray] | None = None
    sources: dict[int, str] = {}
    for p in paths:
        p = str(p)
        try:
            raw = load_netcdf(p)  # ~10x faster than opening with h5netcdf; batches are small
        except (OSError, ValueError) as err:
            raise InputError(f"{p}: cannot open as a particle batch ({err})") from err
        with raw:
            _check_batch(raw, p)
            ds = raw[list(_BATCH_VARIABLES) + mechanisms.class_batch_variables(raw, p)].load()
            ds.attrs = dict(raw.attrs)
            hist = _epsilon_histogram(raw, p)
            scatter_hists.append(raw[[v for v in ("hist_epsilon_scatter", "eps_edges") if v in raw.variables]].load())
        real = _realisation_of(ds.attrs, p)
        ds["realisation"] = ("particle", np.full(ds.sizes["particle"], real, dtype=np.int64))
        sources.setdefault(real, str(ds.attrs.get("realisation_source", f"batch file {os.path.basename(p)}")))
        if hist is not None and eps_hist is not None:
            if not np.array_equal(hist[1], eps_hist[1]):
                raise InputError(f"{p}: eps_edges differ from those of {first_path or p}")
            eps_hist = (eps_hist[0] + hist[0], eps_hist[1])
        elif first is None:
            eps_hist = hist
        else:
            eps_hist = None  # some batch lacks it: the fraction with eps > 1 is unknown
        if first is None:
            first, first_path = ds, p
        else:
            if ds.sizes["time"] != first.sizes["time"] or not _same(
                ds["time"].values, first["time"].values
            ):
                raise InputError(
                    f"{p}: output times differ from those of {first_path} (beyond {_MERGE_RTOL:g} "
                    "relative; realisations with different |<B>| need a common particles.b_ref_uG)"
                )
            if list(ds["phase"].values) != list(first["phase"].values):
                raise InputError(f"{p}: phase names differ from those of {first_path}")
            for name in _SHARED_ATTRS:
                if name == "mean_field_direction":
                    _check_direction(ds.attrs[name], first.attrs[name], p, first_path,
                                     across=real != _realisation_of(first.attrs, first_path))
                    continue
                if not _same(ds.attrs[name], first.attrs[name]):
                    raise InputError(
                        f"{p}: attribute {name}={ds.attrs[name]!r} differs from "
                        f"{first.attrs[name]!r} in {first_path}; only batches of one "
                        "(medium, energy, injection) can be merged"
                    )
            # equal within _MERGE_RTOL: one time axis, so concat does not outer-join times
            ds = ds.assign_coords(time=first["time"].values)
        parts.append(ds.drop_vars("particle", errors="ignore"))
    merged = xr.concat(parts, dim="particle", combine_attrs="override", data_vars="all")
    merged = merged.assign_coords(particle=np.arange(merged.sizes["particle"]))
    merged.attrs = {k: v for k, v in first.attrs.items() if k not in ("realisation", "realisation_source")}
    merged.attrs["n_batches"] = len(parts)
    merged.attrs["batch_files"] = [os.path.basename(str(p)) for p in paths]
    reals = sorted(sources)
    if len(reals) > 1:  # each realisation has its own <B>: project on their mean direction
        dirs = np.array([np.asarray(d.attrs["mean_field_direction"], dtype=np.float64).reshape(3)
                         for d in parts])
        mean_dir = dirs.mean(axis=0)
        mean_dir /= np.linalg.norm(mean_dir)
        merged.attrs["mean_field_direction"] = mean_dir
        merged.attrs["mean_field_direction_spread_rad"] = float(
            np.arccos(np.clip(dirs @ mean_dir, -1.0, 1.0)).max())
    merged.attrs["realisations"] = reals
    merged.attrs["realisation_sources"] = [sources[r] for r in reals]
    if eps_hist is not None:
        merged["hist_epsilon"] = (("phase", "eps_bin"), eps_hist[0], {"units": "count"})
        merged["eps_edges"] = ("eps_edge", eps_hist[1], {"units": "1"})
    if "class_displacement" in merged.variables:
        mechanisms.check_class_sum(merged)
    return mechanisms.merge_scatter_histograms(merged, scatter_hists)


#: largest angle [rad] between the mean-field directions of two realisations of one medium that
#: may be merged: each snapshot's <B> differs at round-off (AthenaK conserves the flux), and a
#: tilt of 1e-6 rad moves ~1e-12 of D_par into D_perp (sin^2), far below any interval.
REALISATION_DIRECTION_TOLERANCE_RAD = 1.0e-6
#: the same within one realisation (one snapshot or seed): its batches share one <B>, so only
#: the file round-trip may differ
SAME_REALISATION_DIRECTION_TOLERANCE_RAD = _MERGE_RTOL


def _check_direction(b: Any, b_first: Any, path: str, first_path: str, *, across: bool) -> None:
    """One angle test for the ``mean_field_direction`` of two batches: within
    :data:`REALISATION_DIRECTION_TOLERANCE_RAD` for batches of different realisations (each
    carries its own <B>), :data:`SAME_REALISATION_DIRECTION_TOLERANCE_RAD` within one."""
    u = np.asarray(b, dtype=np.float64).reshape(-1)
    v = np.asarray(b_first, dtype=np.float64).reshape(-1)
    if u.size != 3 or v.size != 3 or not (np.linalg.norm(u) > 0 and np.linalg.norm(v) > 0):
        raise InputError(f"{path}: mean_field_direction must be a non-zero 3-vector, got {u.tolist()}")
    # atan2 of |u x v| and u.v: accurate for tiny angles, where arccos of a dot loses them
    angle = float(np.arctan2(np.linalg.norm(np.cross(u, v)), u @ v))
    tol = REALISATION_DIRECTION_TOLERANCE_RAD if across else SAME_REALISATION_DIRECTION_TOLERANCE_RAD
    if angle > tol:
        which = ("realisations of one medium must share the mean-field direction" if across else
                 "only batches of one (medium, energy, injection) and realisation can be merged")
        raise InputError(
            f"{path}: attribute mean_field_direction differs from that of {first_path} by {angle:.3g} rad "
            f"(> {tol:g} rad); {which}")


def _realisation_of(attrs: Mapping[str, Any], path: str) -> int:
    """The batch's ``realisation`` attribute (HELPERS contract: int >= 0; absent = 0)."""
    r = attrs.get("realisation", 0)
    try:
        ri = int(np.asarray(r).item())
    except (TypeError, ValueError) as err:
        raise InputError(f"{path}: attribute realisation={r!r} is not an integer") from err
    if ri < 0 or ri != float(np.asarray(r).item()):
        raise InputError(f"{path}: attribute realisation={r!r} must be an integer >= 0")
    return ri


def _epsilon_histogram(raw: xr.Dataset, path: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(hist_epsilon (phase, eps_bin) [count], eps_edges) of a batch, or None when absent."""
    if "hist_epsilon" not in raw.variables or "eps_edges" not in raw.variables:
        return None
    h = np.asarray(raw["hist_epsilon"].values, dtype=np.int64)
    e = np.asarray(raw["eps_edges"].values, dtype=np.float64)
    if h.ndim != 2 or h.shape[1] != e.size - 1:
        raise InputError(f"{path}: hist_epsilon {h.shape} does not match eps_edges ({e.size} edges)")
    return h, e


def mean_field_direction(ds: xr.Dataset) -> np.ndarray:
    """Unit mean-field direction B̂0 = <B>/|<B>| from the batch attribute (renormalised)."""
    b = np.asarray(ds.attrs.get("mean_field_direction", ()), dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(b)) if b.size == 3 else 0.0
    if b.size != 3 or not np.isfinite(norm) or norm == 0:
        raise InputError(
            f"mean_field_direction attribute must be a non-zero 3-vector, got {b.tolist()} "
            "(a medium with <B> = 0 has no parallel direction)"
        )
    return b / norm


def project_displacement(
    displacement: xr.DataArray, b0hat: np.ndarray
) -> tuple[xr.DataArray, xr.DataArray]:
    r"""Split displacements into the parallel component and the perpendicular vector (Eqs. 6–7).

    .. math:: \Delta r_\parallel = \Delta\mathbf r\cdot\hat B_0, \qquad
              \Delta\mathbf r_\perp = \Delta\mathbf r - \Delta r_\parallel \hat B_0

    Parameters
    ----------
    displacement : DataArray with a ``component`` dim (x, y, z) [pc]
    b0hat : (3,) unit vector

    Returns
    -------
    (dr_par, dr_perp) : DataArrays [pc]; ``dr_perp`` keeps the ``component`` dim. The
        perpendicular vector is formed explicitly rather than as |Δr|² − Δr∥², which could
        round to a small negative number.
    """
    b = xr.DataArray(np.asarray(b0hat, dtype=np.float64), dims="component")
    dr_par = (displacement * b).sum("component")
    dr_perp = displacement - dr_par * b
    return dr_par, dr_perp


# --------------------------------------------------------------------------------------------
# Running coefficients


def _positive_times(ds: xr.Dataset) -> xr.Dataset:
    return ds.isel(time=np.flatnonzero(ds["time"].values > 0))


def _per_particle_sq(ds: xr.Dataset, b0hat: np.ndarray) -> tuple[xr.DataArray, xr.DataArray]:
    dr_par, dr_perp = project_displacement(ds["displacement"], b0hat)
    return dr_par**2, (dr_perp**2).sum("component")


def running_coefficients(ds: xr.Dataset) -> xr.Dataset:
    r"""Running spatial diffusion coefficients at every output time t > 0 (Eqs. 8–9).

    .. math:: D_\parallel(t) = \frac{\langle \Delta r_\parallel^2\rangle}{2t}, \qquad
              D_\perp(t) = \frac{\langle |\Delta\mathbf r_\perp|^2\rangle}{4t}

    where ⟨⟩ is the mean over particles, Δr the displacement [pc] from unwrapped positions and
    ∥ the mean-field direction. Returns ``D_par, D_perp`` [cm^2 s^-1], ``msd_par, msd_perp,
    msd`` [pc^2] and the local exponents ``msd_exponent_par, msd_exponent_perp, msd_exponent``
    (:func:`local_exponent`), on the t > 0 output times.
    """
    ds = _positive_times(ds)
    t = ds["time"]
    sq_par, sq_perp = _per_particle_sq(ds, mean_field_direction(ds))
    msd_par = sq_par.mean("particle")
    msd_perp = sq_perp.mean("particle")
    msd = msd_par + msd_perp
    out = xr.Dataset(
        {
            "D_par": (msd_par / (2 * t) * PC2_CM2),
            "D_perp": (msd_perp / (4 * t) * PC2_CM2),
            "msd_par": msd_par,
            "msd_perp": msd_perp,
            "msd": msd,
            "msd_exponent_par": local_exponent(msd_par),
            "msd_exponent_perp": local_exponent(msd_perp),
            "msd_exponent": local_exponent(msd),
        }
    )
    meta = {
        "D_par": ("cm^2 s^-1", "running parallel diffusion coefficient <dr_par^2>/(2t) (Eq. 8)"),
        "D_perp": ("cm^2 s^-1", "running perpendicular diffusion coefficient <|dr_perp|^2>/(4t) (Eq. 9)"),
        "msd_par": ("pc^2", "mean squared parallel displacement <dr_par^2>"),
        "msd_perp": ("pc^2", "mean squared perpendicular displacement <|dr_perp|^2>"),
        "msd": ("pc^2", "mean squared displacement <|dr|^2>"),
        "msd_exponent_par": ("1", "local exponent d ln<dr_par^2> / d ln t"),
        "msd_exponent_perp": ("1", "local exponent d ln<|dr_perp|^2> / d ln t"),
        "msd_exponent": ("1", "local exponent gamma = d ln<|dr|^2> / d ln t"),
    }
    for name, (units, long_name) in meta.items():
        out[name].attrs = {"units": units, "long_name": long_name}
    return out


def running_dmumu(ds: xr.Dataset) -> xr.Dataset:
    r"""Running pitch-angle diffusion coefficient over Ω at every output time t > 0 (Eq. 10).

    .. math:: \frac{D_{\mu\mu}(t)}{\Omega} = \frac{\langle(\mu(t)-\mu_0)^2\rangle}{2\,t\,\Omega}

    where μ is the pitch-angle cosine w.r.t. the local field, μ0 = μ(0) and Ω the reference
    gyro-frequency ``omega_ref_rad_s`` [rad s^-1]. Returns ``D_mumu_over_omega`` [1] and
    ``mean_sq_dmu`` = ⟨(μ − μ0)²⟩ [1].
    """
    omega = float(ds.attrs["omega_ref_rad_s"])
    dmu2 = ((ds["mu"] - ds["mu"].isel(time=0)) ** 2).mean("particle")
    dmu2 = dmu2.isel(time=np.flatnonzero(dmu2["time"].values > 0))
    out = xr.Dataset(
        {"D_mumu_over_omega": dmu2 / (2 * dmu2["time"] * omega), "mean_sq_dmu": dmu2}
    )
    out["D_mumu_over_omega"].attrs = {
        "units": "1",
        "long_name": "running pitch-angle diffusion coefficient <(mu-mu0)^2>/(2 t Omega) (Eq. 10)",
    }
    out["mean_sq_dmu"].attrs = {"units": "1", "long_name": "<(mu - mu0)^2>"}
    return out


def local_exponent(msd: xr.DataArray) -> xr.DataArray:
    r"""Local exponent γ(t) = d ln⟨Δr²⟩ / d ln t by second-order differences in ln t.

    γ = 2 for free streaming, 1 for diffusion. Times must be > 0; a non-positive MSD gives NaN.
    """
    t = msd["time"].values
    if np.any(t <= 0):
        raise ValueError("local_exponent needs times > 0 (drop t = 0 first)")
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_m = np.log(np.where(msd.values > 0, msd.values, np.nan))
    if t.size < 2:
        g = np.full_like(ln_m, np.nan)
    else:
        g = np.gradient(ln_m, np.log(t), axis=msd.get_axis_num("time"))
    return xr.DataArray(g, coords=msd.coords, dims=msd.dims, attrs={"units": "1"})


def window_exponent(time: np.ndarray, msd: np.ndarray, mask: np.ndarray) -> float:
    """Least-squares slope of ln(msd) against ln(t) over ``mask`` (NaN if < 2 usable points)."""
    t = np.asarray(time, float)[mask]
    m = np.asarray(msd, float)[mask]
    ok = (t > 0) & (m > 0) & np.isfinite(m)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(t[ok]), np.log(m[ok]), 1)[0])


def classify_exponent(gamma: float | np.ndarray, params: TransportParams) -> np.ndarray:
    """Regime code (index into :data:`REGIMES`) of exponent(s) γ; −1 where γ is NaN.

    ballistic: γ >= ballistic_exponent; superdiffusive: 1 + tol < γ < ballistic_exponent;
    diffusive: |γ − 1| <= tol; subdiffusive: γ < 1 − tol.
    """
    g = np.asarray(gamma, dtype=np.float64)
    tol = params.diffusive_tolerance
    code = np.full(g.shape, -1, dtype=np.int8)
    code[g >= params.ballistic_exponent] = REGIMES.index("ballistic")
    code[(g > 1 + tol) & (g < params.ballistic_exponent)] = REGIMES.index("superdiffusive")
    code[np.abs(g - 1) <= tol] = REGIMES.index("diffusive")
    code[g < 1 - tol] = REGIMES.index("subdiffusive")
    return code


def _regime_name(code: int) -> str:
    return REGIMES[int(code)] if code >= 0 else "undetermined"


def late_window(time: np.ndarray, params: TransportParams) -> np.ndarray:
    """Mask of the late window: t >= t_end · 10^(−plateau_window_dex), t > 0."""
    t = np.asarray(time, float)
    return (t > 0) & (t >= t[-1] * 10.0 ** (-params.plateau_window_dex))


def _dmumu_window(time: np.ndarray, omega: float, params: TransportParams) -> np.ndarray:
    lo, hi = params.dmumu_window_gyroperiods
    gyro = np.asarray(time, float) * omega / (2 * math.pi)
    return (gyro > 0) & (gyro >= lo) & (gyro <= hi)


#: resampled elements held in memory at once by the bootstrap (bounds memory for large N)
_BOOTSTRAP_CHUNK_ELEMENTS = 1 << 22


def bootstrap_means(per_particle: np.ndarray, params: TransportParams) -> np.ndarray:
    """Means of ``bootstrap_samples`` resamples (with replacement) of the rows of an array.

    ``per_particle`` has the particle on axis 0; returns (samples, ...) means. The resamples
    depend only on ``bootstrap_seed`` and the number of particles, so every quantity of one
    result is resampled with the same particle draws (ratios and sums stay consistent).
    Indices are drawn in chunks so memory stays bounded for any number of particles.
    """
    a = np.asarray(per_particle, dtype=np.float64)
    n = a.shape[0]
    rng = np.random.default_rng(params.bootstrap_seed)
    out = np.empty((params.bootstrap_samples,) + a.shape[1:])
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // max(1, n * int(np.prod(a.shape[1:], dtype=np.int64))))
    for start in range(0, params.bootstrap_samples, chunk):
        stop = min(params.bootstrap_samples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = a[idx].mean(axis=1)
    return out


def _interval(samples: np.ndarray, params: TransportParams) -> tuple[float, float]:
    half = (100.0 - params.interval_percent) / 2
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(finite, [half, 100.0 - half])
    return float(lo), float(hi)


def window_estimate(
    per_particle: np.ndarray,
    mask: np.ndarray,
    params: TransportParams,
) -> WindowEstimate:
    """Mean over particles and window times of a per-particle quantity, with bootstrap interval.

    Parameters
    ----------
    per_particle : (particle, time) array, e.g. Δr∥²/(2t) [any units]
    mask : (time,) bool, the window
    params : TransportParams (bootstrap samples, coverage, seed)

    The window mean is taken per particle first (q_i), so the estimate is mean_i q_i and the
    bootstrap resamples the q_i; ``stderr`` = std(q_i)/√N.
    """
    a = np.asarray(per_particle, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != np.asarray(mask).size:
        raise ValueError(f"window_estimate: shape {a.shape} does not match mask {np.shape(mask)}")
    if not np.any(mask) or a.shape[0] == 0:
        return WindowEstimate.nan()
    q = a[:, mask].mean(axis=1)
    n = q.size
    lo, hi = _interval(bootstrap_means(q, params), params)
    stderr = float(q.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return WindowEstimate(float(q.mean()), lo, hi, stderr)


@dataclass(frozen=True)
class SlopeTest:
    """The plateau test of one component (module docstring, "Plateau rule").

    ``gamma`` is the late MSD exponent, ``lower``/``upper`` its bootstrap interval at
    ``plateau_test_percent``; the drift d ln D / d ln t is γ − 1. ``regime`` is the name from
    :data:`REGIMES` or ``"undetermined"``; ``accepted`` is True for ``"diffusive"`` only.
    """

    gamma: float
    lower: float
    upper: float
    regime: str
    accepted: bool


def _slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slopes of the rows of y (..., n) against x (n,)."""
    xc = x - x.mean()
    return ((y - y.mean(axis=-1, keepdims=True)) * xc).sum(axis=-1) / (xc * xc).sum()


def late_slope_test(sq: np.ndarray, time: np.ndarray, mask: np.ndarray,
                    params: TransportParams) -> SlopeTest:
    """Is the late window a plateau? Fit and bootstrap of γ = d ln⟨Δr²⟩ / d ln t over ``mask``.

    ``sq`` (particle, time) are the per-particle squared displacements of one component
    [any units]; the rule is in the module docstring. Each bootstrap resample (the same
    particle draws as every other interval, :func:`bootstrap_means`) refits the whole window.
    """
    t = np.asarray(time, float)[mask]
    a = np.asarray(sq, float)[:, mask]
    nan = SlopeTest(math.nan, math.nan, math.nan, "undetermined", False)
    if t.size < 3:
        return nan
    msd = a.mean(axis=0)
    if np.any(msd <= 0) or not np.all(np.isfinite(msd)):
        return nan
    x = np.log(t)
    gamma = float(_slopes(x, np.log(msd)))
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = _slopes(x, np.log(bootstrap_means(a, params)))
    half = (100.0 - params.plateau_test_percent) / 2
    finite = boot[np.isfinite(boot)]
    if finite.size == 0:
        return SlopeTest(gamma, math.nan, math.nan, "undetermined", False)
    lo, hi = (float(v) for v in np.percentile(finite, [half, 100.0 - half]))
    tol = params.diffusive_tolerance
    if gamma >= params.ballistic_exponent:
        regime = "ballistic"
    elif lo > 1.0:
        regime = "superdiffusive"
    elif hi < 1.0:
        regime = "subdiffusive"
    elif hi - 1.0 <= tol and 1.0 - lo <= tol:
        regime = "diffusive"
    else:
        regime = "undetermined"
    return SlopeTest(gamma, lo, hi, regime, regime == "diffusive")


def window_spread(per_particle: np.ndarray, time: np.ndarray, params: TransportParams
                  ) -> tuple[float, np.ndarray]:
    """Half the range of the plateau means over the windows ``plateau_window_dex × f``.

    ``per_particle`` (particle, time) is e.g. Δr∥²/(2t). Returns (spread, means per factor);
    windows with no output time give NaN and are left out of the range.
    """
    t = np.asarray(time, float)
    mean = np.asarray(per_particle, float).mean(axis=0)
    values = []
    for f in params.window_spread_factors:
        m = (t > 0) & (t >= t[-1] * 10.0 ** (-params.plateau_window_dex * f))
        values.append(float(mean[m].mean()) if m.any() else math.nan)
    values = np.asarray(values)
    finite = values[np.isfinite(values)]
    return (0.5 * float(finite.max() - finite.min()) if finite.size else math.nan), values


@dataclass(frozen=True)
class RealisationEstimate:
    """Per-realisation plateau values and their combination (module docstring).

    ``labels`` the realisation numbers, ``values``/``stderr`` per realisation; ``combined`` the
    unweighted mean of ``values`` with Student-t interval ``lower``/``upper`` (k >= 2) or the
    particle estimate (k = 1); ``scatter`` the sample std of ``values``; ``between_std`` the
    part of it beyond particle noise, √max(0, scatter² − mean stderr²).
    """

    labels: np.ndarray
    values: np.ndarray
    stderr: np.ndarray
    combined: float
    lower: float
    upper: float
    scatter: float
    between_std: float


def combine_realisations(values: np.ndarray, stderr: np.ndarray, params: TransportParams
                         ) -> tuple[float, float, float, float, float]:
    r"""Combined value, t-interval, scatter and between-realisation std of k realisation values.

    .. math:: \bar y = \frac1k\sum_r y_r, \qquad
              \bar y \pm t_{k-1,\,(1+p)/2}\,\frac{s}{\sqrt k}, \qquad
              s^2 = \frac{1}{k-1}\sum_r (y_r - \bar y)^2

    with p = ``interval_percent``/100: exact coverage when the y_r are independent normal
    draws about the true value, whatever mix of particle noise and realisation variance makes
    their scatter. Needs k >= 2 (else NaN interval).
    """
    from scipy.stats import t as student_t

    y = np.asarray(values, float)
    se = np.asarray(stderr, float)
    k = y.size
    mean = float(y.mean()) if k else math.nan
    if k < 2:
        return mean, math.nan, math.nan, math.nan, math.nan
    s = float(y.std(ddof=1))
    q = float(student_t.ppf(0.5 + params.interval_percent / 200.0, k - 1))
    between = math.sqrt(max(0.0, s * s - float(np.mean(se * se))))
    return mean, mean - q * s / math.sqrt(k), mean + q * s / math.sqrt(k), s, between


def realisation_estimates(per_particle: np.ndarray, realisation: np.ndarray, mask: np.ndarray,
                          params: TransportParams, pooled: WindowEstimate | None = None
                          ) -> RealisationEstimate:
    """Window estimates per realisation and their combination (:func:`combine_realisations`).

    ``per_particle`` (particle, time), ``realisation`` (particle,) integer labels, ``mask`` the
    window. With a single realisation the combined value and interval are those of the
    particle bootstrap (:func:`window_estimate`); ``pooled``, that estimate over all particles
    if the caller has it, is then used instead of being bootstrapped again.
    """
    labels = np.unique(np.asarray(realisation))
    if labels.size == 1 and pooled is not None:
        ests = [pooled]
    else:
        ests = [window_estimate(per_particle[realisation == r], mask, params) for r in labels]
    values = np.array([e.value for e in ests])
    stderr = np.array([e.stderr for e in ests])
    if labels.size == 1:
        e = ests[0]
        return RealisationEstimate(labels, values, stderr, e.value, e.lower, e.upper, math.nan, math.nan)
    mean, lo, hi, s, between = combine_realisations(values, stderr, params)
    return RealisationEstimate(labels, values, stderr, mean, lo, hi, s, between)


def widen(value: float, lower: float, upper: float, spread: float) -> tuple[float, float]:
    """Add ``spread`` in quadrature to each side of the interval [lower, upper] about value."""
    s = spread if math.isfinite(spread) else 0.0
    return (value - math.hypot(value - lower, s), value + math.hypot(upper - value, s))


# --------------------------------------------------------------------------------------------
# Phase decomposition


def _phase_products(ds: xr.Dataset, b0hat: np.ndarray) -> tuple[xr.DataArray, xr.DataArray]:
    """Per-particle ⟨Δr_α∥ Δr_β∥⟩ and Δr_α⊥·Δr_β⊥ (particle, time, phase_a, phase_b) [pc^2]."""
    dr_par, dr_perp = project_displacement(ds["phase_displacement"], b0hat)
    pa = dr_par.rename(phase="phase_a")
    pb = dr_par.rename(phase="phase_b")
    va = dr_perp.rename(phase="phase_a")
    vb = dr_perp.rename(phase="phase_b")
    return pa * pb, (va * vb).sum("component")


def phase_matrices(ds: xr.Dataset) -> tuple[xr.DataArray, xr.DataArray]:
    r"""Phase–phase diffusion matrices at every output time t > 0 (Eqs. 13–14).

    .. math:: D^\parallel_{\alpha\beta}(t) = \frac{\langle \Delta r_{\alpha,\parallel}
              \Delta r_{\beta,\parallel}\rangle}{2t}, \qquad
              D^\perp_{\alpha\beta}(t) = \frac{\langle \Delta\mathbf r_{\alpha,\perp}\cdot
              \Delta\mathbf r_{\beta,\perp}\rangle}{4t}

    where Δr_α [pc] is the displacement accumulated while in phase α (``phase_displacement``).
    Returns ``(D_par_matrix, D_perp_matrix)`` with dims (time, phase_a, phase_b) [cm^2 s^-1].
    """
    ds = _positive_times(ds)
    t = ds["time"]
    ppar, pperp = _phase_products(ds, mean_field_direction(ds))
    dpar = (ppar.mean("particle") / (2 * t) * PC2_CM2).transpose("time", "phase_a", "phase_b")
    dperp = (pperp.mean("particle") / (4 * t) * PC2_CM2).transpose("time", "phase_a", "phase_b")
    dpar.attrs = {"units": "cm^2 s^-1", "long_name": "parallel phase-phase diffusion matrix (Eq. 13)"}
    dperp.attrs = {"units": "cm^2 s^-1", "long_name": "perpendicular phase-phase diffusion matrix (Eq. 14)"}
    return dpar, dperp


def sum_rule_deviation(matrix: xr.DataArray, total: xr.DataArray) -> xr.DataArray:
    r"""Relative deviation |Σ_αβ D_αβ(t) − D(t)| / |D(t)| of the sum rule (Eq. 15) per time.

    ``total`` must come from the total displacement (not from the matrix), so the check covers
    the integrator's per-phase accumulation (Σ_α Δr_α = Δr) as well as this module.
    """
    s = matrix.sum(("phase_a", "phase_b"))
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.abs(s - total) / np.abs(total)
    dev = dev.where(np.abs(total) > 0, np.where(np.abs(s - total) > 0, np.inf, 0.0))
    dev.attrs = {"units": "1", "long_name": "relative deviation of sum_ab D_ab from D (Eq. 15)"}
    return dev


def phase_fractions(ds: xr.Dataset) -> xr.DataArray:
    r"""Mean fraction of time spent in each phase up to t: f_α(t) = ⟨t_α(t)⟩ / t (t > 0), [1]."""
    ds = _positive_times(ds)
    f = ds["phase_time"].mean("particle") / ds["time"]
    f = f.transpose("time", "phase")
    f.attrs = {"units": "1", "long_name": "mean fraction of time spent in each phase"}
    return f


def effective_phase_coefficients(matrix: xr.DataArray, fraction: xr.DataArray) -> xr.DataArray:
    r"""Effective phase coefficients D_eff,α = D_αα / f_α [cm^2 s^-1] (paper Fig. 9).

    ``matrix`` has dims (..., phase_a, phase_b), ``fraction`` (..., phase). A phase never
    visited (f_α = 0) gets NaN, not infinity.
    """
    diag = xr.concat(
        [matrix.isel(phase_a=i, phase_b=i, drop=True) for i in range(matrix.sizes["phase_a"])],
        dim="phase",
    ).assign_coords(phase=matrix["phase_a"].values)
    out = diag / fraction.where(fraction > 0)
    out.attrs = {"units": "cm^2 s^-1", "long_name": "effective phase diffusion coefficient D_aa / f_a"}
    return out


# --------------------------------------------------------------------------------------------
# Mono-mu0 runs


def _mu0_groups(mu0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group labels of the injection μ0 values (values within MU0_GROUP_ATOL are one group)."""
    order = np.argsort(mu0, kind="stable")
    labels = np.empty(mu0.size, dtype=np.int64)
    centres: list[float] = []
    for i in order:
        if not centres or abs(mu0[i] - centres[-1]) > MU0_GROUP_ATOL:
            centres.append(float(mu0[i]))
        labels[i] = len(centres) - 1
    return np.asarray(centres), labels


def dmumu_vs_mu0(ds: xr.Dataset, params: TransportParams) -> xr.Dataset:
    r"""D_μμ/Ω as a function of the injection μ0 for mono-μ0 runs (paper Fig. 6).

    Particles are grouped by ``mu0_injected``; per group the running D_μμ(t)/Ω (Eq. 10) and
    the early-window headline value (module docstring) with its bootstrap interval.
    Returns a Dataset on dims (mu0, time) and (mu0, bound).
    """
    omega = float(ds.attrs["omega_ref_rad_s"])
    centres, labels = _mu0_groups(np.asarray(ds["mu0_injected"].values, float))
    mu = ds["mu"].values
    t = ds["time"].values
    pos = t > 0
    dmu2 = (mu - mu[:, :1]) ** 2
    mask = _dmumu_window(t[pos], omega, params)
    running = np.empty((centres.size, pos.sum()))
    value = np.empty(centres.size)
    interval = np.empty((centres.size, 2))
    stderr = np.empty(centres.size)
    count = np.empty(centres.size, dtype=np.int64)
    for g in range(centres.size):
        per = dmu2[labels == g][:, pos] / (2 * t[pos] * omega)
        running[g] = per.mean(axis=0)
        est = window_estimate(per, mask, params)
        value[g], interval[g], stderr[g] = est.value, (est.lower, est.upper), est.stderr
        count[g] = per.shape[0]
    return xr.Dataset(
        {
            "D_mumu_over_omega_running_mu0": (
                ("mu0", "time"), running,
                {"units": "1", "long_name": "running D_mumu/Omega per injection mu0"},
            ),
            "D_mumu_over_omega_mu0": (
                "mu0", value,
                {"units": "1", "long_name": "D_mumu/Omega per injection mu0, early window mean"},
            ),
            "D_mumu_over_omega_mu0_interval": (
                ("mu0", "bound"), interval,
                {"units": "1", "long_name": "bootstrap interval of D_mumu_over_omega_mu0"},
            ),
            "D_mumu_over_omega_mu0_stderr": ("mu0", stderr, {"units": "1"}),
            "particles_per_mu0": ("mu0", count, {"units": "1"}),
        },
        coords={
            "mu0": ("mu0", centres, {"units": "1", "long_name": "injection pitch-angle cosine"}),
            "time": ("time", t[pos], {"units": "s"}),
        },
    )


# --------------------------------------------------------------------------------------------
# The whole analysis


CM2_S = "cm^2 s^-1"


def _var(dims: Any, values: Any, units: str, long_name: str | None = None) -> xr.Variable:
    attrs = {"units": units} if long_name is None else {"units": units, "long_name": long_name}
    return xr.Variable(dims, np.asarray(values, dtype=np.float64), attrs)


#: which way the running value at t_end bounds the (unreached) plateau, by regime
LIMIT_KIND = {"ballistic": "lower", "superdiffusive": "lower", "subdiffusive": "upper",
              "undetermined": "none", "diffusive": "plateau"}


def _plateau_vars(
    prefix: str,
    per_particle: np.ndarray,
    sq: np.ndarray,
    time: np.ndarray,
    realisation: np.ndarray,
    params: TransportParams,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plateau value, intervals, window spread, realisations (variables) and regime (attrs).

    ``per_particle`` (particle, time) holds Δr∥²/(2t) or |Δr⊥|²/(4t) [cm^2 s^-1], ``sq`` the
    matching squared displacements [pc^2], ``realisation`` (particle,) the realisation labels;
    the rules are in the module docstring. Every value is NaN unless the plateau test passes.
    """
    mask = late_window(time, params)
    test = late_slope_test(sq, time, mask, params)
    reached = test.accepted
    nan = math.nan
    est = window_estimate(per_particle, mask, params) if reached else WindowEstimate.nan()
    spread, means = window_spread(per_particle, time, params)
    labels = np.unique(realisation)
    if reached:
        rest = realisation_estimates(per_particle, realisation, mask, params, pooled=est)
    else:
        rest = RealisationEstimate(labels, np.full(labels.size, nan), np.full(labels.size, nan),
                                   nan, nan, nan, nan, nan)
        spread = nan
    lo, hi = widen(rest.combined, rest.lower, rest.upper, spread) if reached else (nan, nan)
    variables = {
        f"{prefix}_plateau": _var((), est.value, CM2_S, f"plateau {prefix} (late diffusive window mean)"),
        f"{prefix}_plateau_interval": _var(
            "bound", [est.lower, est.upper], CM2_S, f"bootstrap interval (particles) of {prefix}_plateau"
        ),
        f"{prefix}_plateau_stderr": _var((), est.stderr, CM2_S, f"standard error of {prefix}_plateau"),
        f"{prefix}_late_exponent_interval": _var(
            "bound", [test.lower, test.upper], "1",
            f"bootstrap interval ({params.plateau_test_percent:g} %) of the late MSD exponent; "
            "the plateau test needs it to contain 1",
        ),
        f"{prefix}_window_means": _var(
            "window_factor", means if reached else np.full(means.size, nan), CM2_S,
            f"mean of running {prefix} over the late windows plateau_window_dex * window_factor",
        ),
        f"{prefix}_window_spread": _var((), spread, CM2_S, "half the range of the window means"),
        f"{prefix}_realisation_value": _var(
            "realisation", rest.values, CM2_S, f"plateau {prefix} of each realisation's particles"
        ),
        f"{prefix}_realisation_stderr": _var("realisation", rest.stderr, CM2_S),
        f"{prefix}_realisation_scatter": _var(
            (), rest.scatter, CM2_S, "sample std of the realisation values (NaN for one)"
        ),
        f"{prefix}_between_realisation_std": _var(
            (), rest.between_std, CM2_S, "realisation-to-realisation std beyond particle noise"
        ),
        f"{prefix}_combined": _var(
            (), rest.combined, CM2_S,
            f"{prefix}: realisation mean (one realisation: the plateau) — the headline value",
        ),
        f"{prefix}_combined_interval": _var(
            "bound", [lo, hi], CM2_S,
            "interval over particles or realisations, with the window spread in quadrature",
        ),
    }
    attrs = {
        f"{prefix}_regime": test.regime,
        f"{prefix}_late_exponent": test.gamma,
        f"{prefix}_plateau_reached": int(reached),
        f"{prefix}_limit_kind": LIMIT_KIND[test.regime],
    }
    return variables, attrs


def _effective_coefficient(diag: np.ndarray, f_end: np.ndarray, params: TransportParams
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """D_eff,α = ⟨q_αα⟩/⟨f_α⟩ per phase, its bootstrap interval (phase, bound) and stderr.

    ``diag`` (particle, phase) window means of the diagonal, ``f_end`` (particle, phase) the
    phase time fractions; both resampled with the same particles.
    """
    f_mean = f_end.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = diag.mean(axis=0) / np.where(f_mean > 0, f_mean, np.nan)
        f_boot = bootstrap_means(f_end, params)
        boot = bootstrap_means(diag, params) / np.where(f_boot > 0, f_boot, np.nan)
    bounds = np.array([_interval(boot[:, a], params) for a in range(eff.size)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN phases (never visited)
        stderr = np.nanstd(boot, axis=0, ddof=1)
    return eff, bounds, stderr


def _phase_plateau_vars(
    comp: str,
    products: xr.DataArray,
    f_end: np.ndarray,
    mask: np.ndarray,
    reached: bool,
    realisation: np.ndarray,
    params: TransportParams,
) -> dict[str, xr.Variable]:
    """Late-window matrix and D_eff,α = D_αα / f_α with intervals for one component.

    ``products`` are the per-particle Δr_α·Δr_β products (particle, time, phase_a, phase_b)
    [pc^2] of that component, ``f_end`` (particle, phase) the fractions of the whole run spent
    in each phase, ``realisation`` (particle,) the realisation labels. D_eff gets a particle
    bootstrap interval and, over realisations, a combined value and Student-t interval
    (:func:`combine_realisations`, as D∥ and D⊥). Everything is NaN unless the total
    coefficient reached a plateau.
    """
    denom = 2.0 if comp == "par" else 4.0
    per = products / (denom * products["time"]) * PC2_CM2
    per = per.transpose("particle", "time", "phase_a", "phase_b").values
    q = per[:, mask].mean(axis=1)  # (particle, phase_a, phase_b) window mean per particle
    diag = np.einsum("paa->pa", q)
    eff, bounds, _ = _effective_coefficient(diag, f_end, params)
    labels = np.unique(realisation)
    if labels.size > 1:
        per_real = [_effective_coefficient(diag[realisation == r], f_end[realisation == r], params)
                    for r in labels]
        real_eff = np.array([e for e, _, _ in per_real])
        real_se = np.array([se for _, _, se in per_real])
        comb = [combine_realisations(real_eff[:, a], real_se[:, a], params) for a in range(eff.size)]
        comb_eff = np.array([c[0] for c in comb])
        comb_bounds = np.array([[c[1], c[2]] for c in comb])
    else:  # one realisation: its value is the plateau over all particles
        real_eff = eff[None, :].copy()
        comb_eff, comb_bounds = eff.copy(), bounds.copy()
    mat = q.mean(axis=0)
    if not reached:
        mat, eff, bounds, real_eff, comb_eff, comb_bounds = (
            np.full_like(x, np.nan) for x in (mat, eff, bounds, real_eff, comb_eff, comb_bounds))
    return {
        f"D_{comp}_matrix_plateau": _var(
            ("phase_a", "phase_b"), mat, CM2_S, f"late-window D_{comp} matrix (NaN without plateau)"
        ),
        f"D_eff_{comp}_plateau": _var(
            "phase", eff, CM2_S, f"effective phase D_{comp} = D_aa/f_a (late window)"
        ),
        f"D_eff_{comp}_plateau_interval": _var(
            ("phase", "bound"), bounds, CM2_S, f"bootstrap interval (particles) of D_eff_{comp}_plateau"
        ),
        f"D_eff_{comp}_realisation_value": _var(
            ("realisation", "phase"), real_eff, CM2_S, f"D_eff_{comp} of each realisation's particles"
        ),
        f"D_eff_{comp}_combined": _var(
            "phase", comb_eff, CM2_S,
            f"D_eff_{comp}: realisation mean (one realisation: the plateau) — the headline value",
        ),
        f"D_eff_{comp}_combined_interval": _var(
            ("phase", "bound"), comb_bounds, CM2_S,
            "Student-t interval over realisations (one realisation: the particle interval)",
        ),
    }


def _dmumu_headline_vars(
    ds: xr.Dataset, mean_sq_dmu: np.ndarray, realisation: np.ndarray, params: TransportParams
) -> tuple[dict[str, xr.Variable], dict[str, Any]]:
    """D_μμ/Ω over the early window with its intervals — particles, and realisations as for
    D∥ (:func:`realisation_estimates`) — (variables) and exponent/regime (attrs)."""
    omega = float(ds.attrs["omega_ref_rad_s"])
    t_all = ds["time"].values
    mu = ds["mu"].transpose("particle", "time").values
    t = t_all[t_all > 0]
    per_mu = (mu[:, t_all > 0] - mu[:, :1]) ** 2 / (2 * t * omega)
    mask = _dmumu_window(t, omega, params)
    est = window_estimate(per_mu, mask, params)
    rest = realisation_estimates(per_mu, realisation, mask, params, pooled=est)
    gamma = window_exponent(t, mean_sq_dmu, mask)
    variables = {
        "D_mumu_over_omega_realisation_value": _var(
            "realisation", rest.values, "1", "D_mumu/Omega (early window) of each realisation's particles"
        ),
        "D_mumu_over_omega_realisation_scatter": _var(
            (), rest.scatter, "1", "sample std of the realisation values (NaN for one)"
        ),
        "D_mumu_over_omega_combined": _var(
            (), rest.combined, "1", "D_mumu/Omega: realisation mean (one realisation: the early "
            "window mean) — the headline value"
        ),
        "D_mumu_over_omega_combined_interval": _var(
            "bound", [rest.lower, rest.upper], "1",
            "Student-t interval over realisations (one realisation: the particle interval)",
        ),
        "D_mumu_over_omega_early": _var((), est.value, "1", "D_mumu/Omega, mean over the early window"),
        "D_mumu_over_omega_early_interval": _var(
            "bound", [est.lower, est.upper], "1", "bootstrap interval of D_mumu_over_omega_early"
        ),
        "D_mumu_over_omega_early_stderr": _var((), est.stderr, "1"),
    }
    attrs = {
        "D_mumu_window_exponent": gamma,
        "D_mumu_regime": _regime_name(classify_exponent(gamma, params)),
        "D_mumu_window_outputs": int(mask.sum()),
    }
    return variables, attrs


def _running_vars(ds: xr.Dataset, params: TransportParams) -> xr.Dataset:
    """Every running curve: D(t), MSDs, exponents, regimes, D_μμ(t), matrices, fractions, D_eff."""
    run = running_coefficients(ds)
    dmm = running_dmumu(ds)
    dpar_m, dperp_m = phase_matrices(ds)
    frac = phase_fractions(ds)
    out = xr.merge([run, dmm])
    out["D_par_matrix"] = dpar_m
    out["D_perp_matrix"] = dperp_m
    out["sum_rule_rel_dev_par"] = sum_rule_deviation(dpar_m, run["D_par"])
    out["sum_rule_rel_dev_perp"] = sum_rule_deviation(dperp_m, run["D_perp"])
    out["phase_fraction"] = frac
    out["D_eff_par"] = effective_phase_coefficients(dpar_m, frac)
    out["D_eff_perp"] = effective_phase_coefficients(dperp_m, frac)
    flag_attrs = {
        "units": "1",
        "flag_values": np.arange(-1, len(REGIMES), dtype=np.int8),
        "flag_meanings": " ".join(("undetermined",) + REGIMES),
    }
    for comp in ("par", "perp"):
        out[f"regime_{comp}"] = (
            "time",
            classify_exponent(out[f"msd_exponent_{comp}"].values, params),
            {**flag_attrs, "long_name": f"pointwise regime of msd_{comp} from its local exponent"},
        )
    return out


def _sum_rule_attrs(out: xr.Dataset, params: TransportParams) -> dict[str, Any]:
    worst = {
        c: float(np.nanmax(out[f"sum_rule_rel_dev_{c}"].values)) for c in ("par", "perp")
    }
    ok = all(w <= params.sum_rule_rtol for w in worst.values())
    if not ok:
        log.warning(
            "sum rule (Eq. 15) violated beyond %.1e: worst relative deviation par %.3e, perp %.3e",
            params.sum_rule_rtol, worst["par"], worst["perp"],
        )
    return {
        "sum_rule_max_rel_dev_par": worst["par"],
        "sum_rule_max_rel_dev_perp": worst["perp"],
        "sum_rule_ok": int(ok),
    }


def _regime_diagnostics(
    ds: xr.Dataset,
    out: xr.Dataset,
    attrs: Mapping[str, Any],
    field_stats: Mapping[str, Any] | None,
    params: TransportParams,
) -> tuple[xr.Dataset, dict[str, Any]]:
    """:func:`cosmicflow.regime.diagnose` of one result, plus ε > 1 fractions per phase."""
    from cosmicflow.regime import diagnose, fraction_above

    d_par = float(out["D_par_combined"])
    basis = "plateau"
    if not math.isfinite(d_par):
        d_par, basis = float(out["D_par"].isel(time=-1)), f"running D(t_end), {attrs['D_par_regime']}"
    if "hist_epsilon" in ds:
        h = np.asarray(ds["hist_epsilon"].values)
        e = np.asarray(ds["eps_edges"].values)
        per_phase = fraction_above(h, e)
        total = float(fraction_above(h.sum(axis=0), e))
    else:
        per_phase, total = np.full(ds.sizes["phase"], math.nan), math.nan
    out = out.assign(eps_gt1_fraction_phase=_var(
        "phase", per_phase, "1", "fraction of particle time with epsilon > 1 in each phase"))
    diag = diagnose(
        larmor_radius_pc=float(ds.attrs.get("larmor_radius_pc", math.nan)),
        b_ref_uG=float(ds.attrs.get("b_ref_uG", math.nan)),
        duration_s=float(out["time"].values[-1]),
        d_par_cm2_s=d_par,
        mfp_basis=basis,
        eps_gt1_fraction=total,
        field_stats=field_stats,
        thresholds=params.regime,
    )
    return out, diag


#: batch attributes copied into the transport result
_COPIED_ATTRS = ("medium", "energy_PeV", "injection", "charge", "larmor_radius_pc", "omega_ref_rad_s",
                 "b_ref_uG", "n_batches", "batch_files", "subgrid_nu_over_omega")
#: the sub-grid scattering model and f_mm, for the two-phase columns (cosmicflow.twophase)
_COPIED_ATTRS += ("scattering_model", "scattering_nu_over_omega_phase",
                  "scattering_micromirror_b_threshold_uG", "scattering_micromirror_nu_over_omega",
                  "scattering_energy_law", "micromirror_volume_fraction")


def analyse_transport(
    ds: xr.Dataset,
    params: TransportParams | None = None,
    field_stats: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Every transport quantity of one merged (medium, energy, injection) set of batches.

    ``ds`` is the output of :func:`load_batches` (or a Dataset with the same variables and
    attributes). The result is the "Transport result" of docs/data-contracts.md: running
    curves on dim ``time`` (t > 0), plateau values with bootstrap intervals on dim ``bound``
    (lower, upper), phase matrices on (time, phase_a, phase_b), phase fractions and D_eff on
    (time, phase), and, for ``injection == "mono"``, D_μμ/Ω vs μ0 on dim ``mu0``. Every
    bootstrap uses the same particle resamples (same seed, same N). ``field_stats`` (the
    medium's :func:`cosmicflow.regime.field_statistics`) feeds the regime diagnostics
    (:func:`cosmicflow.regime.diagnose`, stored as global attrs); without it the checks that
    need the snapshot are left out and say so in ``caveats``.
    """
    params = params or TransportParams()
    if ds.sizes.get("time", 0) < 3 or float(ds["time"][0]) != 0.0:
        raise ValueError("analyse_transport needs >= 3 output times starting at t = 0 (mu0 = mu(0))")
    n = ds.sizes["particle"]
    if n < 2:
        raise InputError(f"transport needs at least 2 particles, got {n}")
    b0hat = mean_field_direction(ds)
    omega = float(ds.attrs["omega_ref_rad_s"])
    pos_ds = _positive_times(ds)
    t = pos_ds["time"].values

    out = _running_vars(ds, params)
    attrs: dict[str, Any] = {}

    sq_par, sq_perp = _per_particle_sq(pos_ds, b0hat)
    realisation = (np.asarray(ds["realisation"].values, dtype=np.int64) if "realisation" in ds
                   else np.zeros(n, dtype=np.int64))
    for prefix, sq, denom in (("D_par", sq_par, 2.0), ("D_perp", sq_perp, 4.0)):
        sq_v = sq.transpose("particle", "time").values
        per = sq_v / (denom * t) * PC2_CM2
        variables, a = _plateau_vars(prefix, per, sq_v, t, realisation, params)
        out = out.assign(variables)
        attrs.update(a)

    mask = late_window(t, params)
    f_end = (pos_ds["phase_time"].isel(time=-1) / t[-1]).transpose("particle", "phase").values
    out["phase_fraction_total"] = _var(
        "phase", f_end.mean(axis=0), "1", "mean fraction of the whole run spent in each phase"
    )
    ppar, pperp = _phase_products(pos_ds, b0hat)
    for comp, products in (("par", ppar), ("perp", pperp)):
        reached = bool(attrs[f"D_{comp}_plateau_reached"])
        out = out.assign(_phase_plateau_vars(comp, products, f_end, mask, reached, realisation, params))

    mech = mechanisms.mechanism_vars(pos_ds, b0hat, mask, params)
    out = xr.merge([out, mech], combine_attrs="drop_conflicts")
    attrs.update(mech.attrs)

    variables, a = _dmumu_headline_vars(ds, out["mean_sq_dmu"].values, realisation, params)
    out = out.assign(variables)
    attrs.update(a)

    if str(ds.attrs.get("injection")) == "mono":
        out = xr.merge([out, dmumu_vs_mu0(ds, params).drop_vars("time")], combine_attrs="override")

    out, diag = _regime_diagnostics(ds, out, attrs, field_stats, params)
    attrs.update(diag)
    out = out.assign_coords(
        realisation=("realisation", np.unique(realisation), {"long_name": "realisation (snapshot or seed)"}),
        window_factor=("window_factor", np.asarray(params.window_spread_factors),
                       {"units": "1", "long_name": "late window width / plateau_window_dex"}),
    )
    late = t[mask]
    attrs.update(_sum_rule_attrs(out, params))
    attrs.update(
        {
            "n_realisations": int(np.unique(realisation).size),
            "realisation_sources": list(ds.attrs.get("realisation_sources", [])),
            "plateau_window_s": [float(late[0]), float(late[-1])] if late.size else [math.nan] * 2,
            "dmumu_window_gyroperiods": list(params.dmumu_window_gyroperiods),
            "n_particles": int(n),
            "mean_field_direction": b0hat.tolist(),
            "parameters": str(params.as_dict()),
        }
    )
    attrs.update({k: ds.attrs[k] for k in _COPIED_ATTRS if k in ds.attrs})
    out["time"].attrs = {"units": "s", "long_name": "time since injection"}
    out = out.assign_coords(
        bound=("bound", ["lower", "upper"]),
        t_gyroperiods=(
            "time", t * omega / (2 * math.pi), {"units": "1", "long_name": "time in gyro-periods 2 pi / Omega"}
        ),
    )
    out.attrs = attrs
    return out


def _attr_value(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (list, tuple)) and not v:
        return ""
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, str) for x in v):
        return ",".join(v)
    return v


def write_transport(
    batches: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    params: TransportParams | Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    field_statistics: str | os.PathLike | None = None,
) -> Path:
    """Merge ``batches``, analyse them and write the transport result NetCDF atomically.

    ``field_statistics`` is the medium's JSON of :func:`cosmicflow.regime.write_field_statistics`
    (for the regime diagnostics).
    """
    from cosmicflow.regime import read_field_statistics

    if not isinstance(params, TransportParams):
        params = TransportParams.from_config(params)
    ds = load_batches(batches)
    log.info("transport: %d particles from %d batch(es), %d output times",
             ds.sizes["particle"], len(batches), ds.sizes["time"])
    stats = read_field_statistics(field_statistics) if field_statistics else None
    result = analyse_transport(ds, params, stats)
    result.attrs.update(provenance_attrs("cosmicflow.transport.write_transport",
                                         {"transport": params.as_dict(), **dict(config or {})}))
    result.attrs = {k: _attr_value(v) for k, v in result.attrs.items()}
    for reg in ("D_par", "D_perp"):
        log.info("%s: regime %s (late exponent %.3f), plateau %.4e cm^2/s", reg,
                 result.attrs[f"{reg}_regime"], result.attrs[f"{reg}_late_exponent"],
                 float(result[f"{reg}_plateau"]))
    if result.attrs["caveats"]:
        log.warning("regime caveats: %s", result.attrs["caveats"])
    with atomic_output(output) as tmp:
        result.to_netcdf(tmp, engine="h5netcdf")
    return Path(output)


# --------------------------------------------------------------------------------------------
# Summary table


def summary_row(result: xr.Dataset) -> dict[str, Any]:
    """One row of ``transport_summary.csv`` from a transport result (column names carry units)."""
    a = result.attrs
    row: dict[str, Any] = {
        "medium": a.get("medium"),
        "energy_PeV": float(a.get("energy_PeV", math.nan)),
        "injection": a.get("injection"),
        "n_particles": int(a.get("n_particles", result.sizes.get("particle", 0))),
        "n_batches": int(a.get("n_batches", 1)),
        "duration_s": float(result["time"].values[-1]),
        "larmor_radius_pc": float(a.get("larmor_radius_pc", math.nan)),
        "omega_ref_rad_s": float(a.get("omega_ref_rad_s", math.nan)),
    }
    row["n_realisations"] = int(a.get("n_realisations", 1))
    for comp in ("par", "perp"):
        p = f"D_{comp}"
        lo, hi = result[f"{p}_combined_interval"].values
        blo, bhi = result[f"{p}_plateau_interval"].values
        glo, ghi = result[f"{p}_late_exponent_interval"].values
        kind = str(a[f"{p}_limit_kind"])
        row.update(
            {
                f"{p}_cm2_s": float(result[f"{p}_combined"]),
                f"{p}_lo_cm2_s": float(lo),
                f"{p}_hi_cm2_s": float(hi),
                f"{p}_particles_lo_cm2_s": float(blo),
                f"{p}_particles_hi_cm2_s": float(bhi),
                f"{p}_stderr_cm2_s": float(result[f"{p}_plateau_stderr"]),
                f"{p}_window_spread_cm2_s": float(result[f"{p}_window_spread"]),
                f"{p}_realisation_scatter_cm2_s": float(result[f"{p}_realisation_scatter"]),
                f"{p}_between_realisation_std_cm2_s": float(result[f"{p}_between_realisation_std"]),
                f"{p}_regime": a[f"{p}_regime"],
                f"{p}_late_exponent": float(a[f"{p}_late_exponent"]),
                f"{p}_late_exponent_lo": float(glo),
                f"{p}_late_exponent_hi": float(ghi),
                f"{p}_plateau_reached": bool(a[f"{p}_plateau_reached"]),
                f"{p}_limit_kind": kind,
                f"{p}_limit_cm2_s": float(result[p].values[-1]) if kind in ("lower", "upper") else math.nan,
            }
        )
        for r, v in zip(result["realisation"].values, result[f"{p}_realisation_value"].values):
            row[f"{p}_r{int(r)}_cm2_s"] = float(v)
    lo, hi = result["D_mumu_over_omega_combined_interval"].values
    blo, bhi = result["D_mumu_over_omega_early_interval"].values
    row.update(
        {
            "D_mumu_over_omega": float(result["D_mumu_over_omega_combined"]),
            "D_mumu_over_omega_lo": float(lo),
            "D_mumu_over_omega_hi": float(hi),
            "D_mumu_over_omega_particles_lo": float(blo),
            "D_mumu_over_omega_particles_hi": float(bhi),
            "D_mumu_over_omega_realisation_scatter": float(result["D_mumu_over_omega_realisation_scatter"]),
            "D_mumu_regime": a["D_mumu_regime"],
        }
    )
    for r, v in zip(result["realisation"].values, result["D_mumu_over_omega_realisation_value"].values):
        row[f"D_mumu_over_omega_r{int(r)}"] = float(v)
    phases = [str(p) for p in result["phase"].values]
    for i, ph in enumerate(phases):
        row[f"f_{ph}"] = float(result["phase_fraction_total"].values[i])
    for comp in ("par", "perp"):
        m = result[f"D_{comp}_matrix_plateau"].values
        for i, pa in enumerate(phases):
            for j, pb in enumerate(phases):
                row[f"D_{comp}_{pa}_{pb}_cm2_s"] = float(m[i, j])
    for comp in ("par", "perp"):
        eff = result[f"D_eff_{comp}_combined"].values
        bounds = result[f"D_eff_{comp}_combined_interval"].values
        for i, ph in enumerate(phases):
            row[f"D_eff_{comp}_{ph}_cm2_s"] = float(eff[i])
            row[f"D_eff_{comp}_{ph}_lo_cm2_s"] = float(bounds[i, 0])
            row[f"D_eff_{comp}_{ph}_hi_cm2_s"] = float(bounds[i, 1])
    row["sum_rule_max_rel_dev_par"] = float(a["sum_rule_max_rel_dev_par"])
    row["sum_rule_max_rel_dev_perp"] = float(a["sum_rule_max_rel_dev_perp"])
    row["sum_rule_ok"] = bool(a["sum_rule_ok"])
    from cosmicflow.regime import FLAGS

    for key in ("cell_pc", "box_pc", "median_B_uG", "lc_pc", "rl_over_dx_ref", "rl_over_dx_median_B",
                "rl_over_lc", "mfp_par_pc", "mfp_par_over_box", "scattering_time_s",
                "duration_over_scattering_time", "eps_gt1_fraction"):
        row[key] = float(a.get(key, math.nan))
    for i, ph in enumerate(phases):
        row[f"eps_gt1_fraction_{ph}"] = float(result["eps_gt1_fraction_phase"].values[i])
    row["mfp_basis"] = str(a.get("mfp_basis", ""))
    for flag in FLAGS:
        row[f"flag_{flag}"] = bool(a[f"flag_{flag}"])
    row["regime_ok"] = bool(a["regime_ok"])
    row["caveats"] = str(a.get("caveats", ""))
    row.update(mechanisms.mechanism_summary(result))
    row.update(_twophase_columns(result))
    return row


def _twophase_columns(result: xr.Dataset) -> dict[str, Any]:
    """κ_H, κ_A, the sub-grid prediction and where D∥ sits (cosmicflow.twophase, issue 14)."""
    from cosmicflow.twophase import summary_columns

    return summary_columns(result)


def write_summary(results: Iterable[str | os.PathLike], output: str | os.PathLike) -> Path:
    """Write ``transport_summary.csv``: one row per transport result, sorted by medium, injection, E."""
    rows = []
    for path in results:
        res = load_netcdf(path)
        try:
            rows.append(summary_row(res))
        except KeyError as err:
            raise InputError(f"{path}: not a transport result, missing {err}") from err
    if not rows:
        raise ValueError("write_summary: no transport results given")
    table = pd.DataFrame(rows).sort_values(["medium", "injection", "energy_PeV"], kind="stable")
    with atomic_output(output) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return Path(output)


# --------------------------------------------------------------------------------------------
# Quasi-linear theory for slab turbulence (the weak-turbulence reference of the tests)


def _slab_norm(s: float) -> float:
    # ∫_{-∞}^{∞} dx (1 + x²)^{-s/2} = √π Γ((s−1)/2) / Γ(s/2)
    return math.gamma(s / 2) / (math.sqrt(math.pi) * math.gamma((s - 1) / 2))


def kolmogorov_slab_spectrum(x: np.ndarray | float, s: float = 5.0 / 3.0) -> np.ndarray:
    r"""Dimensionless slab spectrum with a bend-over, normalised to unit total power.

    .. math:: \frac{G(k)}{\delta B^2\,\ell} = \tilde G(x) = \frac{C(s)}{(1 + x^2)^{s/2}},
              \qquad x = k\ell, \qquad
              C(s) = \frac{\Gamma(s/2)}{\sqrt\pi\,\Gamma((s-1)/2)}

    where G(k) is the spectrum of both transverse components together over −∞ < k < ∞,
    ∫G dk = δB² = ⟨δB_x² + δB_y²⟩, ℓ the bend-over scale and s = 5/3 the Kolmogorov inertial
    range index (Shalchi 2009, *Nonlinear Cosmic Ray Diffusion Theories*, ch. 2, where the same
    form is written with ν = s/2 and the normalisation split over the two components).
    """
    if not 1 < s < 3:
        raise ValueError(f"slab spectral index s must be in (1, 3), got {s}")
    x = np.asarray(x, dtype=np.float64)
    return _slab_norm(s) / (1.0 + x * x) ** (s / 2)


def qlt_slab_dmumu_over_omega(
    mu: np.ndarray | float, rigidity: float, db2_over_b02: float, s: float = 5.0 / 3.0
) -> np.ndarray:
    r"""Quasi-linear pitch-angle diffusion coefficient in magnetostatic slab turbulence, over Ω.

    .. math:: \frac{D_{\mu\mu}}{\Omega} = \frac{\pi}{2}\,(1-\mu^2)\,
              \frac{\delta B^2}{B_0^2}\; x_{\rm res}\,\tilde G(x_{\rm res}),
              \qquad x_{\rm res} = k_{\rm res}\ell = \frac{1}{R\,|\mu|}

    (Jokipii 1966, ApJ 146, 480; Shalchi 2009, ch. 3, non-helical spectrum) where μ is
    the pitch-angle cosine, R = r_L/ℓ = v/(Ωℓ) the rigidity, δB²/B0² the turbulence level and
    G̃ the normalised spectrum of :func:`kolmogorov_slab_spectrum`. It follows from
    D_μμ = ∫_0^∞ ⟨μ̇(0) μ̇(t)⟩ dt along unperturbed helices with the gyro-resonance
    k_∥ v μ = ±Ω. D_μμ ≥ 0, symmetric in μ, zero at μ = ±1 and (as |μ|^{s−1}) at μ = 0.
    """
    if rigidity <= 0 or db2_over_b02 <= 0:
        raise ValueError(f"need rigidity > 0 and db2_over_b02 > 0, got {rigidity}, {db2_over_b02}")
    mu = np.abs(np.asarray(mu, dtype=np.float64))
    if np.any(mu > 1):
        raise ValueError("pitch-angle cosines must lie in [-1, 1]")
    with np.errstate(divide="ignore"):
        x = 1.0 / (rigidity * mu)
        xg = np.where(mu > 0, x * kolmogorov_slab_spectrum(np.where(mu > 0, x, 1.0), s), 0.0)
    return 0.5 * math.pi * (1.0 - mu * mu) * db2_over_b02 * xg


def qlt_slab_d_par(
    larmor_radius_pc: float, bendover_pc: float, db2_over_b02: float, s: float = 5.0 / 3.0
) -> float:
    r"""Quasi-linear parallel diffusion coefficient [cm^2 s^-1] in slab turbulence, for v = c.

    .. math:: D_\parallel = \frac{v^2}{8}\int_{-1}^{1}\frac{(1-\mu^2)^2}{D_{\mu\mu}}\,d\mu
              = \frac{r_L c}{4}\int_0^1 \frac{(1-\mu^2)^2}{D_{\mu\mu}/\Omega}\,d\mu

    (Hasselmann & Wibberenz 1968; Earl 1974, ApJ 193, 231; Shalchi 2009, ch. 3) with D_μμ from
    :func:`qlt_slab_dmumu_over_omega`, v = c and Ω = c/r_L. The integrand diverges as
    |μ|^{1−s} at μ = 0 (integrable for s < 2); it is integrated with that algebraic weight.
    """
    if larmor_radius_pc <= 0 or bendover_pc <= 0:
        raise ValueError("larmor_radius_pc and bendover_pc must be > 0")
    if not 1 < s < 2:
        raise ValueError(f"QLT D_par is finite only for 1 < s < 2, got s = {s}")
    from scipy.integrate import quad

    from cosmicflow.constants import C_CM_S

    rig = larmor_radius_pc / bendover_pc
    # With x = 1/(Rμ): x G̃(x) = C (Rμ)^{s-1} / (1 + R²μ²)^{s/2}, so the integrand is
    # μ^{1-s} times the smooth factor below (finite at μ = 0, where quad's nodes may fall).
    pref = 0.5 * math.pi * db2_over_b02 * _slab_norm(s) * rig ** (s - 1)

    def smooth(mu: float) -> float:
        return (1 - mu * mu) * (1 + (rig * mu) ** 2) ** (s / 2) / pref

    integral, _ = quad(smooth, 0.0, 1.0, weight="alg", wvar=(1.0 - s, 0.0), limit=200)
    return 0.25 * larmor_radius_pc * PC_CM * C_CM_S * integral
