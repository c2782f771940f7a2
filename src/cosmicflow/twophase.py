r"""Two-phase transport laws and transport theory beside every measurement (issue 14).

Laws computed from what a run measured (every function takes plain numbers in stated units;
:func:`summary_columns`, :func:`theory_table` and the figure overlays read transport results):

Harmonic and arithmetic means (seed 001, Ewart et al., Eqs. 3–5)
    A particle that has crossed many patches of a multiphase medium diffuses along the field
    with the harmonic mean of the local coefficients, at short times with the arithmetic mean:

    .. math:: \kappa_H = \Big(\sum_\alpha \frac{f_\alpha}{\kappa_\alpha}\Big)^{-1}
              \;\le\; \kappa \;\le\; \kappa_A = \sum_\alpha f_\alpha\,\kappa_\alpha ,

    where f_α is the filling fraction of phase α along field lines — for particles in
    equilibrium the fraction of time spent in α (``phase_fraction_total``) — and κ_α the
    phase's coefficient, here the measured D_eff,α = D_αα/f_α (paper Fig. 9).

    Caveat, measured: D_eff,α is the local κ_α only while particles stay inside one patch.
    Once they cross many patches the displacement splits by geometry, Δr_α ≈ φ_α Δr, so
    D_αα → φ_α² D and Σ_α f_α D_eff,α = Σ_α D_αα < D: the positive off-diagonal D_αβ
    (Eq. 15) carry the rest, and the measured D∥ then lies *above* this κ_A (in the
    ``config/subgrid-demo.yaml`` run at log-position 1.2–1.5 on the multiphase medium). The
    columns report that placement as it is; the sub-grid law below, which uses the known
    local rates, is the exact one (``tests/test_twophase_physics.py``).

Sub-grid scattering rate (seed 004, Reichherzer et al., §1.3 Eqs. 10–11, §3.8)
    With hard-sphere scattering at a rate ν(x) that varies in space, the late-time parallel
    coefficient is

    .. math:: D = \frac{c^2}{3\,\nu_{\rm eff}}, \qquad
              \nu_{\rm eff} = \sum_\alpha f_\alpha\,\nu_\alpha ,

    (the harmonic mean of c²/(3ν_α); exact along the field for any patch size, see
    ``tests/test_twophase_physics.py``). For micromirror patches f_mm is the volume fraction
    where |B| exceeds the threshold (seed 004 §3.8) and
    ν_eff = f_mm ν_mm + (1 − f_mm) ν_res, i.e. κ_eff = κ_mm / (f_mm + (1 − f_mm) κ_mm/κ_res).
    Rates follow the energy law ν(E) = ν0 (E/E0)^(−q) (micromirrors: κ_mm ∝ E², q = 2).

Quasi-linear parallel diffusion (Hasselmann & Wibberenz 1968; Earl 1974; Shalchi 2009 ch. 3)
    .. math:: \kappa_\parallel = \frac{v^2}{8}\int_{-1}^{1}\frac{(1-\mu^2)^2}{D_{\mu\mu}}\,d\mu

    from the measured D_μμ(μ0) of the mono-μ0 runs (:func:`qlt_kappa_par`).

Bohm limit: D_B = c r_L / 3 (mean free path = one gyroradius).

Energy slopes: δ of D ∝ E^δ by least squares in log–log with a parametric bootstrap interval
(:func:`energy_slope`).

Units: diffusion coefficients in cm² s⁻¹, rates in s⁻¹ or in units of Ω_ref as named,
lengths in pc, energies in PeV.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cosmicflow.constants import C_CM_S, PC_CM
from cosmicflow.io import InputError, atomic_output, load_netcdf

__all__ = [
    "mean_bounds",
    "mean_bounds_interval",
    "effective_rate",
    "rate_at_energy",
    "hard_sphere_diffusion",
    "micromirror_fraction",
    "micromirror_effective_rate",
    "micromirror_kappa_eff",
    "qlt_kappa_par",
    "bohm_diffusion",
    "energy_slope",
    "place_between",
    "subgrid_rates",
    "summary_columns",
    "theory_table",
    "load_by_energy",
    "write_theory_table",
    "overlay_fig7",
    "overlay_fig9",
]

#: fractions below this are "phase not visited" (no weight in the means)
MIN_FRACTION = 1e-12


# --------------------------------------------------------------------------------------------
# Two-phase (multiphase) means


def _weights(fractions: Sequence[float], values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(fractions, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if f.shape != v.shape or f.ndim != 1 or f.size == 0:
        raise ValueError(f"fractions and values must be 1-D of one length, got {f.shape}, {v.shape}")
    if np.any(~np.isfinite(f)) or np.any(f < 0):
        raise ValueError(f"fractions must be finite and >= 0, got {f.tolist()}")
    used = f > MIN_FRACTION
    if not np.any(used):
        raise ValueError("at least one phase needs a fraction > 0")
    return f[used] / f[used].sum(), v[used]


def mean_bounds(d_eff: Sequence[float], fractions: Sequence[float]) -> tuple[float, float]:
    r"""Harmonic and arithmetic means (κ_H, κ_A) of phase coefficients (seed 001 Eqs. 3–5).

    .. math:: \kappa_H = \Big(\sum_\alpha \frac{f_\alpha}{\kappa_\alpha}\Big)^{-1},\qquad
              \kappa_A = \sum_\alpha f_\alpha \kappa_\alpha

    Parameters
    ----------
    d_eff : κ_α per phase [any units, e.g. cm² s⁻¹]
    fractions : f_α per phase [1]; normalised over the phases with f_α > 0, which alone count.

    Returns (κ_H, κ_A) in the units of ``d_eff``; κ_H ≤ κ_A (Cauchy–Schwarz). NaN if a visited
    phase has a non-finite or non-positive coefficient (no plateau, or a negative D_αα).
    """
    f, k = _weights(fractions, d_eff)
    if np.any(~np.isfinite(k)) or np.any(k <= 0):
        return math.nan, math.nan
    return float(1.0 / np.sum(f / k)), float(np.sum(f * k))


def mean_bounds_interval(
    d_eff: Sequence[float], lower: Sequence[float], upper: Sequence[float], fractions: Sequence[float]
) -> dict[str, float]:
    """κ_H and κ_A with intervals from the per-phase intervals of D_eff,α.

    Both means increase monotonically in every κ_α, so evaluating them at all lower and at all
    upper bounds gives an interval that contains the one a joint bootstrap would give (it
    treats the phases' errors as fully correlated: conservative). Fractions are taken as exact
    (their bootstrap spread is far below that of D_eff,α). Keys: ``kappa_H, kappa_H_lo,
    kappa_H_hi, kappa_A, kappa_A_lo, kappa_A_hi`` in the units of ``d_eff``.
    """
    h, a = mean_bounds(d_eff, fractions)
    h_lo, a_lo = mean_bounds(lower, fractions)
    h_hi, a_hi = mean_bounds(upper, fractions)
    return {"kappa_H": h, "kappa_H_lo": h_lo, "kappa_H_hi": h_hi,
            "kappa_A": a, "kappa_A_lo": a_lo, "kappa_A_hi": a_hi}


def place_between(value: float, lo: float, hi: float, kappa_h: float, kappa_a: float) -> tuple[float, str]:
    r"""Where a measured D sits between κ_H and κ_A.

    Returns (position, verdict): position = ln(D/κ_H) / ln(κ_A/κ_H) (0 at κ_H, 1 at κ_A; NaN
    when either is missing or κ_A = κ_H) and verdict ``"between"`` when the interval [lo, hi]
    of D overlaps [κ_H, κ_A], ``"below_harmonic"`` or ``"above_arithmetic"`` otherwise, or
    ``"undetermined"`` when a number is missing.
    """
    vals = (value, kappa_h, kappa_a)
    if not all(np.isfinite(v) and v > 0 for v in vals):
        return math.nan, "undetermined"
    span = math.log(kappa_a / kappa_h)
    pos = math.log(value / kappa_h) / span if span > 0 else math.nan
    lo = value if not np.isfinite(lo) else lo
    hi = value if not np.isfinite(hi) else hi
    if hi < kappa_h:
        return pos, "below_harmonic"
    if lo > kappa_a:
        return pos, "above_arithmetic"
    return pos, "between"


# --------------------------------------------------------------------------------------------
# Sub-grid scattering rates


def effective_rate(fractions: Sequence[float], rates: Sequence[float]) -> float:
    r"""ν_eff = Σ_α f_α ν_α (seed 004 Eq. 10) [units of ``rates``]; f normalised over f_α > 0."""
    f, nu = _weights(fractions, rates)
    if np.any(~np.isfinite(nu)) or np.any(nu < 0):
        raise ValueError(f"rates must be finite and >= 0, got {list(rates)}")
    return float(np.sum(f * nu))


def rate_at_energy(nu0: float, energy_pev: float, e0_pev: float, q: float) -> float:
    r"""Energy law of a scattering rate: ν(E) = ν0 (E/E0)^(−q) [units of ``nu0``].

    Micromirror scattering (seed 004 §2, Eq. 5): κ_mm ∝ E², so ν_mm ∝ E⁻², q = 2; q = 0 keeps
    the rate fixed. E, E0 in PeV, > 0.
    """
    if not (energy_pev > 0 and e0_pev > 0):
        raise ValueError(f"energies must be > 0 PeV, got E = {energy_pev}, E0 = {e0_pev}")
    if nu0 < 0 or not np.isfinite(q):
        raise ValueError(f"need nu0 >= 0 and finite q, got {nu0}, {q}")
    return float(nu0 * (energy_pev / e0_pev) ** (-q))


def hard_sphere_diffusion(nu_rad_s: float) -> float:
    r"""D = c²/(3ν) [cm² s⁻¹] of isotropic hard-sphere scattering at rate ν [s⁻¹], v = c.

    Along a uniform field this is D∥ for any Ω/ν (the velocity correlation along B0 is
    (c²/3) e^(−νt)); with ν = ν_eff it is the sub-grid prediction of seed 004 Eq. 11.
    """
    if not nu_rad_s > 0:
        return math.inf if nu_rad_s == 0 else math.nan
    return C_CM_S**2 / (3.0 * nu_rad_s)


def micromirror_fraction(bx: np.ndarray, by: np.ndarray, bz: np.ndarray, threshold_ug: float,
                         slab_cells: int = 1 << 22) -> float:
    r"""f_mm: volume fraction of cells where |B| > B_> (seed 004 §3.8) [1].

    ``bx, by, bz`` [µG] on one cell-centred grid (memory maps are read in slabs along the
    first axis, so a large snapshot is never held in float64). The pusher compares the
    trilinear |B| at each step's field-evaluation point with the threshold; for a threshold
    halfway between two cell values the interpolated boundary lies on the cell face, so the
    interpolated and the cell volume fractions agree exactly, otherwise to O(Δx/ℓ_patch).
    """
    if bx.shape != by.shape or bx.shape != bz.shape or bx.ndim != 3:
        raise ValueError(f"bx, by, bz must be 3-D of one shape, got {bx.shape}, {by.shape}, {bz.shape}")
    if not threshold_ug >= 0:
        raise ValueError(f"micromirror threshold must be >= 0 uG, got {threshold_ug}")
    n0 = bx.shape[0]
    step = max(1, slab_cells // max(1, bx.shape[1] * bx.shape[2]))
    above = 0
    t2 = float(threshold_ug) ** 2
    for i in range(0, n0, step):
        sl = slice(i, min(n0, i + step))
        b2 = (np.asarray(bx[sl], np.float64) ** 2 + np.asarray(by[sl], np.float64) ** 2
              + np.asarray(bz[sl], np.float64) ** 2)
        above += int(np.count_nonzero(b2 > t2))
    return above / bx.size


def micromirror_effective_rate(f_mm: float, nu_mm: float, nu_res: float) -> float:
    r"""ν_eff = f_mm ν_mm + (1 − f_mm) ν_res (seed 004 Eq. 10) [units of the rates].

    ν_mm is the total rate inside the patches, ν_res the rate outside.
    """
    if not 0 <= f_mm <= 1:
        raise ValueError(f"f_mm must be in [0, 1], got {f_mm}")
    return float(f_mm * nu_mm + (1.0 - f_mm) * nu_res)


def micromirror_kappa_eff(kappa_mm: float, kappa_res: float, f_mm: float) -> float:
    r"""κ_eff = κ_mm / (f_mm + (1 − f_mm) κ_mm/κ_res) (seed 004 Eq. 11) [units of κ].

    The same law as :func:`micromirror_effective_rate` with κ = c²/(3ν).
    """
    if not 0 <= f_mm <= 1:
        raise ValueError(f"f_mm must be in [0, 1], got {f_mm}")
    return float(kappa_mm / (f_mm + (1.0 - f_mm) * kappa_mm / kappa_res))


# --------------------------------------------------------------------------------------------
# Quasi-linear theory from measured D_mumu, Bohm limit, energy slopes


def qlt_kappa_par(mu: Sequence[float], dmumu_over_omega: Sequence[float], larmor_radius_pc: float,
                  n_nodes: int = 16) -> float:
    r"""Quasi-linear κ∥ [cm² s⁻¹] from D_μμ measured at a few pitch-angle cosines, v = c.

    .. math:: \kappa_\parallel = \frac{v^2}{8}\int_{-1}^{1}\frac{(1-\mu^2)^2}{D_{\mu\mu}}d\mu
              = \frac{c\,r_L}{4}\int_0^1 \frac{1-\mu^2}{g(\mu)}\,d\mu,
              \qquad g(\mu) = \frac{D_{\mu\mu}/\Omega}{1-\mu^2}

    (Hasselmann & Wibberenz 1968; Earl 1974, ApJ 193, 231) with Ω = c/r_L and D_μμ taken
    symmetric in μ (|μ0| of the mono runs; values at ±μ0 are averaged). g is interpolated
    linearly between the measured μ0 and held constant beyond the first and last, so that
    D_μμ vanishes as (1 − μ²) at |μ| = 1 as every pitch-angle scattering does. For isotropic
    small-angle scattering, D_μμ = (ν/2)(1 − μ²), this gives exactly c²/(3ν).

    Parameters
    ----------
    mu : pitch-angle cosines of the measurements, |μ| < 1
    dmumu_over_omega : D_μμ/Ω_ref at those μ [1], > 0
    larmor_radius_pc : r_L = c/Ω_ref [pc]
    """
    m = np.abs(np.asarray(mu, dtype=np.float64))
    d = np.asarray(dmumu_over_omega, dtype=np.float64)
    if m.shape != d.shape or m.ndim != 1 or m.size == 0:
        raise ValueError(f"mu and dmumu_over_omega must be 1-D of one length, got {m.shape}, {d.shape}")
    if np.any(m >= 1) or not larmor_radius_pc > 0:
        raise ValueError("need |mu| < 1 and larmor_radius_pc > 0")
    if np.any(~np.isfinite(d)) or np.any(d <= 0):
        return math.nan
    g_pts = d / (1.0 - m * m)
    um = np.unique(m)
    g_u = np.array([g_pts[m == v].mean() for v in um])
    # Gauss-Legendre on each piece between the knots, where the integrand is smooth
    edges = np.unique(np.concatenate([[0.0], um, [1.0]]))
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    a, b = edges[:-1, None], edges[1:, None]
    nodes = 0.5 * (b - a) * x[None, :] + 0.5 * (a + b)
    g = np.interp(nodes, um, g_u)  # constant beyond the first and last knot
    integral = np.sum(0.5 * (b - a) * w[None, :] * (1.0 - nodes * nodes) / g)
    return 0.25 * larmor_radius_pc * PC_CM * C_CM_S * float(integral)


def bohm_diffusion(larmor_radius_pc: float | np.ndarray) -> np.ndarray:
    r"""Bohm limit D_B = c r_L / 3 [cm² s⁻¹] (mean free path one gyroradius), r_L in pc."""
    r = np.asarray(larmor_radius_pc, dtype=np.float64)
    return C_CM_S * r * PC_CM / 3.0


def energy_slope(energies_pev: Sequence[float], values: Sequence[float], stderr: Sequence[float],
                 samples: int = 2000, seed: int = 0, interval_percent: float = 68.27
                 ) -> tuple[float, float, float]:
    r"""Energy slope δ of D ∝ E^δ with a parametric bootstrap interval.

    δ is the least-squares slope of ln D against ln E over the energies with a finite,
    positive D. Its interval: the energies are independent runs, so each resample draws
    ln D_i from a normal of width σ_i/D_i (σ_i the per-energy standard error) and refits;
    the central ``interval_percent`` of the slopes. Returns (δ, lower, upper); NaN with fewer
    than two usable energies.
    """
    e = np.asarray(energies_pev, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    s = np.asarray(stderr, dtype=np.float64)
    ok = np.isfinite(v) & (v > 0) & np.isfinite(e) & (e > 0)
    if np.unique(e[ok]).size < 2:
        return math.nan, math.nan, math.nan
    x, y = np.log(e[ok]), np.log(v[ok])
    sig = np.where(np.isfinite(s[ok]) & (s[ok] >= 0), s[ok] / v[ok], 0.0)
    xc = x - x.mean()
    slope = float(np.sum(xc * (y - y.mean())) / np.sum(xc * xc))
    rng = np.random.default_rng(seed)
    ys = y[None, :] + rng.normal(size=(samples, y.size)) * sig[None, :]
    slopes = np.sum(xc[None, :] * (ys - ys.mean(axis=1, keepdims=True)), axis=1) / np.sum(xc * xc)
    half = (100.0 - interval_percent) / 2
    lo, hi = np.percentile(slopes, [half, 100.0 - half])
    return slope, float(lo), float(hi)


# --------------------------------------------------------------------------------------------
# Reading transport results


def subgrid_rates(result: Any) -> dict[str, Any] | None:
    """The sub-grid rate model of a transport result at its energy, or None without one.

    Reads the batch attributes the integrator writes (``scattering_model``,
    ``scattering_nu_over_omega_phase``, ``scattering_micromirror_b_threshold_uG``,
    ``scattering_micromirror_nu_over_omega`` — rates at the job's energy in units of its
    Ω_ref — and ``micromirror_volume_fraction``, copied into the result) or the legacy
    ``subgrid_nu_over_omega``. Returns ``{"model", "phase_nu_over_omega"
    (per phase, units of the result's Ω_ref), "mm_threshold_uG", "mm_nu_over_omega" (extra rate
    inside patches), "f_mm"}``.
    """
    a = result.attrs
    model = str(a.get("scattering_model", "") or "")
    if model:
        if model == "none":
            return None
        phase = np.atleast_1d(np.asarray(a.get("scattering_nu_over_omega_phase", []), np.float64))
        return {
            "model": model,
            "phase_nu_over_omega": phase,
            "mm_threshold_uG": float(a.get("scattering_micromirror_b_threshold_uG", math.inf)),
            "mm_nu_over_omega": float(a.get("scattering_micromirror_nu_over_omega", 0.0)),
            "f_mm": float(a.get("micromirror_volume_fraction", math.nan)),
        }
    nu = float(a.get("subgrid_nu_over_omega", 0.0) or 0.0)
    if nu > 0:
        n = int(result.sizes.get("phase", 3))
        return {"model": "uniform", "phase_nu_over_omega": np.full(n, nu),
                "mm_threshold_uG": math.inf, "mm_nu_over_omega": 0.0, "f_mm": 0.0}
    return None


def _subgrid_prediction(result: Any, fractions: np.ndarray) -> tuple[float, float]:
    """(ν_eff/Ω_ref, D = c²/(3ν_eff) [cm² s⁻¹]) of a result's sub-grid model, or NaNs."""
    rates = subgrid_rates(result)
    if rates is None:
        return math.nan, math.nan
    nu_phase = rates["phase_nu_over_omega"]
    if nu_phase.size != fractions.size:
        return math.nan, math.nan
    nu = effective_rate(fractions, nu_phase)
    if rates["mm_nu_over_omega"] > 0:
        f_mm = rates["f_mm"]
        if not np.isfinite(f_mm):
            return math.nan, math.nan
        nu += f_mm * rates["mm_nu_over_omega"]
    omega = float(result.attrs["omega_ref_rad_s"])
    return nu, hard_sphere_diffusion(nu * omega)


def summary_columns(result: Any) -> dict[str, Any]:
    """Two-phase columns of one ``transport_summary.csv`` row (units in the names).

    ``kappa_H_par_cm2_s``, ``kappa_A_par_cm2_s`` with ``_lo``/``_hi`` (:func:`mean_bounds_interval`
    of D_eff,∥,α and the time fractions), ``D_par_position_HA`` and ``D_par_vs_means``
    (:func:`place_between`), and for runs with sub-grid scattering ``nu_eff_over_omega`` and
    ``D_par_subgrid_cm2_s`` = c²/(3ν_eff) with ``D_par_over_subgrid`` (measured / predicted).
    """
    f = np.asarray(result["phase_fraction_total"].values, dtype=np.float64)
    eff = np.asarray(result["D_eff_par_plateau"].values, dtype=np.float64)
    bounds = np.asarray(result["D_eff_par_plateau_interval"].values, dtype=np.float64)
    m = mean_bounds_interval(eff, bounds[:, 0], bounds[:, 1], f)
    d = float(result["D_par_plateau"])
    lo, hi = (float(x) for x in result["D_par_plateau_interval"].values)
    pos, verdict = place_between(d, lo, hi, m["kappa_H"], m["kappa_A"])
    nu_eff, d_sub = _subgrid_prediction(result, f)
    row: dict[str, Any] = {}
    for mean in ("kappa_H", "kappa_A"):
        row[f"{mean}_par_cm2_s"] = m[mean]
        row[f"{mean}_par_lo_cm2_s"] = m[f"{mean}_lo"]
        row[f"{mean}_par_hi_cm2_s"] = m[f"{mean}_hi"]
    row.update({
        "D_par_position_HA": pos,
        "D_par_vs_means": verdict,
        "nu_eff_over_omega": nu_eff,
        "D_par_subgrid_cm2_s": d_sub,
        "D_par_over_subgrid": d / d_sub if np.isfinite(d_sub) and d_sub > 0 else math.nan,
    })
    return row


def _plateau(result: Any, name: str) -> tuple[float, float, float, float]:
    v = float(result[f"{name}_plateau"])
    lo, hi = (float(x) for x in result[f"{name}_plateau_interval"].values)
    return v, lo, hi, float(result[f"{name}_plateau_stderr"])


def _qlt_from_mono(mono: Any) -> tuple[float, float, float]:
    """QLT κ∥ of a mono-μ0 result and its interval from the D_μμ intervals [cm² s⁻¹].

    κ∥ decreases in every D_μμ(μ0), so the upper D_μμ bounds give its lower bound.
    """
    mu0 = np.asarray(mono["mu0"].values, dtype=np.float64)
    keep = np.abs(mu0) < 1
    d = np.asarray(mono["D_mumu_over_omega_mu0"].values, dtype=np.float64)[keep]
    iv = np.asarray(mono["D_mumu_over_omega_mu0_interval"].values, dtype=np.float64)[keep]
    rl = float(mono.attrs["larmor_radius_pc"])
    mu0 = mu0[keep]
    if mu0.size == 0:
        return math.nan, math.nan, math.nan
    return (qlt_kappa_par(mu0, d, rl), qlt_kappa_par(mu0, iv[:, 1], rl),
            qlt_kappa_par(mu0, iv[:, 0], rl))


def theory_table(isotropic: Mapping[str, Mapping[float, Any]],
                 mono: Mapping[str, Mapping[float, Any]] | None = None,
                 seed: int = 0) -> pd.DataFrame:
    """Theory beside the measurement, one row per (medium, energy) of the isotropic results.

    Columns (units in the names): plateau ``D_par``/``D_perp`` with intervals; the Bohm limit
    ``D_bohm_cm2_s`` = c r_L/3; the energy slopes ``delta_par``/``delta_perp`` of the medium
    with their parametric bootstrap intervals (:func:`energy_slope`, same on every row of a
    medium); where a mono-μ0 result exists at that energy, the QLT ``kappa_qlt_par_cm2_s``
    (:func:`qlt_kappa_par` of its D_μμ(μ0)) with interval and the ratio
    ``D_par_over_qlt`` with interval [D_lo/κ_hi, D_hi/κ_lo] (conservative: both bounds at
    once). ``mono`` maps medium to {energy: mono transport result}.
    """
    rows = []
    for medium, by_energy in isotropic.items():
        energies = np.array(sorted(by_energy))
        slopes = {}
        for comp in ("par", "perp"):
            vals = [_plateau(by_energy[e], f"D_{comp}") for e in energies]
            slopes[comp] = energy_slope(energies, [v[0] for v in vals], [v[3] for v in vals], seed=seed)
        for e in energies:
            res = by_energy[e]
            row: dict[str, Any] = {"medium": medium, "energy_PeV": float(e)}
            for comp in ("par", "perp"):
                v, lo, hi, _ = _plateau(res, f"D_{comp}")
                row.update({f"D_{comp}_cm2_s": v, f"D_{comp}_lo_cm2_s": lo, f"D_{comp}_hi_cm2_s": hi})
            row["D_bohm_cm2_s"] = float(bohm_diffusion(float(res.attrs["larmor_radius_pc"])))
            for comp in ("par", "perp"):
                row.update(dict(zip((f"delta_{comp}", f"delta_{comp}_lo", f"delta_{comp}_hi"), slopes[comp])))
            k, k_lo, k_hi = math.nan, math.nan, math.nan
            m = (mono or {}).get(medium, {}).get(float(e))
            if m is not None:
                k, k_lo, k_hi = _qlt_from_mono(m)
            row.update({"kappa_qlt_par_cm2_s": k, "kappa_qlt_par_lo_cm2_s": k_lo,
                        "kappa_qlt_par_hi_cm2_s": k_hi})
            d, d_lo, d_hi = row["D_par_cm2_s"], row["D_par_lo_cm2_s"], row["D_par_hi_cm2_s"]
            ok = np.isfinite(k) and k > 0
            row.update({
                "D_par_over_qlt": d / k if ok else math.nan,
                "D_par_over_qlt_lo": d_lo / k_hi if ok and k_hi > 0 else math.nan,
                "D_par_over_qlt_hi": d_hi / k_lo if ok and k_lo > 0 else math.nan,
            })
            rows.append(row)
    return pd.DataFrame(rows)


def load_by_energy(paths: Sequence[str | os.PathLike]) -> dict[str, dict[float, Any]]:
    """Transport results keyed {medium: {energy [PeV]: Dataset}} from their attributes."""
    out: dict[str, dict[float, Any]] = {}
    for p in paths:
        try:
            ds = load_netcdf(p)
            key = (str(ds.attrs["medium"]), float(np.squeeze(ds.attrs["energy_PeV"])))
        except (OSError, KeyError, ValueError) as err:
            raise InputError(f"{p}: not a readable transport result ({err})") from err
        out.setdefault(key[0], {})[key[1]] = ds
    return out


def write_theory_table(isotropic: Sequence[str | os.PathLike], mono: Sequence[str | os.PathLike],
                       output: str | os.PathLike) -> Path:
    """Write :func:`theory_table` of the given transport result files as CSV, atomically."""
    table = theory_table(load_by_energy(isotropic), load_by_energy(mono) if mono else None)
    with atomic_output(output) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return Path(output)


# --------------------------------------------------------------------------------------------
# Figure overlays (called from cosmicflow.plotting_transport with one line each)


def overlay_fig7(axes: Sequence[Any], media: Mapping[str, Mapping[float, Any]],
                 mono: Mapping[str, Mapping[float, Any]] | None = None) -> None:
    """Theory on Fig. 7: the Bohm limit c r_L/3 on the D∥ and D⊥ panels (grey solid; r_L at
    each medium's B_ref), the QLT κ∥ from the mono-μ0 D_μμ (star with interval) on D∥, and
    the energy slopes δ with intervals in the legend labels of a text box."""
    table = theory_table(media, mono)
    if table.empty:
        return
    lines = []
    for k, (medium, sub) in enumerate(table.groupby("medium", sort=False)):
        e = sub["energy_PeV"].to_numpy()
        bohm = sub["D_bohm_cm2_s"].to_numpy()
        for ax in axes[:2]:
            ax.plot(e, bohm, color="0.45", lw=0.9, ls="-", zorder=1,
                    label=r"Bohm $c r_L/3$" if k == 0 else None)
        q = sub[np.isfinite(sub["kappa_qlt_par_cm2_s"])]
        if len(q):
            y = q["kappa_qlt_par_cm2_s"].to_numpy()
            err = np.abs(np.stack([y - q["kappa_qlt_par_lo_cm2_s"].to_numpy(),
                                   q["kappa_qlt_par_hi_cm2_s"].to_numpy() - y]))
            axes[0].errorbar(q["energy_PeV"], y, yerr=err, fmt="*", ms=7, color="tab:purple",
                             capsize=2, label=rf"QLT $\kappa_\parallel$ ({medium})")
        r = sub.iloc[0]
        lines.append(rf"{medium}: $\delta_\parallel$ = {r.delta_par:.2f} [{r.delta_par_lo:.2f}, "
                     rf"{r.delta_par_hi:.2f}]")
        lines.append(rf"    $\delta_\perp$ = {r.delta_perp:.2f} [{r.delta_perp_lo:.2f}, "
                     rf"{r.delta_perp_hi:.2f}]")
    axes[0].legend(fontsize=5, frameon=False, loc="upper left")
    # outside the layout: constrained layout would otherwise shrink the axes to fit the text
    axes[1].text(0.02, 0.98, "\n".join(lines), transform=axes[1].transAxes, fontsize=5,
                 va="top", ha="left", in_layout=False)


def overlay_fig9(axes: Sequence[Any], media: Mapping[str, Mapping[float, Any]]) -> None:
    """Two-phase laws on Fig. 9 (parallel panel): the band between κ_H and κ_A of each medium
    (from its D_eff,∥,α and time fractions; grey, edged), and where the run had sub-grid scattering
    the prediction c²/(3ν_eff) (purple); one line style per medium. Plateau results only."""
    ax = axes[0]
    styles = ("--", ":", "-.")
    for k, (medium, by_energy) in enumerate(media.items()):
        ls = styles[k % len(styles)]
        energies = np.array(sorted(by_energy))
        cols = [summary_columns(by_energy[e]) for e in energies]
        kh = np.array([c["kappa_H_par_cm2_s"] for c in cols])
        ka = np.array([c["kappa_A_par_cm2_s"] for c in cols])
        ok = np.isfinite(kh) & np.isfinite(ka)
        if np.any(ok):
            ax.fill_between(energies[ok], kh[ok], ka[ok], color="0.6", alpha=0.25, lw=0,
                            label=rf"{medium}: $\kappa_H$–$\kappa_A$")
            ax.plot(energies[ok], kh[ok], color="0.3", lw=0.8, ls=ls)
            ax.plot(energies[ok], ka[ok], color="0.3", lw=0.8, ls=ls)
        sub = np.array([c["D_par_subgrid_cm2_s"] for c in cols])
        if np.any(np.isfinite(sub)):
            ax.plot(energies, sub, color="tab:purple", ls=ls, lw=1.2,
                    label=rf"{medium}: $c^2/3\nu_{{\rm eff}}$")
    ax.legend(fontsize=5, frameon=False, ncol=1, loc="best")
