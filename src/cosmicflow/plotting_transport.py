"""Figures of particle transport (paper Figs. 4-9): functions take Datasets, return Figures.

Conventions shared by every figure: multiphase media solid, isothermal (single-phase) media
dashed; units on every axis; colour bars labelled; sized for a journal page (7 in wide) and
readable at column width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Line3DCollection  # noqa: E402

from cosmicflow import twophase  # noqa: E402
from cosmicflow.fieldlines import trace_field_lines  # noqa: E402
from cosmicflow.snapshot import Snapshot  # noqa: E402

PAGE_WIDTH_IN = 7.0


# --------------------------------------------------------------------------------------------
# merging batches
# --------------------------------------------------------------------------------------------

HISTOGRAMS = ("hist_dmu_dB", "hist_dmu_dT", "hist_epsilon")


def merge_histograms(batches: Sequence[xr.Dataset]) -> xr.Dataset:
    """Sum the along-trajectory histograms of several batches of one (medium, energy, injection).

    All batches must share bin edges (they are fixed in the integrator); counts add.
    """
    if not batches:
        raise ValueError("merge_histograms needs at least one batch")
    first = batches[0]
    out = xr.Dataset(attrs=dict(first.attrs))
    for name in HISTOGRAMS:
        if name in first:
            out[name] = sum(b[name].astype(np.int64) for b in batches)
    for name in ("dmu_edges", "dB_edges", "dT_edges", "eps_edges"):
        if name in first:
            for b in batches[1:]:
                if not np.array_equal(b[name].values, first[name].values):
                    raise ValueError(f"batches disagree on histogram bin edges {name!r}")
            out[name] = first[name]
    return out


def has_temperature_structure(batch: xr.Dataset) -> bool:
    """True when the medium has more than one thermal phase by volume (so |dT/d(tΩ)| is not 0)."""
    if "phase_volume_fraction" in batch:
        return int(np.sum(np.asarray(batch["phase_volume_fraction"].values) > 0)) >= 2
    counts = batch["hist_dmu_dT"].values.sum(axis=0)
    return bool(counts[1:].sum() > 0)


def fig5_rows(merged: Mapping[str, Mapping[float, Sequence[xr.Dataset]]]):
    """Rows of Fig. 5 from {medium: {energy: [batches]}}: for multiphase media a |dT| row and a
    |dB| row, for single-phase media a |dB| row only (their |dT| is identically zero);
    multiphase media first, as in the paper."""
    multi, single = [], []
    for medium, by_energy in merged.items():
        hists = {e: merge_histograms(list(b)) for e, b in by_energy.items()}
        first = next(iter(by_energy.values()))[0]
        if has_temperature_structure(first):
            multi += [(medium, "dT", hists), (medium, "dB", hists)]
        else:
            single.append((medium, "dB", hists))
    return multi + single


def load_results(paths: Sequence[str]) -> dict[str, dict[float, xr.Dataset]]:
    """Transport results keyed {medium: {energy [PeV]: Dataset}} from their attributes
    (:func:`cosmicflow.twophase.load_by_energy`: an unreadable file is an InputError naming it)."""
    return twophase.load_by_energy(paths)


# --------------------------------------------------------------------------------------------
# Fig. 4: 3-D view of density / temperature, field lines and one trajectory
# --------------------------------------------------------------------------------------------


def reflections(mu: np.ndarray, b: np.ndarray, min_abs_mu: float = 0.3) -> list[tuple[int, float]]:
    """Mirror reflections along one trajectory: (sample index, |B| there / median |B|).

    A reflection is a sign change of μ between two excursions with |μ| >= ``min_abs_mu`` on
    both sides (so a wobble about μ = 0 does not count); its index is the sign change.
    """
    mu = np.asarray(mu, float)
    b = np.asarray(b, float)
    ok = np.isfinite(mu) & np.isfinite(b)
    mu, b = mu[ok], b[ok]
    if mu.size < 3:
        return []
    big = np.flatnonzero(np.abs(mu) >= min_abs_mu)
    out = []
    for k0, k1 in zip(big[:-1], big[1:]):
        if np.sign(mu[k0]) != np.sign(mu[k1]):
            seg = np.arange(k0, k1 + 1)
            k = int(seg[np.argmin(np.abs(mu[seg]))])
            out.append((k, float(b[k] / np.median(b))))
    return out


def pick_trajectory(batch: xr.Dataset) -> tuple[int, int | None]:
    """(trajectory, sample) that best shows a mirror reflection: μ reverses (|μ| >= 0.3 on
    both sides) where |B| is highest relative to the trajectory's median; falls back to the
    trajectory with the widest μ range (sample None) when no stored trajectory reflects."""
    mu = batch["traj_mu"].values
    b = batch["traj_B"].values
    best, best_score = (0, None), -np.inf
    for i in range(mu.shape[0]):
        for k, ratio in reflections(mu[i], b[i]):
            if ratio > best_score:
                best, best_score = (i, k), ratio
    if best[1] is not None:
        return best
    span = np.nanmax(mu, axis=1) - np.nanmin(mu, axis=1) if mu.size else np.zeros(0)
    return (int(np.nanargmax(span)) if span.size else 0), None


def _face_colors(values: np.ndarray, cmap, norm) -> np.ndarray:
    return cmap(norm(values))


def _draw_faces(ax, snap: Snapshot, name: str, lo: np.ndarray, hi: np.ndarray, cmap, norm, n: int = 64):
    """Paint log10 ``name`` on three faces (x = lo, y = hi, z = lo) of the box [lo, hi], sampled
    from the periodic snapshot (so an unwrapped view shows the periodic images)."""
    from cosmicflow.fieldlines import sample_periodic

    grid = (np.log10(np.asarray(snap[name], dtype=np.float64)),)
    u = [np.linspace(lo[a], hi[a], n) for a in range(3)]
    faces = [
        (0, lo[0], np.meshgrid(u[1], u[2], indexing="ij"), (1, 2)),
        (1, hi[1], np.meshgrid(u[0], u[2], indexing="ij"), (0, 2)),
        (2, lo[2], np.meshgrid(u[0], u[1], indexing="ij"), (0, 1)),
    ]
    for axis, value, (P, Q), (pa, qa) in faces:
        pts = np.zeros(P.shape + (3,))
        pts[..., axis] = value
        pts[..., pa], pts[..., qa] = P, Q
        field = sample_periodic(grid, pts.reshape(-1, 3), snap.origin_pc, snap.cell_pc)[0].reshape(P.shape)
        xyz = [pts[..., 0], pts[..., 1], pts[..., 2]]
        ax.plot_surface(*xyz, facecolors=_face_colors(field, cmap, norm), shade=False, rstride=1,
                        cstride=1, linewidth=0, antialiased=False, alpha=0.8,
                        rasterized=True)  # ~12k quads: vector PDF output took ~15 s


def _colored_line(ax, pos: np.ndarray, values: np.ndarray, cmap, norm, lw: float):
    segs = np.stack([pos[:-1], pos[1:]], axis=1)
    lc = Line3DCollection(segs, cmap=cmap, norm=norm, linewidths=lw, zorder=3)
    lc.set_array(0.5 * (values[:-1] + values[1:]))
    ax.add_collection(lc)
    return lc


def _box_images(ax, pos: np.ndarray, origin: np.ndarray, box: np.ndarray) -> None:
    """Thin grey wireframes of every periodic image of the box the trajectory passes through."""
    cells = np.unique(np.floor((pos - origin) / box).astype(np.int64), axis=0)
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
    edges = [(a, b) for a in range(8) for b in range(a + 1, 8) if np.sum(corners[a] != corners[b]) == 1]
    for c in cells:
        lo = origin + c * box
        pts = lo + corners * box
        for a, b in edges:
            ax.plot(*np.stack([pts[a], pts[b]]).T, color="0.6", lw=0.4, alpha=0.6)


def _set_equal_limits(ax, lo: np.ndarray, hi: np.ndarray, min_ratio: float = 1 / 3) -> None:
    """Axis limits [lo, hi] padded so that no axis is shorter than ``min_ratio`` of the longest,
    with the box aspect equal to the limits (one pc is as long on every axis)."""
    span = hi - lo
    want = np.maximum(span, min_ratio * span.max())
    mid = 0.5 * (lo + hi)
    lo, hi = mid - want / 2, mid + want / 2
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    ax.set_box_aspect(tuple(want / want.max()), zoom=0.78)


def _axis_labels_3d(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    for setter, lab in ((ax.set_xlabel, "x [pc]"), (ax.set_ylabel, "y [pc]"), (ax.set_zlabel, "z [pc]")):
        setter(lab, labelpad=2, fontsize=7)
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(4))
    ax.tick_params(labelsize=6, pad=0)


def fig4_trajectory_3d(
    snap: Snapshot,
    batch: xr.Dataset,
    n_field_lines: int = 10,
    seed: int = 0,
) -> plt.Figure:
    """Paper Fig. 4: a whole test-particle run with a mirror reflection, in the medium.

    (a) the whole run, unwrapped, coloured by tΩ, with the periodic images of the box it
    crosses (grey wireframes) and the reflection (star); (b), (c) a zoom of side
    min(box, 40 r_L) (at least 10 cells) around the reflection: log10 n (b) and log10 T (c) on
    three faces, field lines through the reflection point coloured by |B|, the trajectory
    coloured by μ (local field); (d) μ and |B| along the whole run against tΩ, and (e) the
    same around the reflection, where μ changes sign as |B| rises. The particle is the stored
    one whose reflection (μ changing sign between excursions with |μ| >= 0.3) is at the
    highest |B| relative to its median (:func:`pick_trajectory`).
    """
    itraj, k_ref = pick_trajectory(batch)
    pos = batch["traj_position"].values[itraj]
    t_omega = batch["traj_t_omega"].values[itraj]
    mu = batch["traj_mu"].values[itraj]
    b_traj = batch["traj_B"].values[itraj]
    finite = np.all(np.isfinite(pos), axis=1) & np.isfinite(t_omega) & np.isfinite(mu)
    pos, t_omega, mu, b_traj = pos[finite], t_omega[finite], mu[finite], b_traj[finite]
    if k_ref is None:
        k_ref = int(np.argmin(np.abs(mu)))
    r_l = float(batch.attrs.get("larmor_radius_pc", snap.cell_pc.min() * 10))
    box = np.asarray(snap.box_pc, float)
    cell = float(np.min(snap.cell_pc))
    side = float(max(min(box.min(), 40 * r_l), 10 * cell))
    zlo, zhi = pos[k_ref] - side / 2, pos[k_ref] + side / 2

    rng = np.random.default_rng(seed)
    seeds = pos[k_ref] + rng.normal(scale=1.0 * r_l, size=(n_field_lines, 3))
    lines, strength = trace_field_lines(snap, seeds, length_pc=0.8 * side)
    b_norm = Normalize(vmin=float(np.percentile(strength, 2)), vmax=float(np.percentile(strength, 98)))
    n_face = int(min(96, max(16, 2 * side / cell)))

    fig = plt.figure(figsize=(PAGE_WIDTH_IN, 7.4))
    e = batch.attrs.get("energy_PeV", float("nan"))
    fig.text(0.5, 0.995, f"{batch.attrs.get('medium', '')}: E = {float(e):g} PeV, $r_L$ = {r_l:.2f} pc, "
             f"whole run of {t_omega[-1] / (2 * np.pi):.0f} gyro-periods", ha="center", va="top", fontsize=9)
    # (a) the whole run
    ax = fig.add_axes([0.0, 0.53, 0.36, 0.44], projection="3d")
    ax.computed_zorder = False
    _box_images(ax, pos, snap.origin_pc, box)
    t_norm = Normalize(vmin=0, vmax=float(t_omega.max()) or 1.0)
    _colored_line(ax, pos, t_omega, plt.get_cmap("plasma"), t_norm, 0.8)
    ax.scatter(*pos[k_ref], marker="*", s=80, color="k", zorder=5, depthshade=False)
    _set_equal_limits(ax, pos.min(axis=0) - r_l, pos.max(axis=0) + r_l)
    _axis_labels_3d(ax)
    ax.set_title("(a) whole run, unwrapped", loc="left", fontsize=8)
    cax = fig.add_axes([0.07, 0.535, 0.22, 0.012])
    cb = fig.colorbar(plt.cm.ScalarMappable(norm=t_norm, cmap="plasma"), cax=cax, orientation="horizontal")
    cb.set_label(r"$t\Omega$", fontsize=7)
    cb.ax.tick_params(labelsize=6)
    # (b), (c) zoom around the reflection
    inside = np.all((pos >= zlo) & (pos <= zhi), axis=1)
    seg = np.where(inside[:, None], pos, np.nan)
    mu_norm = Normalize(vmin=-1, vmax=1)
    for k, (label, name, fcmap, flabel) in enumerate((
        ("(b) zoom: density", "density", "viridis", r"$\log_{10}(n\,/\,\mathrm{cm^{-3}})$"),
        ("(c) zoom: temperature", "temperature", "inferno", r"$\log_{10}(T\,/\,\mathrm{K})$"),
    )):
        ax = fig.add_axes([0.34 + 0.33 * k, 0.53, 0.33, 0.44], projection="3d")
        ax.computed_zorder = False  # draw order as added: faces, field lines, trajectory
        field = np.log10(np.asarray(snap[name], dtype=np.float64))
        fnorm = Normalize(vmin=float(np.percentile(field, 1)), vmax=float(np.percentile(field, 99)))
        _draw_faces(ax, snap, name, zlo, zhi, plt.get_cmap(fcmap), fnorm, n=n_face)
        for line, bl in zip(lines, strength):
            ok = np.all((line >= zlo) & (line <= zhi), axis=1)
            if ok.sum() > 2:
                _colored_line(ax, np.where(ok[:, None], line, np.nan), bl, plt.get_cmap("cividis"), b_norm, 0.8)
        _colored_line(ax, seg, mu, plt.get_cmap("coolwarm"), mu_norm, 1.1)
        ax.scatter(*pos[k_ref], marker="*", s=80, color="k", zorder=5, depthshade=False)
        _set_equal_limits(ax, zlo, zhi)
        _axis_labels_3d(ax)
        ax.set_title(label, loc="left", fontsize=8)
        cax = fig.add_axes([0.40 + 0.33 * k, 0.535, 0.2, 0.012])
        cb = fig.colorbar(plt.cm.ScalarMappable(norm=fnorm, cmap=fcmap), cax=cax, orientation="horizontal")
        cb.set_label(flabel, fontsize=7)
        cb.ax.tick_params(labelsize=6)
    for k, (norm, cmap, lab) in enumerate(((mu_norm, "coolwarm", r"trajectory $\mu$ (b, c)"),
                                           (b_norm, "cividis", r"field-line $|B|$ [$\mu$G] (b, c)"))):
        cax = fig.add_axes([0.40 + 0.33 * k, 0.47, 0.2, 0.012])
        cb = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax, orientation="horizontal")
        cb.set_label(lab, fontsize=7)
        cb.ax.tick_params(labelsize=6)
    # (d) the whole run, (e) around the reflection
    half = max(20.0, 0.03 * float(t_omega[-1]))
    for k, (label, window) in enumerate((("(d) along the whole run", None),
                                         ("(e) around the reflection", (t_omega[k_ref] - half, t_omega[k_ref] + half)))):
        ax = fig.add_axes([0.08, 0.25 - 0.2 * k, 0.78, 0.15])
        sel = slice(None) if window is None else (t_omega >= window[0]) & (t_omega <= window[1])
        ax.plot(t_omega[sel], mu[sel], color="tab:blue", lw=0.6)
        ax.axhline(0, color="0.6", lw=0.5)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(r"$\mu$", fontsize=8, color="tab:blue")
        ax.tick_params(labelsize=7)
        ax2 = ax.twinx()
        ax2.plot(t_omega[sel], b_traj[sel], color="tab:orange", lw=0.6)
        ax2.set_ylabel(r"$|B|$ [$\mu$G]", fontsize=8, color="tab:orange")
        ax2.tick_params(labelsize=7)
        ax.plot([t_omega[k_ref]], [mu[k_ref]], marker="*", color="k", ms=8, ls="none")
        ax.set_xlim(*(window or (t_omega[0], t_omega[-1])))
        ax.set_title(label + r": the star marks $\mu$ changing sign", loc="left", fontsize=8)
        if k == 1:
            ax.set_xlabel(r"$t\Omega$", fontsize=8)
    return fig


# --------------------------------------------------------------------------------------------
# Fig. 5: |dmu/d(tΩ)| vs |dT/d(tΩ)| and vs |dB/d(tΩ)|
# --------------------------------------------------------------------------------------------


def _hist_panel(ax, counts: np.ndarray, xedges: np.ndarray, yedges: np.ndarray, norm):
    """counts[y_bin, x_bin] as a log-log pcolormesh; empty bins left white."""
    c = np.where(counts > 0, counts, np.nan)
    return ax.pcolormesh(xedges, yedges, c, norm=norm, cmap="magma_r", shading="flat")


def fig5_scattering_histograms(
    rows: Sequence[tuple[str, str, Mapping[float, xr.Dataset]]],
) -> plt.Figure:
    """Paper Fig. 5: 2-D histograms of |dμ/d(tΩ)| against |dT/d(tΩ)| [K] or |dB/d(tΩ)| [µG].

    ``rows`` lists (medium label, "dT" or "dB", {energy_PeV: merged histogram Dataset}); one
    column per energy. Colour: counts of samples (log).
    """
    energies = sorted({e for _, _, d in rows for e in d})
    ncol = len(energies)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(PAGE_WIDTH_IN, 2.0 * len(rows) + 0.6),
                             squeeze=False, sharey=True, constrained_layout=True)
    vmax = max(float(ds[f"hist_dmu_{kind}"].max()) for _, kind, d in rows for ds in d.values())
    norm = LogNorm(vmin=1, vmax=max(vmax, 10))
    mesh = None
    for r, (label, kind, by_energy) in enumerate(rows):
        for c, e in enumerate(energies):
            ax = axes[r, c]
            ax.set_xscale("log")
            ax.set_yscale("log")
            if e not in by_energy:
                ax.set_axis_off()
                continue
            ds = by_energy[e]
            counts = ds[f"hist_dmu_{kind}"].values
            mesh = _hist_panel(ax, counts, ds[f"{kind}_edges"].values, ds["dmu_edges"].values, norm)
            if kind == "dT":
                ax.set_xlabel(r"$|dT/d(t\Omega)|$ [K]", fontsize=8)
            else:
                ax.set_xlabel(r"$|dB/d(t\Omega)|$ [$\mu$G]", fontsize=8)
            if c == 0:
                ax.set_ylabel(r"$|d\mu/d(t\Omega)|$", fontsize=8)
            ax.set_title(f"{label}, E = {e:g} PeV", fontsize=8)
            ax.tick_params(labelsize=7)
    # axes span the occupied bins (shared per kind of rate), not the fixed histogram range
    from cosmicflow.plotting import _nonzero_range, _union

    y_ranges, x_ranges = [], {}
    for _, kind, by_energy in rows:
        for ds in by_energy.values():
            c = ds[f"hist_dmu_{kind}"].values
            y_ranges.append(_nonzero_range(c, ds["dmu_edges"].values, axis=0))
            x_ranges.setdefault(kind, []).append(_nonzero_range(c, ds[f"{kind}_edges"].values, axis=1))
    for r, (_, kind, by_energy) in enumerate(rows):
        for c in range(ncol):
            if axes[r, c].axison:
                axes[r, c].set_xlim(*_union(x_ranges[kind]))
                axes[r, c].set_ylim(*_union(y_ranges))
    if mesh is not None:
        cb = fig.colorbar(mesh, ax=axes, shrink=0.8, pad=0.01)
        cb.set_label("samples per bin", fontsize=8)
    return fig


# --------------------------------------------------------------------------------------------
# Figs. 6-9: transport results (one Dataset per medium and energy, see docs/data-contracts.md)
# --------------------------------------------------------------------------------------------

GeV_PER_PeV = 1.0e6


def is_multiphase(result: xr.Dataset, min_fraction: float = 0.01) -> bool:
    """True when particles spent at least ``min_fraction`` of their time in two or more phases."""
    f = np.asarray(result["phase_fraction_total"].values, dtype=float)
    return int(np.sum(f >= min_fraction)) >= 2


def medium_style(results: Mapping[float, xr.Dataset]) -> dict:
    """Paper convention: multiphase media solid lines + squares, single-phase (isothermal)
    dashed + circles. Markers are filled: an open marker always means "no plateau"."""
    any_ds = next(iter(results.values()))
    if is_multiphase(any_ds):
        return {"linestyle": "-", "marker": "s", "markersize": 4}
    return {"linestyle": "--", "marker": "o", "markersize": 4}


#: legend text of each kind of point (docs: cosmicflow.transport "Plateau rule")
POINT_LABELS = {
    "plateau": "plateau (68 % interval: particles or realisations, window)",
    "lower": r"no plateau: running $D(t_{\rm end})$, still rising (lower limit)",
    "upper": r"no plateau: running $D(t_{\rm end})$, still falling (upper limit)",
    "none": r"no plateau, undetermined: running $D(t_{\rm end})$",
}


def transport_point(result: xr.Dataset, name: str) -> dict:
    """What a figure may draw for ``name`` (``D_par`` or ``D_perp``) of one result.

    Returns ``{"kind", "value", "lower", "upper"}``: kind ``"plateau"`` with the combined
    value and interval (:mod:`cosmicflow.transport`), or, without a plateau, the regime's
    ``limit_kind`` (``"lower"``, ``"upper"``, ``"none"``) with the running value at the last
    output time, which is never a plateau value and must be drawn as an open marker (with
    an arrow for a limit). No plateau value is ever taken from the running curve.
    """
    if int(result.attrs.get(f"{name}_plateau_reached", 0)):
        lo, hi = (float(v) for v in result[f"{name}_combined_interval"].values)
        return {"kind": "plateau", "value": float(result[f"{name}_combined"]), "lower": lo, "upper": hi}
    kind = str(result.attrs.get(f"{name}_limit_kind", "none"))
    return {"kind": kind, "value": float(result[name].isel(time=-1)), "lower": np.nan, "upper": np.nan}


def regime_flags(result: xr.Dataset) -> dict[str, bool]:
    """The regime flags of a result (cosmicflow.regime.FLAGS); False when not recorded."""
    from cosmicflow.regime import FLAGS

    return {f: bool(int(result.attrs.get(f"flag_{f}", 0))) for f in FLAGS}


def _draw_points(ax, energies, points, color, style, name, medium):
    """Plateau points filled with error bars and joined; the rest open, arrows for limits.

    Every artist gets a ``gid`` "<kind>|<name>|<medium>" so tests can read what was drawn.
    """
    e = np.asarray(energies, float)
    kinds = np.array([p["kind"] for p in points])
    v = np.array([p["value"] for p in points])
    plateau = kinds == "plateau"
    y_line = np.where(plateau, v, np.nan)
    ax.plot(e, y_line, color=color, ls=style["linestyle"], lw=1.2, gid=f"line|{name}|{medium}")
    if plateau.any():
        lo = np.array([p["lower"] for p in points])[plateau]
        hi = np.array([p["upper"] for p in points])[plateau]
        yerr = np.stack([v[plateau] - lo, hi - v[plateau]])
        ax.errorbar(e[plateau], v[plateau], yerr=np.clip(yerr, 0, None), fmt="none", ecolor=color,
                    capsize=2, lw=0.9)
        ax.plot(e[plateau], v[plateau], ls="none", marker=style["marker"], ms=4, color=color,
                gid=f"plateau|{name}|{medium}")
    for kind, factor in (("lower", 1.8), ("upper", 1 / 1.8), ("none", None)):
        sel = kinds == kind
        if not sel.any():
            continue
        ax.plot(e[sel], v[sel], ls="none", marker=style["marker"], ms=5, markerfacecolor="white",
                markeredgecolor=color, gid=f"{kind}|{name}|{medium}")
        if factor is not None:
            for x, y in zip(e[sel], v[sel]):
                ax.annotate("", xy=(x, y * factor), xytext=(x, y),
                            arrowprops={"arrowstyle": "-|>", "color": color, "lw": 0.9,
                                        "mutation_scale": 7})


def _flag_overlays(ax, energies, results, color, row: int):
    """Regime flags as a rug along the bottom of the panel (row ``row`` per medium, in the
    medium's colour): × where r_L is unresolved, a ring where λ∥ exceeds the box. The points
    themselves stay readable; the caveat text names the same energies."""
    e = np.asarray(energies, float)
    unres = np.array([regime_flags(ds)["rl_unresolved"] for ds in results])
    boxed = np.array([regime_flags(ds)["mfp_box_limited"] for ds in results])
    y = 0.04 + 0.055 * row
    tr = ax.get_xaxis_transform()
    # an empty unclipped marker line has a tight bbox at the figure origin, which made the
    # constrained layout squeeze the panels: draw a rug only where some energy is flagged
    if unres.any():
        ax.plot(e[unres], np.full(int(unres.sum()), y), ls="none", marker="x", ms=4, color=color,
                mew=0.9, transform=tr, gid="flag|rl_unresolved", clip_on=False)
    if boxed.any():
        ax.plot(e[boxed], np.full(int(boxed.sum()), y), ls="none", marker="o", ms=7,
                markerfacecolor="none", markeredgecolor=color, mew=0.7, transform=tr,
                gid="flag|mfp_box_limited", clip_on=False)


def _min_decades(ax, decades: float) -> None:
    """Widen a log y axis symmetrically (in log) to span at least ``decades``."""
    lo, hi = ax.get_ylim()
    if lo <= 0 or hi <= lo:
        return
    span = np.log10(hi / lo)
    if span < decades:
        mid = 0.5 * (np.log10(lo) + np.log10(hi))
        ax.set_ylim(10 ** (mid - decades / 2), 10 ** (mid + decades / 2))


def _kind_handles(kinds_used, flags_used):
    from matplotlib.lines import Line2D

    handles = []
    if "plateau" in kinds_used:
        handles.append(Line2D([], [], color="k", marker="s", ms=4, ls="none", label=POINT_LABELS["plateau"]))
    for kind, arrow in (("lower", r"$\uparrow$"), ("upper", r"$\downarrow$"), ("none", "")):
        if kind in kinds_used:
            handles.append(Line2D([], [], color="k", marker="s", ms=5, markerfacecolor="white", ls="none",
                                  label=POINT_LABELS[kind] + (f" {arrow}" if arrow else "")))
    if flags_used.get("rl_unresolved"):
        handles.append(Line2D([], [], color="0.3", marker="x", ms=4, ls="none",
                              label=r"bottom rug: $r_L < 10\,\Delta x$, unresolved (not the paper's regime)"))
    if flags_used.get("mfp_box_limited"):
        handles.append(Line2D([], [], color="0.3", marker="o", ms=7, markerfacecolor="none", ls="none",
                              label=r"bottom rug: $\lambda_\parallel = 3D_\parallel/c$ > box (box-limited)"))
    return handles


def caveat_lines(media: Mapping[str, Mapping[float, xr.Dataset]]) -> list[str]:
    """One plain-language line per medium listing the energies with each regime flag."""
    names = {"rl_unresolved": "r_L unresolved", "rl_above_lc": "r_L > l_c",
             "mfp_box_limited": "lambda_par > box", "no_nonadiabatic": "no eps > 1",
             "duration_short": "run < 10 scattering times"}
    lines = []
    for medium, by_energy in media.items():
        parts = []
        for flag, text in names.items():
            es = [e for e in sorted(by_energy) if regime_flags(by_energy[e]).get(flag)]
            if es:
                parts.append(f"{text} at {', '.join(f'{e:g}' for e in es)} PeV")
        if parts:
            lines.append(f"{medium}: " + "; ".join(parts))
    return lines


def _energy_axes(ax, energies) -> None:
    """Log-log axes with the simulated energies as labelled x ticks and unclutterred y labels."""
    from matplotlib.ticker import FormatStrFormatter, LogFormatterSciNotation, NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    e = np.unique(np.asarray(energies, dtype=float))
    ax.set_xticks(e)
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(e.min() / 1.2, e.max() * 1.2)
    lo, hi = ax.get_ylim()
    if hi / lo < 30:  # less than ~1.5 decades: label some minor ticks, small
        ax.yaxis.set_minor_formatter(LogFormatterSciNotation(minor_thresholds=(2, 0.4)))
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="both", which="both", labelsize=7)
    ax.set_xlabel("E [PeV]", fontsize=8)


def _energy_series(by_energy: Mapping[float, xr.Dataset]):
    energies = np.array(sorted(by_energy))
    return energies, [by_energy[e] for e in energies]


def fig6_dmumu_vs_mu0(mono: Mapping[str, xr.Dataset]) -> plt.Figure:
    """Paper Fig. 6: D_μμ/Ω (early-window mean, Eq. 10) against injection μ0, one line per medium.

    ``mono`` maps medium name to its mono-μ0 transport result at one energy.
    """
    fig, ax = plt.subplots(figsize=(3.4, 2.7), constrained_layout=True)
    energies = set()
    for name, ds in mono.items():
        mu0 = ds["mu0"].values
        y = ds["D_mumu_over_omega_mu0"].values
        iv = ds["D_mumu_over_omega_mu0_interval"].values
        err = np.abs(np.stack([y - iv[:, 0], iv[:, 1] - y]))
        style = medium_style({0.0: ds})
        ax.errorbar(mu0, y, yerr=err, label=name, capsize=2, **style)
        energies.add(float(ds.attrs.get("energy_PeV", np.nan)))
    ax.set_yscale("log")
    ax.set_xlabel(r"injection pitch-angle cosine $\mu_0$")
    ax.set_ylabel(r"$D_{\mu\mu}/\Omega$")
    ax.set_xlim(-0.05, 1.05)
    ax.set_title(f"E = {', '.join(f'{e:g}' for e in sorted(energies))} PeV", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    return fig


def _empirical_band(ax, e_pev: np.ndarray):
    """Paper Eq. 16: D = (1e28-1e29) (E/1 GeV)^s cm^2 s^-1 for s = 0.3 and 0.5."""
    e = np.geomspace(e_pev.min() / 1.3, e_pev.max() * 1.3, 50)
    x = e * GeV_PER_PeV
    for s, ls in ((0.3, ":"), (0.5, "-.")):
        ax.fill_between(e, 1e28 * x**s, 1e29 * x**s, color="0.5", alpha=0.12, lw=0)
        ax.plot(e, 1e28 * x**s, color="0.35", ls=ls, lw=1, label=rf"$10^{{28}}(E/\mathrm{{GeV}})^{{{s}}}$")


def fig7_diffusion_vs_energy(media: Mapping[str, Mapping[float, xr.Dataset]],
                             mono: Mapping[str, Mapping[float, xr.Dataset]] | None = None) -> plt.Figure:
    """Paper Fig. 7: plateau D∥ (Eq. 8), D⊥ (Eq. 9) [cm^2 s^-1] and D_μμ/Ω (Eq. 10) vs energy.

    ``media`` maps medium name to {energy [PeV]: isotropic transport result}. Plateau values
    (filled, joined, error bars = the combined 68 % interval) only; where the plateau test
    fails, the running value at the last output time is drawn open, with an arrow when the
    regime makes it a limit (:func:`transport_point`). D_μμ/Ω points whose early window is not
    linear in t are drawn open. Grey × marks unresolved r_L, a red ring a box-limited λ∥
    (:mod:`cosmicflow.regime`); the flagged energies are listed under the panels. Every D
    axis spans at least 1.5 decades so that a 10 % difference does not look large.
    """
    fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH_IN, 3.6), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    all_e, kinds_used, flags_used = [], set(), {}
    medium_handles = []
    from matplotlib.lines import Line2D

    for k, (name, by_energy) in enumerate(media.items()):
        energies, results = _energy_series(by_energy)
        all_e.extend(energies)
        style = medium_style(by_energy)
        color = colors[k % len(colors)]
        medium_handles.append(Line2D([], [], color=color, ls=style["linestyle"], marker=style["marker"],
                                     ms=4, label=name))
        for ax, var in zip(axes[:2], ("D_par", "D_perp")):
            points = [transport_point(ds, var) for ds in results]
            kinds_used.update(p["kind"] for p in points)
            _draw_points(ax, energies, points, color, style, var, name)
            _flag_overlays(ax, energies, results, color, k)
        for ds in results:
            for f, v in regime_flags(ds).items():
                flags_used[f] = flags_used.get(f, False) or v
        y = np.array([float(ds["D_mumu_over_omega_combined"]) for ds in results])
        iv = np.array([ds["D_mumu_over_omega_combined_interval"].values for ds in results])
        linear = np.array([ds.attrs.get("D_mumu_regime") == "diffusive" for ds in results])
        err = np.clip(np.stack([y - iv[:, 0], iv[:, 1] - y]), 0, None)
        axes[2].plot(energies, y, color=color, ls=style["linestyle"], lw=1.0)
        axes[2].errorbar(energies, y, yerr=err, fmt="none", ecolor=color, capsize=2, lw=0.9)
        axes[2].plot(energies[linear], y[linear], ls="none", marker=style["marker"], ms=4, color=color,
                     gid=f"plateau|D_mumu|{name}")
        axes[2].plot(energies[~linear], y[~linear], ls="none", marker=style["marker"], ms=5,
                     markerfacecolor="white", markeredgecolor=color, gid=f"nonlinear|D_mumu|{name}")
        if (~linear).any():
            kinds_used.add("dmumu_nonlinear")
    _empirical_band(axes[0], np.array(all_e))
    labels = (r"$D_\parallel$ [cm$^2$ s$^{-1}$]", r"$D_\perp$ [cm$^2$ s$^{-1}$]", r"$D_{\mu\mu}/\Omega$")
    for ax, lab in zip(axes, labels):
        _energy_axes(ax, all_e)
        ax.set_ylabel(lab, fontsize=8)
    twophase.overlay_fig7(axes, media, mono)  # Bohm, QLT kappa_par, energy slopes (issue 14)
    for ax in axes[:2]:
        _min_decades(ax, 1.5)
        lo, hi = ax.get_ylim()  # room at the bottom for the flag rug
        frac = 0.06 + 0.055 * len(media)
        ax.set_ylim(lo * (lo / hi) ** (frac / (1 - frac)), hi)
    band = [h for h in axes[0].get_legend_handles_labels()[0]]
    axes[0].legend(handles=band, fontsize=6, frameon=False, loc="upper left")
    handles = medium_handles + _kind_handles(kinds_used, flags_used)
    if "dmumu_nonlinear" in kinds_used:
        handles.append(Line2D([], [], color="k", marker="o", ms=5, markerfacecolor="white", ls="none",
                              label=r"$D_{\mu\mu}$: $\langle\Delta\mu^2\rangle$ not linear in the early window"))
    fig.legend(handles=handles, fontsize=6, frameon=False, loc="outside lower center", ncol=2)
    notes = caveat_lines(media)
    if notes:
        fig.suptitle("Regime caveats: " + " | ".join(notes), fontsize=6, wrap=True)
    return fig


def _matrix_points(ds: xr.Dataset, var: str) -> tuple[np.ndarray, bool]:
    """Late-window matrix of a result if the total coefficient has a plateau (True), else the
    running matrix at the last output time (False: drawn open, never as a plateau)."""
    m = np.asarray(ds[f"{var}_plateau"].values, dtype=float)
    comp = "D_par" if var.startswith("D_par") else "D_perp"
    if int(ds.attrs.get(f"{comp}_plateau_reached", 0)) and np.all(np.isfinite(m)):
        return m, True
    return np.asarray(ds[var].isel(time=-1).values, dtype=float), False


def fig8_phase_matrix(media: Mapping[str, Mapping[float, xr.Dataset]]) -> plt.Figure:
    """Paper Fig. 8: the 3x3 phase-phase matrices D∥_αβ (blue) and D⊥_αβ (red) vs energy.

    Late-window (plateau) matrices (Eqs. 13-14), filled and joined; where the total
    coefficient has no plateau, the running matrix at the last output time is drawn with
    open markers (not a coefficient). Log y: negative entries are drawn at their magnitude
    with a downward triangle; the legend shows exactly the markers drawn.
    """
    first = next(iter(next(iter(media.values())).values()))
    phases = [str(p) for p in first["phase_a"].values]
    n = len(phases)
    fig, axes = plt.subplots(n, n, figsize=(PAGE_WIDTH_IN, PAGE_WIDTH_IN * 0.9), sharex=True,
                             constrained_layout=True)
    any_open = any_neg = False
    for name, by_energy in media.items():
        energies, results = _energy_series(by_energy)
        style = medium_style(by_energy)
        for var, color in (("D_par_matrix", "tab:blue"), ("D_perp_matrix", "tab:red")):
            pairs = [_matrix_points(ds, var) for ds in results]
            mats = np.array([m for m, _ in pairs])  # (energy, a, b)
            ok = np.array([p for _, p in pairs])
            for a in range(n):
                for b in range(n):
                    ax = axes[a, b]
                    v = mats[:, a, b]
                    ax.plot(energies, np.where(ok, np.abs(v), np.nan), color=color, ls=style["linestyle"],
                            lw=1.1, gid=f"line|{var}|{name}")
                    for sel_ok, gid_kind in ((ok, "plateau"), (~ok, "none")):
                        pos, neg = sel_ok & (v > 0), sel_ok & (v < 0)
                        face = color if gid_kind == "plateau" else "white"
                        ax.plot(energies[pos], v[pos], ls="none", marker=style["marker"], ms=3.5,
                                markerfacecolor=face, markeredgecolor=color, gid=f"{gid_kind}|{var}|{name}")
                        ax.plot(energies[neg], -v[neg], ls="none", marker="v", ms=4.5,
                                markerfacecolor=face, markeredgecolor=color,
                                gid=f"{gid_kind}-negative|{var}|{name}")
                        any_neg = any_neg or bool(neg.any())
                    any_open = any_open or bool((~ok).any())
    all_e = [e for by_energy in media.values() for e in by_energy]
    for a in range(n):
        for b in range(n):
            ax = axes[a, b]
            _energy_axes(ax, all_e)
            ax.set_title(f"{phases[a]}-{phases[b]}", fontsize=8)
            if a != n - 1:
                ax.set_xlabel("")
            if b == 0:
                ax.set_ylabel(r"$|D_{\alpha\beta}|$ [cm$^2$ s$^{-1}$]", fontsize=8)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="tab:blue", label=r"$D^\parallel_{\alpha\beta}$"),
               Line2D([], [], color="tab:red", label=r"$D^\perp_{\alpha\beta}$")]
    for name, by_energy in media.items():
        st = medium_style(by_energy)
        handles.append(Line2D([], [], color="k", ls=st["linestyle"], marker=st["marker"], ms=3.5, label=name))
    if any_neg:
        handles.append(Line2D([], [], color="k", marker="v", ls="none", ms=4.5, label="negative (|D| drawn)"))
    if any_open:
        handles.append(Line2D([], [], color="k", marker="s", ls="none", ms=4, markerfacecolor="white",
                              label="no plateau: running value at $t_{\\rm end}$"))
    fig.legend(handles=handles, fontsize=7, frameon=False, loc="outside lower center",
               ncol=min(len(handles), 4))
    return fig


def fig9_effective_diffusion(media: Mapping[str, Mapping[float, xr.Dataset]]) -> plt.Figure:
    """Paper Fig. 9: D_eff,α = D_αα/f_α vs energy per phase (parallel, perpendicular) and the
    total coefficient (black dash-dotted), with their 68 % intervals as error bars. Plateau
    values only (filled); without a plateau the running values at the last output time are
    drawn open (not coefficients), with an arrow for the total when its regime makes it a
    limit."""
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 3.4), constrained_layout=True)
    phase_colors = {"CNM": "tab:blue", "UNM": "tab:green", "WNM": "tab:red"}
    kinds_used: set[str] = set()
    from matplotlib.lines import Line2D

    handles = []
    for name, by_energy in media.items():
        energies, results = _energy_series(by_energy)
        style = medium_style(by_energy)
        phases = [str(p) for p in results[0]["phase"].values]
        total_style = {**style, "linestyle": "-." if style["linestyle"] == "-" else ":"}
        for ax, comp in zip(axes, ("par", "perp")):
            points = [transport_point(ds, f"D_{comp}") for ds in results]
            kinds_used.update(p["kind"] for p in points)
            _draw_points(ax, energies, points, "k", total_style, f"D_{comp}", name)
            reached = np.array([p["kind"] == "plateau" for p in points])
            for i, ph in enumerate(phases):
                color = phase_colors.get(ph, None)
                eff = np.array([float(ds[f"D_eff_{comp}_combined"].values[i]) for ds in results])
                run = np.array([float(ds[f"D_eff_{comp}"].isel(time=-1).values[i]) for ds in results])
                bounds = np.array([ds[f"D_eff_{comp}_combined_interval"].values[i] for ds in results])
                visited = np.array([float(ds["phase_fraction_total"].values[i]) > 0 for ds in results])
                if not visited.any():
                    continue
                good = reached & np.isfinite(eff) & (eff > 0)
                ax.plot(energies, np.where(good, eff, np.nan), color=color, ls=style["linestyle"], lw=1.0)
                if good.any():
                    yerr = np.clip(np.stack([eff[good] - bounds[good, 0], bounds[good, 1] - eff[good]]), 0, None)
                    ax.errorbar(energies[good], eff[good], yerr=yerr, fmt="none", ecolor=color, capsize=2, lw=0.8)
                    ax.plot(energies[good], eff[good], ls="none", marker=style["marker"], ms=3.5, color=color,
                            gid=f"plateau|D_eff_{comp}_{ph}|{name}")
                opn = ~reached & visited & np.isfinite(run) & (run > 0)
                ax.plot(energies[opn], run[opn], ls="none", marker=style["marker"], ms=4,
                        markerfacecolor="white", markeredgecolor=color, gid=f"none|D_eff_{comp}_{ph}|{name}")
                if comp == "par":
                    handles.append(Line2D([], [], color=color, ls=style["linestyle"], marker=style["marker"],
                                          ms=3.5, label=f"{name}: {ph}"))
        handles.append(Line2D([], [], color="k", ls=total_style["linestyle"], marker=style["marker"], ms=3.5,
                              label=f"{name}: total"))
    all_e = [e for by_energy in media.values() for e in by_energy]
    for ax, comp in zip(axes, (r"\parallel", r"\perp")):
        _energy_axes(ax, all_e)
        _min_decades(ax, 1.5)
        ax.set_ylabel(rf"$D^{{\rm eff}}_{{{comp}}}$ [cm$^2$ s$^{{-1}}$]", fontsize=8)
    before = set(axes[1].get_legend_handles_labels()[1])
    twophase.overlay_fig9(axes, media)  # kappa_H-kappa_A band, c^2/(3 nu_eff) (issue 14)
    theory = [h for h, lab in zip(*axes[1].get_legend_handles_labels()) if lab not in before]
    if theory:
        axes[1].legend(handles=theory, fontsize=6, frameon=False)
    handles += _kind_handles(kinds_used, {})
    fig.legend(handles=handles, fontsize=6, frameon=False, loc="outside lower center", ncol=3)
    notes = caveat_lines(media)
    if notes:
        fig.suptitle("Regime caveats: " + " | ".join(notes), fontsize=6, wrap=True)
    return fig
