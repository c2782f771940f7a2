r"""Galactic implications of the measured diffusion coefficients: ``results/implications.csv``.

What the D∥, D⊥ measured in a (100 pc) box would mean if they held over the Galaxy
(paper §4.2; Mertsch 2026, GSSI colloquium slides "Slab model", "Anisotropy", "SNR
paradigm"; Kempski & Quataert 2022, MNRAS, §2). Each row is one (medium, energy) of
``transport_summary.csv``; every number carries the interval propagated from the bootstrap
intervals of the D's it uses. The assumptions are config keys (block ``implications``) and
are repeated in every row, so the table says what it assumed:

* ``halo_height_pc`` H — the CR halo's half height (z_max; slides: 5 kpc)
* ``gradient_length_pc`` L — length over which the CR density changes by e (n/|∇n|)
* ``mean_density_cm3`` n̄ — mean hydrogen density along CR paths in the halo [cm⁻³]
* ``mean_mass_amu`` m̄ — gas mass per hydrogen atom [u] (1.4 with helium)
* ``source_age_yr`` t — age of a TeV–PeV halo source (Geminga ≈ 3.4e5 yr)
* ``vertical_coefficient`` — which measured D is D_zz: ``perp`` (the mean field lies in the
  disk plane, the usual case), ``par`` (a vertical field) or ``isotropic`` ((D∥ + 2D⊥)/3)

Formulas (each assumes diffusion holds on the scale it is applied to, v = c):

residence time
    t_res = H² / (2 D_zz): the time to diffuse to the halo boundary (slides, "The number of
    sources contributing": t_esc = z_max²/(2κ)).
grammage
    X = m̄ m_u n̄ c t_res [g cm⁻²]: column of gas crossed while confined (slides, "Slab
    model": X = v ρ̄ t_esc).
dipole anisotropy
    δ = 3 D / (c L) for the D along the gradient: the diffusive flux −D∇n over c n/3 (the
    isotropic part of the flux of a nearly isotropic distribution; Skilling 1975; Kempski &
    Quataert Eq. 16). Given for both D∥ (gradient along the field) and D⊥ (across it).
halo aspect ratio
    A = √(D∥/D⊥): a point source's CR density is a Gaussian of variance 2D∥t along the mean
    field and 2D⊥t per perpendicular axis (D⊥ = ⟨|Δr⊥|²⟩/(4t) is per axis), so its
    iso-density surfaces are spheroids with this axis ratio at every age (paper §4.2.1);
    the radii R∥ = √(2D∥t), R⊥ = √(2D⊥t) at the source age are given too.

Intervals: every quantity is monotonic in each D, so its interval is the quantity at the ends
of the D intervals (for A the two D's at opposite ends: conservative, as if independent errors
conspired). Rows without a diffusive plateau give NaN.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cosmicflow.constants import C_CM_S, M_U, PC_CM, YR_S
from cosmicflow.io import InputError, atomic_output

__all__ = [
    "ImplicationParams",
    "residence_time_yr",
    "grammage_g_cm2",
    "dipole_anisotropy",
    "halo_aspect_ratio",
    "halo_radius_pc",
    "vertical_coefficient",
    "implications_table",
    "write_implications",
]

VERTICAL = ("perp", "par", "isotropic")


@dataclass(frozen=True)
class ImplicationParams:
    """Assumptions of the implications (config block ``implications``; units in the names)."""

    halo_height_pc: float = 5000.0
    gradient_length_pc: float = 1000.0
    mean_density_cm3: float = 0.02
    mean_mass_amu: float = 1.4
    source_age_yr: float = 3.4e5
    vertical_coefficient: str = "perp"

    def __post_init__(self) -> None:
        for f in ("halo_height_pc", "gradient_length_pc", "mean_density_cm3", "mean_mass_amu",
                  "source_age_yr"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ValueError(f"implications.{f} must be a finite number > 0, got {v!r}")
        if self.vertical_coefficient not in VERTICAL:
            raise ValueError(f"implications.vertical_coefficient must be one of {VERTICAL}, "
                             f"got {self.vertical_coefficient!r}")

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> ImplicationParams:
        section = dict(section or {})
        unknown = sorted(set(section) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"implications config: unknown key(s) {unknown}")
        return cls(**section)


def residence_time_yr(d_zz_cm2_s: float | np.ndarray, halo_height_pc: float) -> np.ndarray:
    r"""t_res = H²/(2 D_zz) [yr], with H [pc] and D_zz [cm² s⁻¹]."""
    d = np.asarray(d_zz_cm2_s, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, (halo_height_pc * PC_CM) ** 2 / (2.0 * d) / YR_S, np.nan)


def grammage_g_cm2(residence_yr: float | np.ndarray, mean_density_cm3: float,
                   mean_mass_amu: float = 1.4) -> np.ndarray:
    r"""X = m̄ m_u n̄ c t_res [g cm⁻²] for t_res [yr], n̄ [cm⁻³], m̄ [u]."""
    return mean_mass_amu * M_U * mean_density_cm3 * C_CM_S * np.asarray(residence_yr, float) * YR_S


def dipole_anisotropy(d_cm2_s: float | np.ndarray, gradient_length_pc: float) -> np.ndarray:
    r"""δ = 3D/(c L) [1] for D [cm² s⁻¹] along a gradient of length L [pc]."""
    return 3.0 * np.asarray(d_cm2_s, dtype=np.float64) / (C_CM_S * gradient_length_pc * PC_CM)


def halo_aspect_ratio(d_par: float | np.ndarray, d_perp: float | np.ndarray) -> np.ndarray:
    r"""A = √(D∥/D⊥) [1] of the iso-density spheroids around a point source."""
    a, b = np.asarray(d_par, float), np.asarray(d_perp, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((a > 0) & (b > 0), np.sqrt(a / b), np.nan)


def halo_radius_pc(d_cm2_s: float | np.ndarray, age_yr: float) -> np.ndarray:
    r"""R = √(2 D t) [pc]: one-axis rms distance after age t [yr] at D [cm² s⁻¹]."""
    d = np.asarray(d_cm2_s, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(d >= 0, np.sqrt(2.0 * d * age_yr * YR_S) / PC_CM, np.nan)


def vertical_coefficient(d_par, d_perp, which: str) -> np.ndarray:
    """D_zz [cm² s⁻¹] from D∥, D⊥ under the assumed mean-field orientation (module docstring)."""
    if which == "perp":
        return np.asarray(d_perp, float)
    if which == "par":
        return np.asarray(d_par, float)
    if which == "isotropic":
        return (np.asarray(d_par, float) + 2.0 * np.asarray(d_perp, float)) / 3.0
    raise ValueError(f"vertical_coefficient must be one of {VERTICAL}, got {which!r}")


_NEEDED = ("medium", "energy_PeV", "injection", "D_par_cm2_s", "D_par_lo_cm2_s", "D_par_hi_cm2_s",
           "D_perp_cm2_s", "D_perp_lo_cm2_s", "D_perp_hi_cm2_s")


def implications_table(summary: pd.DataFrame, params: ImplicationParams) -> pd.DataFrame:
    """The implications of every isotropic row of a transport summary (module docstring).

    Columns: medium, energy_PeV, the D's used, then for each quantity its value and ``_lo``,
    ``_hi`` bounds: ``D_zz_cm2_s``, ``residence_time_yr``, ``grammage_g_cm2``,
    ``anisotropy_par``, ``anisotropy_perp``, ``halo_aspect_ratio``, ``halo_radius_par_pc``,
    ``halo_radius_perp_pc``; then the assumptions (one column per key).
    """
    missing = [c for c in _NEEDED if c not in summary.columns]
    if missing:
        raise InputError(f"transport summary lacks column(s) {missing}")
    s = summary[summary["injection"] == "isotropic"].reset_index(drop=True)
    p = params
    out = pd.DataFrame({"medium": s["medium"], "energy_PeV": s["energy_PeV"]})
    d = {c: {b: s[f"D_{c}{'' if b == '' else '_' + b}_cm2_s"].to_numpy(float) for b in ("", "lo", "hi")}
         for c in ("par", "perp")}
    for c in ("par", "perp"):
        for b in ("", "lo", "hi"):
            out[f"D_{c}{'_' + b if b else ''}_cm2_s"] = d[c][b]
    for b in ("", "lo", "hi"):
        sfx = f"_{b}" if b else ""
        dzz = vertical_coefficient(d["par"][b], d["perp"][b], p.vertical_coefficient)
        out[f"D_zz{sfx}_cm2_s"] = dzz
    # t_res and X decrease with D_zz: their lower bound comes from the upper D bound
    for b, db in (("", ""), ("lo", "hi"), ("hi", "lo")):
        sfx = f"_{b}" if b else ""
        t = residence_time_yr(out[f"D_zz{'_' + db if db else ''}_cm2_s"].to_numpy(), p.halo_height_pc)
        out[f"residence_time{sfx}_yr"] = t
        out[f"grammage{sfx}_g_cm2"] = grammage_g_cm2(t, p.mean_density_cm3, p.mean_mass_amu)
    for c in ("par", "perp"):
        for b in ("", "lo", "hi"):
            sfx = f"_{b}" if b else ""
            out[f"anisotropy_{c}{sfx}"] = dipole_anisotropy(d[c][b], p.gradient_length_pc)
    out["halo_aspect_ratio"] = halo_aspect_ratio(d["par"][""], d["perp"][""])
    out["halo_aspect_ratio_lo"] = halo_aspect_ratio(d["par"]["lo"], d["perp"]["hi"])
    out["halo_aspect_ratio_hi"] = halo_aspect_ratio(d["par"]["hi"], d["perp"]["lo"])
    for c in ("par", "perp"):
        for b in ("", "lo", "hi"):
            sfx = f"_{b}" if b else ""
            out[f"halo_radius_{c}{sfx}_pc"] = halo_radius_pc(d[c][b], p.source_age_yr)
    for k, v in asdict(p).items():
        out[f"assumed_{k}"] = v
    return out


def write_implications(summary_csv: str | os.PathLike, output: str | os.PathLike,
                       params: ImplicationParams | Mapping[str, Any] | None = None) -> Path:
    """Read ``transport_summary.csv``, write ``implications.csv`` atomically."""
    if not isinstance(params, ImplicationParams):
        params = ImplicationParams.from_config(params)
    try:
        summary = pd.read_csv(summary_csv)
    except (OSError, pd.errors.ParserError) as err:
        raise InputError(f"{summary_csv}: cannot read the transport summary ({err})") from err
    try:
        table = implications_table(summary, params)
    except InputError as err:
        raise InputError(f"{summary_csv}: {err}") from None
    with atomic_output(output) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return Path(output)

