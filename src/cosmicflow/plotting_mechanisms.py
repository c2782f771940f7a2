"""Figures of the transport mechanisms (issue 13): Fig. 10 (geometry baseline, adiabaticity
classes) and Fig. 11 (field-line random walk, particle D⊥ beside it, phase-patch lengths).

Functions take Datasets (transport results, field-line results; docs/data-contracts.md) and
return Figures. Media keep the paper convention of plotting_transport: multiphase solid,
single-phase dashed.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from cosmicflow.fieldlines import flrw_expectations  # noqa: E402
from cosmicflow.plotting_transport import (  # noqa: E402
    PAGE_WIDTH_IN,
    _energy_axes,
    _energy_series,
    medium_style,
    transport_point,
)

PHASE_COLORS = {"CNM": "tab:blue", "UNM": "tab:green", "WNM": "tab:red"}
CLASS_COLORS = ("tab:cyan", "tab:orange", "tab:purple")


def _diag_with_errors(results, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(energy, group) diagonal of a ratio matrix and its (2, energy, group) error bars."""
    vals = np.array([np.diagonal(ds[name].values) for ds in results])
    bounds = np.array([np.diagonal(ds[f"{name}_interval"].values, axis1=0, axis2=1).T for ds in results])
    err = np.stack([np.clip(vals - bounds[..., 0], 0, None), np.clip(bounds[..., 1] - vals, 0, None)])
    return vals, err


def fig10_mechanisms(media: Mapping[str, Mapping[float, xr.Dataset]]) -> plt.Figure:
    """Fig. 10: what in D∥ and D⊥ is beyond geometry, vs energy.

    Top: the diagonal geometry-baseline ratios ρ_αα = D_αα/(f_α² D) = D_eff,α/(f_α D) per
    phase with bootstrap intervals (1 = correlated-limit geometry, dotted; 1/f_α, thin, is the
    uncorrelated-limit geometry of a medium with one D). Middle: the mobility
    m_α = s_α/f_α, share of D carried by the phase over its time fraction (1 = geometry in both
    limits). Bottom: the share of D carried by each adiabaticity class (solid) beside its time
    fraction (dotted) — where the batches have the class accounting; otherwise the panel says so.
    """
    any_class = any("class_share_perp" in ds for by_e in media.values() for ds in by_e.values())
    rows = 3 if any_class else 2
    fig, axes = plt.subplots(rows, 2, figsize=(PAGE_WIDTH_IN, 2.4 * rows), constrained_layout=True,
                             sharex=True)
    all_e = [e for by_e in media.values() for e in by_e]
    for name, by_energy in media.items():
        energies, results = _energy_series(by_energy)
        style = medium_style(by_energy)
        phases = [str(p) for p in results[0]["phase"].values]
        for col, comp in enumerate(("par", "perp")):
            ax = axes[0, col]
            vals, err = _diag_with_errors(results, f"phase_baseline_ratio_{comp}")
            for i, ph in enumerate(phases):
                ok = np.isfinite(vals[:, i]) & (vals[:, i] > 0)
                if not ok.any():
                    continue
                ax.errorbar(energies[ok], vals[ok, i], yerr=err[:, ok, i], color=PHASE_COLORS.get(ph),
                            ls=style["linestyle"], marker=style["marker"], ms=3, lw=1.1, capsize=2,
                            label=f"{name}: {ph}")
                f = np.array([ds["phase_fraction_late"].values[i] for ds in results])
                ax.plot(energies[ok], 1 / f[ok], color=PHASE_COLORS.get(ph), ls=style["linestyle"], lw=0.5)
                mob = np.array([ds[f"phase_mobility_{comp}"].values[i] for ds in results])
                mb = np.array([ds[f"phase_mobility_{comp}_interval"].values[i] for ds in results])
                axes[1, col].errorbar(energies[ok], mob[ok], yerr=np.stack([mob - mb[:, 0], mb[:, 1] - mob])[:, ok].clip(0),
                                      color=PHASE_COLORS.get(ph), ls=style["linestyle"], marker=style["marker"],
                                      ms=3, lw=1.1, capsize=2)
            if "class_share_perp" not in results[0]:
                continue
            ax = axes[2, col]
            classes = [str(c) for c in results[0]["eps_class"].values]
            share = np.array([ds[f"class_share_{comp}"].values for ds in results])
            frac = np.array([ds["class_fraction_late"].values for ds in results])
            for i, c in enumerate(classes):
                color = CLASS_COLORS[i % len(CLASS_COLORS)]
                ax.plot(energies, share[:, i], color=color, ls=style["linestyle"], marker=style["marker"],
                        ms=3, label=f"{name}: {c}")
                ax.plot(energies, frac[:, i], color=color, ls=":", lw=1.0)
    for col, sym in enumerate((r"\parallel", r"\perp")):
        ax = axes[0, col]
        ax.axhline(1.0, color="k", ls=":", lw=0.8)
        _energy_axes(ax, all_e)
        ax.set_xlabel("")
        ax.set_ylabel(rf"$D^{sym}_{{\alpha\alpha}} / (f_\alpha^2 D^{sym})$", fontsize=8)
        ax.set_title(rf"phases, $D^{sym}$ against the geometry baseline", fontsize=8)
        ax = axes[1, col]
        ax.axhline(1.0, color="k", ls=":", lw=0.8)
        _energy_axes(ax, all_e)
        ax.set_yscale("linear")  # a share can be negative (anti-correlated phases)
        ax.set_ylabel(rf"mobility $s_\alpha / f_\alpha$ of $D^{sym}$", fontsize=8)
        if any_class:
            ax.set_xlabel("")
            ax = axes[2, col]
            _energy_axes(ax, all_e)
            ax.set_yscale("linear")
            ax.axhline(0.0, color="0.6", lw=0.6)
            ax.set_ylabel(rf"share of $D^{sym}$ (solid), time fraction (dotted)", fontsize=8)
            ax.set_title(r"adiabaticity classes $\epsilon = |\nabla B| r_L / B$", fontsize=8)
        else:
            ax.set_title("(no adiabaticity classes: batches without integrate.class_accounting)", fontsize=7)
    axes[0, 1].legend(fontsize=6, frameon=False, ncol=2)
    if any_class:
        axes[2, 1].legend(fontsize=6, frameon=False, ncol=1)
    return fig


def fig11_field_lines(
    field_lines: Mapping[str, xr.Dataset], media: Mapping[str, Mapping[float, xr.Dataset]]
) -> plt.Figure:
    """Fig. 11: field-line random walk per medium and what it predicts for particles.

    (a) running κ_FL(z) = ⟨|Δr⊥|²⟩/(4z) of traced field lines [pc] against distance z along B̂0,
    with its bootstrap band and plateau (dotted; none when the late window is not diffusive).
    (b) particle D⊥ against energy (markers) with the field-line-wandering expectations, from
    the plateau κ_FL or, without one, the peak of κ_FL(z): ballistic streaming along the lines, κ_FL c/2
    (horizontal line), and compound subdiffusion κ_FL √(4D∥/(π t)) at the run's last time
    (thin line); see :func:`cosmicflow.fieldlines.flrw_expectations`. (c) pdf of the arc lengths
    of contiguous phase segments along the lines, with the maximum-likelihood power-law slope
    above l_min drawn where a fit exists.
    """
    fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH_IN, 2.6), constrained_layout=True)
    ax = axes[0]
    for name, fl in field_lines.items():
        style = medium_style(media[name]) if name in media else {"linestyle": "-"}
        use = fl["branches_reached"].values >= fl.attrs.get("n_lines", 0)  # half the branches
        z = fl["distance"].values[use]
        k = fl["kappa_fl"].values[use]
        band = fl["kappa_fl_interval"].values[use]
        line, = ax.plot(z, k, ls=style["linestyle"], lw=1.2, label=name)
        ax.fill_between(z, band[:, 0], band[:, 1], color=line.get_color(), alpha=0.25, lw=0)
        if np.isfinite(float(fl["kappa_fl_plateau"])):
            ax.axhline(float(fl["kappa_fl_plateau"]), color=line.get_color(), ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"distance along $\hat B_0$, $z$ [pc]", fontsize=8)
    ax.set_ylabel(r"$\kappa_{\rm FL}(z) = \langle|\Delta r_\perp|^2\rangle / 4z$ [pc]", fontsize=8)
    ax.legend(fontsize=6, frameon=False)
    ax.tick_params(which="both", labelsize=7)

    ax = axes[1]
    all_e = []
    for i, (name, by_energy) in enumerate(media.items()):
        energies, results = _energy_series(by_energy)
        all_e += list(energies)
        style = medium_style(by_energy)
        color = f"C{i}"
        # plateau values filled; without a plateau the running value at t_end, open (never a D)
        points = [transport_point(ds, "D_perp") for ds in results]
        plateau = np.array([p["kind"] == "plateau" for p in points])
        dperp = np.array([p["value"] for p in points])
        e_arr = np.asarray(energies, dtype=float)
        ax.plot(e_arr[plateau], dperp[plateau], color=color, ls="none", marker=style["marker"], ms=4,
                label=f"{name}: particles")
        ax.plot(e_arr[~plateau], dperp[~plateau], color=color, ls="none", marker=style["marker"], ms=4,
                markerfacecolor="white")
        if name not in field_lines:
            continue
        kfl = float(field_lines[name]["kappa_fl_plateau"])
        if not np.isfinite(kfl):  # no diffusive field-line walk: the largest running value
            kfl = float(field_lines[name]["kappa_fl_peak"])
        # the compound-subdiffusive expectation needs a real D_par: NaN where there is no plateau
        dpar = np.array([p["value"] if p["kind"] == "plateau" else np.nan
                         for p in (transport_point(ds, "D_par") for ds in results)])
        t_end = np.array([float(ds["time"].values[-1]) for ds in results])
        exp = flrw_expectations(kfl, dpar, t_end)
        ax.axhline(exp["ballistic_cm2_s"], color=color, ls=style["linestyle"], lw=1.0)
        ax.plot(energies, exp["compound_cm2_s"], color=color, ls=":", lw=1.0)
    if all_e:
        _energy_axes(ax, all_e)
    ax.set_ylabel(r"$D_\perp$ [cm$^2$ s$^{-1}$]", fontsize=8)
    handles = [Line2D([], [], color="k", marker="s", ls="none", ms=4, label="particles (plateau)"),
               Line2D([], [], color="k", marker="s", ls="none", ms=4, markerfacecolor="white",
                      label=r"particles, no plateau: running $D_\perp(t_{\rm end})$"),
               Line2D([], [], color="k", ls="-", label=r"$\kappa_{\rm FL} c/2$"),
               Line2D([], [], color="k", ls=":", label=r"$\kappa_{\rm FL}\sqrt{4D_\parallel/\pi t}$")]
    ax.legend(handles=handles, fontsize=6, frameon=False, loc="center left")

    ax = axes[2]
    for name, fl in field_lines.items():
        style = medium_style(media[name]) if name in media else {"linestyle": "-"}
        edges = fl["length_edges"].values
        centre = np.sqrt(edges[:-1] * edges[1:])
        for i, ph in enumerate(str(p) for p in fl["phase"].values):
            pdf = fl["segment_pdf"].values[i]
            if not np.any(pdf > 0):
                continue
            ok = pdf > 0
            ax.plot(centre[ok], pdf[ok], color=PHASE_COLORS.get(ph), ls=style["linestyle"], lw=1.0,
                    label=f"{name}: {ph}")
            a = float(fl["powerlaw_alpha"].values[i])
            lmin = float(fl["powerlaw_l_min"].values[i])
            if np.isfinite(a):
                x = centre[(centre >= lmin) & (centre <= centre[ok].max())]
                if x.size:
                    y0 = np.interp(np.log(x[0]), np.log(centre[ok]), pdf[ok])
                    ax.plot(x, y0 * (x / x[0]) ** (-a), color="k", lw=0.6, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("segment arc length $l$ [pc]", fontsize=8)
    ax.set_ylabel(r"$p(l)$ [pc$^{-1}$]", fontsize=8)
    ax.legend(fontsize=5, frameon=False)
    ax.tick_params(labelsize=7)
    return fig
