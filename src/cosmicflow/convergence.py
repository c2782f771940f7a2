"""Numerical convergence of the headline transport numbers (target ``convergence``, issue 12).

For chosen (medium, energy) pairs the isotropic run is repeated with one numerical choice
changed at a time, and each headline number X ∈ {D∥, D⊥, D_μμ/Ω} is compared with the
baseline run made the same way:

=====================  ====================================================================
test                   change against the baseline
=====================  ====================================================================
``half_step``          both step limits halved: ``max_rotation_rad`` and ``max_step_cells``
``double_particles``   twice the particles (a new draw: independent of the baseline)
``double_duration``    twice ``duration_gyroperiods`` (the late window moves with it)
``downsample``         the medium block-averaged ×2 (:func:`cosmicflow.downsample.downsample_snapshot`)
=====================  ====================================================================

The baseline and every test use the same seed, so half_step and double_duration follow the
same particles from the same start (paired: their difference is mostly the numerical change).

Verdict of one (test, X), with the relative change r = (X_test − X_base)/X_base and its
68 % uncertainty σ_r = √(σ_base² + σ_test²)/|X_base| (σ = half-width of the combined 68 %
interval of :mod:`cosmicflow.transport`; for paired runs this overstates σ_r, so "not
converged" is conservative):

* ``converged``     |r| <= ``rel_tolerance``;
* ``not converged`` |r| > ``rel_tolerance`` and |r| > ``n_sigma`` σ_r (a large, significant change);
* ``inconclusive``  |r| > ``rel_tolerance`` but within ``n_sigma`` σ_r (errors too large to tell);
* ``no plateau``    X is NaN in the baseline or the test (the regime says why; no running value
  is substituted).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from cosmicflow.io import InputError, atomic_output, load_netcdf

log = logging.getLogger(__name__)

__all__ = ["TESTS", "VARIANTS", "QUANTITIES", "ConvergenceParams", "variant_settings", "run_variant",
           "headline", "compare", "convergence_table", "plot_convergence", "write_report"]

#: the numerical tests, in table order
TESTS = ("half_step", "double_particles", "double_duration", "downsample")
#: every run of a (medium, energy): the baseline and the tests
VARIANTS = ("baseline",) + TESTS
#: headline numbers compared: (column prefix, result variable, label)
QUANTITIES = (("D_par", "D_par_combined", r"$D_\parallel$"),
              ("D_perp", "D_perp_combined", r"$D_\perp$"),
              ("D_mumu_over_omega", "D_mumu_over_omega_early", r"$D_{\mu\mu}/\Omega$"))


@dataclass(frozen=True)
class ConvergenceParams:
    """The ``convergence`` config block (schema: workflow/schemas/config.schema.yaml).

    Attributes
    ----------
    media : list of str
        Media to test (empty: every configured medium).
    energies_PeV : list of float
        Energies [PeV] to test.
    tests : list of str
        Subset of :data:`TESTS`.
    particles_per_energy : int or None
        Baseline particles (None: ``integrate.particles_per_energy``); double_particles uses 2×.
    rel_tolerance : float
        Largest relative change [1] called converged.
    n_sigma : float
        Significance [σ] beyond which a change larger than the tolerance is "not converged".
    """

    media: tuple[str, ...] = ()
    energies_PeV: tuple[float, ...] = (1.5, 15.0)
    tests: tuple[str, ...] = TESTS
    particles_per_energy: int | None = None
    rel_tolerance: float = 0.1
    n_sigma: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "media", tuple(str(m) for m in self.media))
        object.__setattr__(self, "energies_PeV", tuple(float(e) for e in self.energies_PeV))
        object.__setattr__(self, "tests", tuple(str(t) for t in self.tests))
        bad = [t for t in self.tests if t not in TESTS]
        if bad:
            raise ValueError(f"convergence.tests: unknown test(s) {bad}; known: {list(TESTS)}")
        if not all(e > 0 for e in self.energies_PeV):
            raise ValueError(f"convergence.energies_PeV must be > 0, got {list(self.energies_PeV)}")
        if self.particles_per_energy is not None and int(self.particles_per_energy) < 2:
            raise ValueError("convergence.particles_per_energy must be >= 2 (or null)")
        if not (self.rel_tolerance > 0 and self.n_sigma > 0):
            raise ValueError("convergence.rel_tolerance and n_sigma must be > 0")

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> ConvergenceParams:
        section = dict(section or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"convergence config: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**section)


def variant_settings(settings, variant: str, n_particles: int):
    """(IntegrateSettings, particles) of one variant from the baseline's (module docstring).

    ``downsample`` changes the medium, not the settings.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown convergence variant {variant!r}; known: {list(VARIANTS)}")
    if variant == "half_step":
        return dataclasses.replace(settings, max_rotation_rad=settings.max_rotation_rad / 2,
                                   max_step_cells=settings.max_step_cells / 2), n_particles
    if variant == "double_duration":
        return dataclasses.replace(settings, duration_gyroperiods=2 * settings.duration_gyroperiods), n_particles
    if variant == "double_particles":
        return settings, 2 * n_particles
    return settings, n_particles


def run_variant(
    snapshot: str | os.PathLike,
    output: str | os.PathLike,
    *,
    medium: str,
    energy_pev: float,
    variant: str,
    config: Mapping[str, Any],
    n_particles: int,
    field_cache: str | os.PathLike | None = None,
) -> Path:
    """Integrate one isotropic batch of a variant and write its transport result ``output``.

    ``config`` is the workflow config (sections particles, integrate, phases, transport);
    ``snapshot`` is the medium's snapshot (the downsampled one for ``downsample``). The batch
    is written next to ``output`` (``<output stem>_b0.h5``) and kept for inspection.
    """
    from cosmicflow.integrate import IntegrateSettings, integrate_batch
    from cosmicflow.transport import write_transport

    base = IntegrateSettings.from_config(config, "isotropic")
    settings, n = variant_settings(base, variant, int(n_particles))
    output = Path(output)
    batch = output.with_name(output.stem + "_b0.h5")
    log.info("convergence %s E=%g PeV %s: %d particles, %g gyro-periods, rotation %g rad, step %g cells",
             medium, energy_pev, variant, n, settings.duration_gyroperiods, settings.max_rotation_rad,
             settings.max_step_cells)
    integrate_batch(snapshot, batch, energy_pev=float(energy_pev), n_particles=n, injection="isotropic",
                    batch=0, medium=medium, settings=settings, config=config, progress=False,
                    field_cache=field_cache)
    write_transport([batch], output, config.get("transport", {}),
                    config={"convergence_variant": variant, "medium": medium, "energy_PeV": energy_pev})
    return output


def headline(result: xr.Dataset) -> dict[str, tuple[float, float, str]]:
    """{quantity: (value, σ [half-width of the 68 % interval], regime)} of a transport result."""
    out = {}
    for prefix, var, _ in QUANTITIES:
        value = float(result[var])
        interval = result[f"{var}_interval"].values
        sigma = 0.5 * float(interval[1] - interval[0])
        key = "D_mumu_regime" if prefix == "D_mumu_over_omega" else f"{prefix}_regime"
        regime = str(result.attrs.get(key, ""))
        out[prefix] = (value, sigma, regime)
    return out


def compare(base: Mapping[str, tuple[float, float, str]], test: Mapping[str, tuple[float, float, str]],
            params: ConvergenceParams) -> dict[str, dict[str, Any]]:
    """Relative change, its σ and the verdict with its reason, per quantity (module docstring)."""
    out = {}
    for q in base:
        vb, sb, rb = base[q]
        vt, st, rt = test[q]
        if not (math.isfinite(vb) and math.isfinite(vt)) or vb == 0:
            which = "baseline" if not math.isfinite(vb) else "test"
            regime = rb if which == "baseline" else rt
            out[q] = {"change": math.nan, "change_sigma": math.nan, "verdict": "no plateau",
                      "reason": f"no value in the {which} run (regime {regime or 'unknown'})"}
            continue
        r = (vt - vb) / vb
        sig = math.hypot(sb, st) / abs(vb) if math.isfinite(sb) and math.isfinite(st) else math.nan
        if abs(r) <= params.rel_tolerance:
            verdict = "converged"
            reason = f"change {100 * r:+.1f} % within ±{100 * params.rel_tolerance:g} %"
        elif math.isfinite(sig) and abs(r) > params.n_sigma * sig:
            verdict = "not converged"
            reason = f"change {100 * r:+.1f} % = {abs(r) / sig:.1f} sigma, beyond ±{100 * params.rel_tolerance:g} %"
        else:
            verdict = "inconclusive"
            reason = f"change {100 * r:+.1f} % but only {abs(r) / sig:.1f} sigma: errors too large to tell"
        out[q] = {"change": r, "change_sigma": sig, "verdict": verdict, "reason": reason}
    return out


def _read(path: str | os.PathLike) -> xr.Dataset:
    try:
        return load_netcdf(path)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read a transport result ({err})") from err


def convergence_table(runs: Mapping[tuple[str, float, str], str | os.PathLike],
                      params: ConvergenceParams) -> pd.DataFrame:
    """One row per (medium, energy, test, quantity) from {(medium, energy, variant): result path}."""
    rows = []
    pairs = sorted({(m, e) for m, e, _ in runs})
    for medium, energy in pairs:
        key = (medium, energy, "baseline")
        if key not in runs:
            raise InputError(f"convergence: no baseline run for {medium} at {energy:g} PeV")
        base_ds = _read(runs[key])
        base = headline(base_ds)
        for test in TESTS:
            if (medium, energy, test) not in runs:
                continue
            test_ds = _read(runs[(medium, energy, test)])
            verdicts = compare(base, headline(test_ds), params)
            for prefix, _, _ in QUANTITIES:
                v = verdicts[prefix]
                rows.append({
                    "medium": medium, "energy_PeV": energy, "test": test, "quantity": prefix,
                    "baseline": base[prefix][0], "baseline_sigma": base[prefix][1],
                    "baseline_regime": base[prefix][2],
                    "test_value": headline(test_ds)[prefix][0], "test_sigma": headline(test_ds)[prefix][1],
                    "test_regime": headline(test_ds)[prefix][2],
                    "rel_change": v["change"], "rel_change_sigma": v["change_sigma"],
                    "verdict": v["verdict"], "reason": v["reason"],
                    "n_particles_baseline": int(base_ds.attrs.get("n_particles", 0)),
                    "n_particles_test": int(test_ds.attrs.get("n_particles", 0)),
                    "regime_caveats_baseline": str(base_ds.attrs.get("caveats", "")),
                })
    return pd.DataFrame(rows)


VERDICT_MARKERS = {"converged": ("o", True), "inconclusive": ("o", False), "not converged": ("X", True)}


def plot_convergence(table: pd.DataFrame, params: ConvergenceParams):
    """Relative change of each headline number under each test, with 68 % error bars, the
    ±rel_tolerance band, markers by verdict, and "no plateau" written where there is no value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, len(QUANTITIES), figsize=(7.0, 3.2), sharey=True, constrained_layout=True)
    groups = sorted({(m, e) for m, e in zip(table["medium"], table["energy_PeV"])})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    x_of = {t: i for i, t in enumerate(TESTS)}
    width = 0.7 / max(1, len(groups))
    for ax, (prefix, _, label) in zip(axes, QUANTITIES):
        ax.axhspan(-100 * params.rel_tolerance, 100 * params.rel_tolerance, color="0.9", lw=0)
        ax.axhline(0, color="0.5", lw=0.6)
        sub = table[table["quantity"] == prefix]
        for g, (medium, energy) in enumerate(groups):
            rows = sub[(sub["medium"] == medium) & (sub["energy_PeV"] == energy)]
            for _, row in rows.iterrows():
                x = x_of[row["test"]] - 0.35 + width * (g + 0.5)
                if row["verdict"] == "no plateau":
                    ax.plot([x], [0], marker="d", ls="none", ms=5, markerfacecolor="white",
                            markeredgecolor=colors[g % len(colors)], gid=f"no plateau|{prefix}")
                    continue
                marker, filled = VERDICT_MARKERS[row["verdict"]]
                color = colors[g % len(colors)]
                ax.errorbar([x], [100 * row["rel_change"]], yerr=[100 * row["rel_change_sigma"]], fmt="none",
                            ecolor=color, capsize=2, lw=0.8)
                ax.plot([x], [100 * row["rel_change"]], marker=marker, ls="none", ms=5, color=color,
                        markerfacecolor=color if filled else "white", gid=f"{row['verdict']}|{prefix}")
        ax.set_xticks(range(len(TESTS)))
        ax.set_xticklabels(["half step", "2x particles", "2x duration", "grid / 2"], fontsize=6, rotation=30)
        ax.set_xlim(-0.5, len(TESTS) - 0.5)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    axes[0].set_ylabel("change against the baseline [%]", fontsize=8)
    handles = [Line2D([], [], color=colors[g % len(colors)], marker="s", ls="none", label=f"{m}, {e:g} PeV")
               for g, (m, e) in enumerate(groups)]
    handles += [Line2D([], [], color="k", marker=mk, ls="none", markerfacecolor="k" if f else "white", label=v)
                for v, (mk, f) in VERDICT_MARKERS.items()]
    handles.append(Line2D([], [], color="k", marker="d", ls="none", markerfacecolor="white",
                          label="no plateau: not compared"))
    handles.append(Line2D([], [], color="0.85", lw=6, label=f"±{100 * params.rel_tolerance:g} % (converged)"))
    fig.legend(handles=handles, fontsize=6, frameon=False, loc="outside lower center", ncol=4)
    return fig


def write_report(runs: Mapping[tuple[str, float, str], str | os.PathLike], csv: str | os.PathLike,
                 png: str | os.PathLike, pdf: str | os.PathLike, params: ConvergenceParams) -> pd.DataFrame:
    """Write ``results/convergence.csv`` and its figure (PNG + PDF); returns the table."""
    from cosmicflow.plotting import save_figure

    table = convergence_table(runs, params)
    if table.empty:
        raise ValueError("convergence: no test runs given")
    with atomic_output(csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    save_figure(plot_convergence(table, params), png, pdf)
    return table


def parse_run_path(path: str | os.PathLike) -> tuple[str, float, str]:
    """(medium, energy [PeV], variant) of ``results/convergence/{medium}/E{energy}_{variant}.nc``."""
    p = Path(path)
    stem = p.stem
    if not stem.startswith("E") or "_" not in stem:
        raise InputError(f"{path}: not a convergence run (expected E<energy>_<variant>.nc)")
    energy, variant = stem[1:].split("_", 1)
    if variant not in VARIANTS:
        raise InputError(f"{path}: unknown convergence variant {variant!r}")
    return p.parent.name, float(energy), variant


def runs_from_paths(paths: Sequence[str | os.PathLike]) -> dict[tuple[str, float, str], str]:
    return {parse_run_path(p): str(p) for p in paths}
