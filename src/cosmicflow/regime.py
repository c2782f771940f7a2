"""Regime diagnostics: can the numbers of one run carry the meaning the paper gives them?

The paper (§2.3) sets r_L = 10–100 grid cells, so that gyration is resolved and particles
resonate with structure between the dissipation and the driving scale, traces them for 1000
gyro-periods and quotes D∥, D⊥ as properties of the medium. On a coarse snapshot, or at an
energy outside that window, the same pipeline still produces numbers; this module says, per
(medium, energy, injection), whether they mean what the paper says, with a flag and a
plain-language caveat for each test:

* ``rl_unresolved``   r_L/Δx < ``min_rl_cells`` at B_ref *or* at the median |B|
  (r_L(B) = r_L(B_ref) B_ref / B, Δx the smallest cell edge): the grid does not resolve
  the gyration, the field is smooth on the gyro-scale (trilinear interpolation).
* ``rl_above_lc``     r_L(B_ref)/ℓ_c > 1 with ℓ_c the correlation length of the fluctuating
  field δB = B − ⟨B⟩ measured from the snapshot (:func:`correlation_length`): the particle
  averages over many correlation cells per gyration (quasi-ballistic, not resonant).
* ``mfp_box_limited`` λ∥ = 3 D∥ / c above ``max_mfp_over_box`` box lengths L: the periodic
  box, not the medium, limits parallel transport.
* ``no_nonadiabatic`` fraction of particle time with ε = |∇B| r_L / B > 1 below
  ``min_eps_gt1_fraction`` (from the batches' ``hist_epsilon``, sampled at a fixed cadence
  along trajectories, so a fraction of samples is a fraction of time): the field-gradient
  (non-adiabatic) scattering the paper invokes cannot act.
* ``duration_short``  run duration T below ``min_duration_over_scattering_time`` scattering
  times τ = λ∥/c = 3 D∥/c²: diffusion has not had time to establish.

λ∥ and τ use the plateau D∥ when there is one, else the running D∥ at the last output time
(``mfp_basis`` says which; for a still-rising D(t) that running value is a lower bound on D∥,
so a box-limited or too-short verdict from it stands).

References: Casse, Lemoine & Pelletier 2002, PRD 65, 023002 (r_L against the correlation
length, box-limited mean free paths); Giacalone & Jokipii 1999, ApJ 520, 204 (resolution
of r_L against the grid and the turbulence scales).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from cosmicflow.constants import C_CM_S, PC_CM
from cosmicflow.io import InputError, atomic_output

__all__ = [
    "FLAGS",
    "RegimeThresholds",
    "correlation_length",
    "field_statistics",
    "write_field_statistics",
    "read_field_statistics",
    "fraction_above",
    "diagnose",
]

#: the flags, in the order of the summary columns ``flag_<name>``
FLAGS = ("rl_unresolved", "rl_above_lc", "mfp_box_limited", "no_nonadiabatic", "duration_short")
#: keys of a field-statistics file (results/{medium}/field_statistics.json)
FIELD_STATISTICS_KEYS = ("cell_pc", "box_pc", "median_B_uG", "rms_dB_uG",
                         "correlation_length_pc", "correlation_length_axes_pc", "fft_stride")


@dataclass(frozen=True)
class RegimeThresholds:
    """Thresholds of the regime flags (config ``transport.regime``; see the module docstring).

    Attributes
    ----------
    min_rl_cells : float
        Smallest r_L/Δx [cells] called resolved (the paper: 10–100).
    max_mfp_over_box : float
        Largest λ∥/L [1] not called box-limited.
    min_eps_gt1_fraction : float
        Smallest fraction of particle time with ε > 1 [1] for non-adiabatic scattering to act.
    min_duration_over_scattering_time : float
        Smallest run duration in scattering times T/(λ∥/c) [1].
    """

    min_rl_cells: float = 10.0
    max_mfp_over_box: float = 1.0
    min_eps_gt1_fraction: float = 0.01
    min_duration_over_scattering_time: float = 10.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"transport.regime.{f.name} must be a number > 0, got {v!r}")

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> RegimeThresholds:
        section = dict(section or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"transport.regime config: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: float(v) for k, v in section.items()})

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --------------------------------------------------------------------------------------------
# Field statistics of a snapshot (cached per medium)


def _integral_to_first_zero(c: np.ndarray, dx: float) -> float:
    """∫_0^{r0} c(r) dr (trapezoid, spacing dx) up to the first zero r0 of c (linear root),
    or to the last lag given (half the box) when c stays positive."""
    neg = np.flatnonzero(c <= 0)
    if neg.size == 0:
        return float(np.trapezoid(c, dx=dx))
    i = int(neg[0])
    head = float(np.trapezoid(c[:i], dx=dx)) if i >= 2 else 0.0
    # the piece from lag i-1 to the root between i-1 and i
    frac = c[i - 1] / (c[i - 1] - c[i])
    return head + 0.5 * c[i - 1] * frac * dx


def correlation_length(
    b: tuple[np.ndarray, np.ndarray, np.ndarray], cell_pc: np.ndarray, max_cells: int = 256
) -> tuple[float, np.ndarray, int]:
    r"""Correlation length ℓ_c [pc] of the fluctuating field δB = B − ⟨B⟩ by FFT.

    The autocorrelation C(r) = Σ_c ⟨δB_c(x) δB_c(x + r)⟩ / Σ_c ⟨δB_c²⟩ of the periodic field
    is the inverse FFT of the power spectrum (Wiener–Khinchin); along each axis a

    .. math:: \ell_a = \int_0^{r_0} C(r\,\hat e_a)\,dr

    up to the first zero r_0 of C (or half the box), and ℓ_c = (ℓ_x + ℓ_y + ℓ_z)/3
    (Matthaeus et al. 2005, PRL 95, 231101, for the integral of the correlation function).
    Grids larger than ``max_cells`` per side are sampled every ``stride`` cells first (the
    integral scale is set by the large scales). Returns (ℓ_c, (ℓ_x, ℓ_y, ℓ_z), stride).
    """
    shape = np.asarray(b[0].shape)
    stride = int(max(1, math.ceil(shape.max() / max_cells)))
    power = None
    for comp in b:
        f = np.asarray(comp[::stride, ::stride, ::stride], dtype=np.float64)
        f = f - f.mean()
        spec = np.abs(np.fft.rfftn(f)) ** 2
        power = spec if power is None else power + spec
        del f, spec
    sub = tuple(int(s) for s in np.ceil(shape / stride).astype(int))
    corr = np.fft.irfftn(power, s=sub, axes=(0, 1, 2))
    if not corr[0, 0, 0] > 0:
        raise ValueError("correlation_length: the field has no fluctuations (δB = 0)")
    corr /= corr[0, 0, 0]
    dx = np.asarray(cell_pc, float) * stride
    lines = (corr[: sub[0] // 2 + 1, 0, 0], corr[0, : sub[1] // 2 + 1, 0], corr[0, 0, : sub[2] // 2 + 1])
    axes = np.array([_integral_to_first_zero(c, d) for c, d in zip(lines, dx)])
    return float(axes.mean()), axes, stride


def field_statistics(snap, max_cells: int = 256) -> dict[str, Any]:
    """Cell, box, median |B| [µG], rms δB [µG] and the correlation length [pc] of a Snapshot."""
    b = tuple(snap[c] for c in ("bx", "by", "bz"))
    babs = np.sqrt(sum(np.asarray(c, dtype=np.float64) ** 2 for c in b))
    mean = np.array([float(np.mean(c, dtype=np.float64)) for c in b])
    rms_db = math.sqrt(sum(float(np.mean((np.asarray(c, np.float64) - m) ** 2)) for c, m in zip(b, mean)))
    lc, axes, stride = correlation_length(b, snap.cell_pc, max_cells)
    return {
        "cell_pc": float(np.min(snap.cell_pc)),
        "box_pc": float(np.min(snap.box_pc)),
        "median_B_uG": float(np.median(babs)),
        "rms_dB_uG": rms_db,
        "correlation_length_pc": lc,
        "correlation_length_axes_pc": axes.tolist(),
        "fft_stride": stride,
    }


def write_field_statistics(snapshot: str | os.PathLike, output: str | os.PathLike,
                           max_cells: int = 256) -> Path:
    """Compute :func:`field_statistics` of a canonical snapshot and write them as JSON."""
    from cosmicflow.snapshot import read_snapshot

    stats = field_statistics(read_snapshot(snapshot, validate=False), max_cells)
    stats["snapshot"] = str(snapshot)
    with atomic_output(output) as tmp:
        Path(tmp).write_text(json.dumps(stats, indent=1))
    return Path(output)


def read_field_statistics(path: str | os.PathLike) -> dict[str, Any]:
    """Read a field-statistics JSON file; a missing key raises InputError naming it."""
    try:
        stats = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read field statistics ({err})") from err
    missing = [k for k in FIELD_STATISTICS_KEYS if k not in stats]
    if missing:
        raise InputError(f"{path}: field statistics lack {missing}")
    return stats


# --------------------------------------------------------------------------------------------
# Along-trajectory adiabaticity


def fraction_above(counts: np.ndarray, edges: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    """Fraction of histogram samples above ``threshold`` along the last axis of ``counts``.

    ``edges`` are the (log-spaced) bin edges; a bin holding the threshold contributes the
    log-linear share above it. Values outside the edges sit in the first/last bin (the
    integrator's convention). Returns counts.shape[:-1] fractions (NaN where no samples).
    """
    c = np.asarray(counts, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    if c.shape[-1] != e.size - 1:
        raise ValueError(f"fraction_above: {c.shape[-1]} bins but {e.size} edges")
    lo, hi = np.log(e[:-1]), np.log(e[1:])
    share = np.clip((hi - math.log(threshold)) / (hi - lo), 0.0, 1.0)
    share[-1] = 1.0 if e[-2] >= threshold else share[-1]  # overflow bin lies above its lower edge
    total = c.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (c * share).sum(axis=-1) / total, np.nan)


# --------------------------------------------------------------------------------------------
# The diagnosis


def diagnose(
    *,
    larmor_radius_pc: float,
    b_ref_uG: float,
    duration_s: float,
    d_par_cm2_s: float,
    mfp_basis: str,
    eps_gt1_fraction: float,
    field_stats: Mapping[str, Any] | None,
    thresholds: RegimeThresholds | None = None,
) -> dict[str, Any]:
    """Diagnostic numbers, flags and caveats of one run (module docstring).

    Parameters
    ----------
    larmor_radius_pc : r_L at B_ref [pc]
    b_ref_uG : B_ref [µG]
    duration_s : run duration [s]
    d_par_cm2_s : D∥ [cm^2 s^-1] for λ∥ and τ (plateau, else running at t_end; NaN = unknown)
    mfp_basis : "plateau" or "running D(t_end)" (which D∥ was given)
    eps_gt1_fraction : fraction of particle time with ε > 1 (NaN = not recorded)
    field_stats : :func:`field_statistics` of the medium, or None when not available

    Returns a flat dict: numbers (``rl_over_dx_ref``, ``rl_over_dx_median_B``,
    ``rl_over_lc``, ``lc_pc``, ``mfp_par_pc``, ``mfp_par_over_box``, ``scattering_time_s``,
    ``duration_over_scattering_time``, ``eps_gt1_fraction``, ``mfp_basis``), one bool
    ``flag_<name>`` per :data:`FLAGS` (False when the input needed is missing), ``caveats``
    (plain-language sentences joined by " | ") and ``regime_ok`` (no flag raised).
    """
    th = thresholds or RegimeThresholds()
    nan = math.nan
    fs = dict(field_stats or {})
    cell = float(fs.get("cell_pc", nan))
    box = float(fs.get("box_pc", nan))
    b_med = float(fs.get("median_B_uG", nan))
    lc = float(fs.get("correlation_length_pc", nan))
    rl = float(larmor_radius_pc)
    rl_med = rl * b_ref_uG / b_med if b_med > 0 else nan
    mfp_pc = 3.0 * d_par_cm2_s / C_CM_S / PC_CM if d_par_cm2_s > 0 else nan
    tau = 3.0 * d_par_cm2_s / C_CM_S**2 if d_par_cm2_s > 0 else nan
    out: dict[str, Any] = {
        "cell_pc": cell,
        "box_pc": box,
        "median_B_uG": b_med,
        "lc_pc": lc,
        "rl_over_dx_ref": rl / cell,
        "rl_over_dx_median_B": rl_med / cell,
        "rl_over_lc": rl / lc,
        "mfp_par_pc": mfp_pc,
        "mfp_par_over_box": mfp_pc / box,
        "mfp_basis": mfp_basis,
        "scattering_time_s": tau,
        "duration_over_scattering_time": duration_s / tau,
        "eps_gt1_fraction": float(eps_gt1_fraction),
    }
    caveats: list[str] = []

    def ok(x: float) -> bool:
        return math.isfinite(x)

    rl_cells = min(out["rl_over_dx_ref"], out["rl_over_dx_median_B"])
    flags = {
        "rl_unresolved": ok(rl_cells) and rl_cells < th.min_rl_cells,
        "rl_above_lc": ok(out["rl_over_lc"]) and out["rl_over_lc"] > 1.0,
        "mfp_box_limited": ok(out["mfp_par_over_box"]) and out["mfp_par_over_box"] > th.max_mfp_over_box,
        "no_nonadiabatic": ok(out["eps_gt1_fraction"]) and out["eps_gt1_fraction"] < th.min_eps_gt1_fraction,
        "duration_short": ok(out["duration_over_scattering_time"])
        and out["duration_over_scattering_time"] < th.min_duration_over_scattering_time,
    }
    if flags["rl_unresolved"]:
        caveats.append(
            f"r_L is only {out['rl_over_dx_ref']:.2g} cells at B_ref and "
            f"{out['rl_over_dx_median_B']:.2g} at the median |B| (< {th.min_rl_cells:g}): the grid "
            "does not resolve the gyration, so the small-scale scattering of the paper cannot act"
        )
    if flags["rl_above_lc"]:
        caveats.append(
            f"r_L is {out['rl_over_lc']:.2g} correlation lengths (l_c = {lc:.3g} pc): particles "
            "average over many field cells per gyration (quasi-ballistic, not resonant scattering)"
        )
    if flags["mfp_box_limited"]:
        caveats.append(
            f"lambda_par = 3 D_par/c = {mfp_pc:.3g} pc is {out['mfp_par_over_box']:.2g} box lengths "
            f"({mfp_basis}): the periodic box, not the medium, limits parallel transport"
        )
    if flags["no_nonadiabatic"]:
        caveats.append(
            f"only {100 * out['eps_gt1_fraction']:.2g} % of particle time has epsilon = |grad B| r_L/B > 1: "
            "the non-adiabatic (field-gradient) scattering of the paper is absent"
        )
    if flags["duration_short"]:
        caveats.append(
            f"the run lasts {out['duration_over_scattering_time']:.2g} scattering times lambda_par/c "
            f"(< {th.min_duration_over_scattering_time:g}; {mfp_basis}): diffusion is not established"
        )
    if not fs:
        caveats.append("no field statistics of the medium: r_L/dx, r_L/l_c and lambda_par/L not checked")
    if not ok(out["eps_gt1_fraction"]):
        caveats.append("no epsilon histogram in the batches: the fraction with epsilon > 1 is unknown")
    out.update({f"flag_{k}": bool(v) for k, v in flags.items()})
    out["regime_ok"] = not any(flags.values())
    out["caveats"] = " | ".join(caveats)
    return out
