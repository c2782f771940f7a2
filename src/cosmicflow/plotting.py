"""Paper figures from stage outputs: each ``fig*`` function takes Datasets and returns a Figure.

Workflow scripts only open files, call one function and save with :func:`save_figure`. Each
figure has its own section below; media are drawn side by side in the order given (the
workflow passes them in config order: multiphase, isothermal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cosmicflow.io import atomic_output  # noqa: E402

__all__ = [
    "fig1_slices",
    "fig2_phase_histograms",
    "fig3_gradient_histogram",
    "save_figure",
]

#: style shared by every figure: fonts readable when a two-column figure is printed at
#: page width (7 in) and a one-column one at 3.5 in
STYLE = {
    "font.size": 8,
    "axes.labelsize": 8,
    "axes.titlesize": 8.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "figure.dpi": 150,
    "savefig.dpi": 300,
    "pcolor.shading": "flat",
}
PAGE_WIDTH_IN = 7.0
COUNTS_CMAP = "magma_r"


def save_figure(fig: Figure, *paths: str | Path) -> None:
    """Save ``fig`` to each path (format from the suffix, e.g. .png and .pdf), atomically."""
    for p in paths:
        p = Path(p)
        with atomic_output(p) as tmp:
            fig.savefig(tmp, format=p.suffix.lstrip("."), bbox_inches="tight", dpi=200)


def _check_media(data: Mapping[str, xr.Dataset], what: str) -> list[str]:
    if not data:
        raise ValueError(f"{what}: no media given")
    return list(data)


def _nonzero_range(counts: np.ndarray, edges: np.ndarray, axis: int, pad: int = 1) -> tuple[float, float]:
    """Edges enclosing the non-empty bins along ``axis`` (summed over the other), plus ``pad`` bins."""
    marginal = np.asarray(counts).sum(axis=1 - axis)
    nz = np.nonzero(marginal)[0]
    if nz.size == 0:
        return float(edges[0]), float(edges[-1])
    lo = max(nz[0] - pad, 0)
    hi = min(nz[-1] + 1 + pad, len(edges) - 1)
    return float(edges[lo]), float(edges[hi])


def _union(ranges: Sequence[tuple[float, float]]) -> tuple[float, float]:
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


# ---------------------------------------------------------------------------------------------
# Fig. 1: slices of n, M_A, M_s (paper Fig. 1)
# ---------------------------------------------------------------------------------------------

FIG1_ROWS = (
    # variable, label, colour map, centred on 1 (diverging)
    ("density", r"$n$ [cm$^{-3}$]", "viridis", False),
    ("alfven_mach", r"$M_\mathrm{A} = |v - \langle v\rangle| / v_\mathrm{A}$", "RdBu_r", True),
    ("sonic_mach", r"$M_\mathrm{s} = |v - \langle v\rangle| / c_\mathrm{s}$", "PuOr_r", True),
)


def _log_limits(arrays: Sequence[np.ndarray], centred: bool) -> tuple[float, float]:
    """Colour limits enclosing the 0.1-99.9 % range of every medium's values.

    Per medium, then the union: pooling the values would let a uniform medium (the
    isothermal control) dilute the rare dense clumps of the multiphase one off the scale.
    """
    los, his = [], []
    for a in arrays:
        vals = np.asarray(a, dtype=np.float64).ravel()
        vals = vals[np.isfinite(vals) & (vals > 0)]
        if vals.size:
            lo_a, hi_a = np.percentile(vals, [0.1, 99.9])
            los.append(lo_a)
            his.append(hi_a)
    if not los:
        return 0.1, 10.0
    lo, hi = min(los), max(his)
    if centred:  # symmetric about M = 1 in log so that white marks trans-sonic/-Alfvenic gas
        half = max(abs(np.log10(lo)), abs(np.log10(hi)), 0.3)
        return 10.0**-half, 10.0**half
    if hi <= lo:
        lo, hi = lo / 2, hi * 2
    return float(lo), float(hi)


def fig1_slices(slices: Mapping[str, xr.Dataset]) -> Figure:
    """Slices of n, M_A and M_s (rows) through each medium (columns), log colour scales.

    ``slices`` maps medium name -> ``results/{medium}/slices.nc`` (see
    :func:`cosmicflow.phases.phase_slices`). Each row shares one colour scale across media;
    the Mach-number maps are centred on 1 (white), red/orange super-, blue/purple sub-.
    """
    media = _check_media(slices, "fig1_slices")
    ncol = len(media)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            3, ncol, figsize=(PAGE_WIDTH_IN if ncol > 1 else 3.5, 7.6 if ncol > 1 else 8.0),
            squeeze=False, sharex="col", sharey="col", layout="constrained",
        )
        for r, (var, label, cmap, centred) in enumerate(FIG1_ROWS):
            vmin, vmax = _log_limits([slices[m][var].values for m in media], centred)
            norm = LogNorm(vmin=vmin, vmax=vmax)
            for c, m in enumerate(media):
                ds = slices[m]
                ax = axes[r, c]
                hdim, vdim = ds[var].dims  # (x, z) for the default y-normal slice
                h = ds[hdim].values
                v = ds[vdim].values
                data = np.clip(ds[var].values.T, vmin, vmax)  # rows = vertical coordinate
                im = ax.pcolormesh(_cell_edges(h), _cell_edges(v), data, norm=norm, cmap=cmap,
                                   rasterized=True)
                ax.set_aspect("equal")
                values = ds[var].values
                if np.nanmin(values) == np.nanmax(values):  # say so rather than show a flat colour
                    unit = label.split("[")[1].rstrip("]") if "[" in label else ""
                    ax.text(0.5, 0.5, f"uniform: {float(values.flat[0]):.3g} {unit}",
                            transform=ax.transAxes, ha="center", va="center", fontsize=8,
                            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
                if r == 0:
                    normal = ds.attrs.get("slice_normal", "y")
                    pos = ds.attrs.get(f"slice_{normal}_pc")
                    where = f", {normal} = {float(np.ravel(pos)[0]):.1f} pc" if pos is not None else ""
                    ax.set_title(f"{m}{where}")
                if r == 2:
                    ax.set_xlabel(f"{hdim} [pc]")
                if c == 0:
                    ax.set_ylabel(f"{vdim} [pc]")
            cb = fig.colorbar(im, ax=list(axes[r, :]), label=label, shrink=0.9, pad=0.02,
                              extend="both")
            _decade_ticks(cb)
    return fig


def _decade_ticks(cb) -> None:
    """Label a log colour bar at decades, or at 1, 2, 5 x decade (plain numbers) when it
    spans less than two decades and decade labels alone would be too sparse."""
    lo, hi = cb.norm.vmin, cb.norm.vmax
    if np.log10(hi / lo) >= 2:
        cb.ax.yaxis.set_major_locator(LogLocator(base=10))
    else:
        cb.ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    cb.ax.yaxis.set_minor_formatter(NullFormatter())


def _cell_edges(centres: np.ndarray) -> np.ndarray:
    c = np.asarray(centres, dtype=np.float64)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    d = np.diff(c)
    return np.concatenate([[c[0] - d[0] / 2], c[:-1] + d / 2, [c[-1] + d[-1] / 2]])


# ---------------------------------------------------------------------------------------------
# Fig. 2: T vs M_A, M_s, n histograms with the phase thresholds (paper Fig. 2)
# ---------------------------------------------------------------------------------------------

FIG2_COLUMNS = (
    ("hist_T_alfven_mach", "alfven_mach", r"$M_\mathrm{A}$", True),
    ("hist_T_sonic_mach", "sonic_mach", r"$M_\mathrm{s}$", True),
    ("hist_T_density", "density", r"$n$ [cm$^{-3}$]", False),
)


def fig2_phase_histograms(
    histograms: Mapping[str, xr.Dataset],
    thresholds_K: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
) -> Figure:
    """2-D histograms of T against M_A, M_s and n (columns) for each medium (rows).

    ``histograms`` maps medium -> ``results/{medium}/phase_histograms.nc``. Colour: cells per
    bin on a log scale, one colour bar per medium. Dashed lines mark the phase thresholds
    (from the datasets' attrs unless given), dotted lines M = 1.
    """
    media = _check_media(histograms, "fig2_phase_histograms")
    first = histograms[media[0]]
    th = np.ravel(thresholds_K if thresholds_K is not None else first.attrs["phase_thresholds_K"])
    names = list(names) if names is not None else list(first["phase"].values)
    t_edges = first["temperature_edges"].values
    t_range = _union([_nonzero_range(h[v].values, t_edges, 0)
                      for h in histograms.values() for v, *_ in FIG2_COLUMNS])
    t_range = (min(t_range[0], th[0] / 3), max(t_range[1], th[1] * 3))
    # one colour scale per medium (row): a uniform medium puts all its cells in one bin and
    # would otherwise compress the other medium's dynamic range
    norms = {m: LogNorm(vmin=1, vmax=max(10, max(int(histograms[m][v].max())
                                                 for v, *_ in FIG2_COLUMNS)))
             for m in media}
    nrow = len(media)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrow, 3, figsize=(PAGE_WIDTH_IN, 2.3 * nrow + 0.4),
                                 squeeze=False, sharey=True, layout="constrained")
        for c, (var, q, label, mach) in enumerate(FIG2_COLUMNS):
            q_edges = first[f"{q}_edges"].values
            q_range = _union([_nonzero_range(histograms[m][var].values, q_edges, 1) for m in media])
            for r, m in enumerate(media):
                ax = axes[r, c]
                h = histograms[m][var].values.astype(np.float64)
                ax.pcolormesh(q_edges, t_edges, np.where(h > 0, h, np.nan), norm=norms[m],
                              cmap=COUNTS_CMAP, rasterized=True)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_xlim(*q_range)
                ax.set_ylim(*t_range)
                for t in th:
                    ax.axhline(t, color="0.3", ls="--", lw=0.8)
                if mach:
                    ax.axvline(1.0, color="0.3", ls=":", lw=0.8)
                if c == 2:
                    _label_phases(ax, th, names, t_range)
                if r == nrow - 1:
                    ax.set_xlabel(label)
                if c == 0:
                    ax.set_ylabel(r"$T$ [K]")
                ax.set_title(f"{m}: $T$ vs {label.split(' [')[0]}", loc="left")
        for r, m in enumerate(media):
            sm = matplotlib.cm.ScalarMappable(norm=norms[m], cmap=COUNTS_CMAP)
            fig.colorbar(sm, ax=list(axes[r, :]), label="cells per bin", shrink=0.95, pad=0.06)
    return fig


def _label_phases(ax, thresholds, names, t_range) -> None:
    """Phase names at the right edge, centred (in log T) on each phase's visible band."""
    bounds = [t_range[0], *thresholds, t_range[1]]
    trans = ax.get_yaxis_transform()
    for name, lo, hi in zip(names, bounds[:-1], bounds[1:]):
        lo, hi = max(lo, t_range[0]), min(hi, t_range[1])
        if hi <= lo:
            continue
        ax.text(1.03, np.sqrt(lo * hi), name, transform=trans, ha="left", va="center",
                fontsize=7, color="0.25", clip_on=False)


# ---------------------------------------------------------------------------------------------
# Fig. 3: |grad T| vs |grad B| (paper Fig. 3)
# ---------------------------------------------------------------------------------------------


def fig3_gradient_histogram(gradients: Mapping[str, xr.Dataset]) -> Figure:
    """Joint histogram of |grad T| [K/pc] and |grad |B|| [uG/pc] for each medium (columns).

    ``gradients`` maps medium -> ``results/{medium}/gradients.nc``. A medium with no
    temperature gradient (isothermal: every cell clamped below the |grad T| range) is drawn as
    the 1-D distribution of |grad B| instead, since a 2-D histogram would be a single column.
    """
    media = _check_media(gradients, "fig3_gradient_histogram")
    first = gradients[media[0]]
    t_edges = first["grad_temperature_edges"].values
    b_edges = first["grad_b_edges"].values
    two_d = {m: not _isothermal(g) for m, g in gradients.items()}
    b_range = _union([_nonzero_range(g["hist_grad_T_grad_B"].values, b_edges, 1)
                      for g in gradients.values()])
    t_ranges = [_nonzero_range(_drop_underflow(g), t_edges, 0)
                for m, g in gradients.items() if two_d[m]]
    vmax = max(int(g["hist_grad_T_grad_B"].max()) for g in gradients.values())
    norm = LogNorm(vmin=1, vmax=max(vmax, 10))
    ncol = len(media)
    im = None
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, ncol, figsize=(PAGE_WIDTH_IN if ncol > 1 else 3.5, 3.0),
                                 squeeze=False, layout="constrained")
        for c, m in enumerate(media):
            g = gradients[m]
            ax = axes[0, c]
            h = g["hist_grad_T_grad_B"].values.astype(np.float64)
            if two_d[m]:
                below = int(np.ravel(g["grad_temperature_edges"].attrs.get("clamped_below_above",
                                                                           [0, 0]))[0])
                if below:  # cells with |grad T| under the range (e.g. at a temperature floor)
                    h[0, :] = 0.0
                    frac = below / float(g.attrs.get("total_cells", h.sum() + below))
                    ax.text(0.03, 0.97, f"{100 * frac:.2g} % of cells have\n"
                            rf"$|\nabla T| < {t_edges[0]:g}$ K pc$^{{-1}}$ (not shown)",
                            transform=ax.transAxes, ha="left", va="top", fontsize=6.5)
                im = ax.pcolormesh(t_edges, b_edges, np.where(h > 0, h, np.nan).T, norm=norm,
                                   cmap=COUNTS_CMAP, rasterized=True)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_xlim(*_union(t_ranges))
                ax.set_ylim(*b_range)
                ax.set_xlabel(r"$|\nabla T|$ [K pc$^{-1}$]")
                ax.set_ylabel(r"$|\nabla B|$ [$\mu$G pc$^{-1}$]")
            else:
                counts = h.sum(axis=0)
                nz = np.nonzero(counts)[0]
                sel = slice(nz[0], nz[-1] + 1) if nz.size else slice(None)
                # only the occupied range: a step down to 0 has no place on a log axis
                ax.stairs(counts[sel], b_edges[sel.start: (sel.stop or len(counts)) + 1]
                          if nz.size else b_edges, orientation="horizontal", baseline=None,
                          color="C0", lw=1.2, label=m)
                # the other media's |grad B| distributions, for comparison on the same axis
                for k, (other, go) in enumerate(gradients.items()):
                    if other == m:
                        continue
                    oc = go["hist_grad_T_grad_B"].values.sum(axis=0).astype(np.float64)
                    onz = np.nonzero(oc)[0]
                    if onz.size:
                        ax.stairs(oc[onz[0]: onz[-1] + 1], b_edges[onz[0]: onz[-1] + 2],
                                  orientation="horizontal", baseline=None, color=f"C{k + 1}",
                                  lw=0.9, ls="--", label=other)
                ax.legend(loc="upper right", frameon=False)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_ylim(*b_range)
                ax.set_xlim(0.5, max(max(float(go["hist_grad_T_grad_B"].sum(axis=0).max())
                                         for go in gradients.values()) * 2, 10))
                ax.set_xlabel("cells per bin")
                ax.set_ylabel(r"$|\nabla B|$ [$\mu$G pc$^{-1}$]")
                ax.text(0.95, 0.05, r"isothermal: $|\nabla T| = 0$" "\n" r"(distributions of $|\nabla B|$)",
                        transform=ax.transAxes, ha="right", va="bottom", fontsize=7)
            ax.set_title(rf"{m}: $B_0$ = {float(g['b0']):.2f} $\mu$G, "
                         rf"$\delta B/B_0$ = {float(g['db_over_b0']):.2f}", loc="left")
        if im is not None:
            fig.colorbar(im, ax=[axes[0, c] for c, m in enumerate(media) if two_d[m]],
                         label="cells per bin", shrink=0.95, pad=0.02)
    return fig


def _drop_underflow(g: xr.Dataset) -> np.ndarray:
    h = g["hist_grad_T_grad_B"].values.copy()
    if int(np.ravel(g["grad_temperature_edges"].attrs.get("clamped_below_above", [0, 0]))[0]):
        h[0, :] = 0
    return h


def _isothermal(g: xr.Dataset) -> bool:
    clamped = np.ravel(g["grad_temperature_edges"].attrs.get("clamped_below_above", [0, 0]))
    return int(clamped[0]) >= int(g.attrs.get("total_cells", np.inf))
