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
from cosmicflow.fieldlines import sample_periodic, trace_field_lines  # noqa: E402
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
    """Transport results keyed {medium: {energy [PeV]: Dataset}} from their attributes."""
    out: dict[str, dict[float, xr.Dataset]] = {}
    for p in paths:
        ds = xr.load_dataset(p, engine="h5netcdf")
        out.setdefault(str(ds.attrs["medium"]), {})[float(np.squeeze(ds.attrs["energy_PeV"]))] = ds
    return out


# --------------------------------------------------------------------------------------------
# Fig. 4: 3-D view of density / temperature, field lines and one trajectory
# --------------------------------------------------------------------------------------------


def pick_trajectory(batch: xr.Dataset) -> int:
    """Index of the stored trajectory that best shows a mirror reflection.

    Prefers the trajectory whose mu changes sign most decisively (largest max(mu) - min(mu)
    with both signs present); falls back to the first.
    """
    mu = batch["traj_mu"].values
    span = np.where((mu.max(axis=1) > 0) & (mu.min(axis=1) < 0), mu.max(axis=1) - mu.min(axis=1), -1)
    return int(np.argmax(span)) if np.any(span > 0) else 0


def _segment_in_box(pos: np.ndarray, origin: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, int]:
    """Shift of whole boxes that puts the trajectory start in the box, and how long it stays."""
    shift = np.floor((pos[0] - origin) / box) * box
    inside = np.all((pos - shift >= origin) & (pos - shift <= origin + box), axis=1)
    leave = np.argmin(inside) if not inside.all() else len(pos)
    return shift, max(int(leave), 2)


def _face_colors(values: np.ndarray, cmap, norm) -> np.ndarray:
    return cmap(norm(values))


def _draw_box_faces(ax, snap: Snapshot, field: np.ndarray, shift: np.ndarray, cmap, norm, stride: int):
    """Paint three faces of the (shifted) periodic box with ``field`` sampled on them."""
    o = snap.origin_pc + shift
    box = snap.box_pc
    xs = [snap.coordinate(a)[::stride] + shift[a] for a in range(3)]
    # x = min face (y-z plane), y = max face (x-z), z = min face (x-y)
    Y, Z = np.meshgrid(xs[1], xs[2], indexing="ij")
    ax.plot_surface(np.full_like(Y, o[0]), Y, Z, facecolors=_face_colors(field[0, ::stride, ::stride], cmap, norm),
                    shade=False, rstride=1, cstride=1, linewidth=0, antialiased=False, alpha=0.85)
    X, Z = np.meshgrid(xs[0], xs[2], indexing="ij")
    ax.plot_surface(X, np.full_like(X, o[1] + box[1]), Z,
                    facecolors=_face_colors(field[::stride, -1, ::stride], cmap, norm),
                    shade=False, rstride=1, cstride=1, linewidth=0, antialiased=False, alpha=0.85)
    X, Y = np.meshgrid(xs[0], xs[1], indexing="ij")
    ax.plot_surface(X, Y, np.full_like(X, o[2]), facecolors=_face_colors(field[::stride, ::stride, 0], cmap, norm),
                    shade=False, rstride=1, cstride=1, linewidth=0, antialiased=False, alpha=0.85)


def _colored_line(ax, pos: np.ndarray, values: np.ndarray, cmap, norm, lw: float):
    segs = np.stack([pos[:-1], pos[1:]], axis=1)
    lc = Line3DCollection(segs, cmap=cmap, norm=norm, linewidths=lw, zorder=3)
    lc.set_array(0.5 * (values[:-1] + values[1:]))
    ax.add_collection(lc)
    return lc


def fig4_trajectory_3d(
    snap: Snapshot,
    batch: xr.Dataset,
    n_field_lines: int = 12,
    seed: int = 0,
    max_face_cells: int = 96,
) -> plt.Figure:
    """Paper Fig. 4: (a) log10 n on the box faces, field lines coloured by |B|, one trajectory
    coloured by tΩ; (b) log10 T, the same field lines, the trajectory coloured by μ.

    The trajectory is the stored one with the clearest mirror reflection (:func:`pick_trajectory`),
    drawn while it stays inside one periodic image of the box; field lines are seeded in a
    bundle around its start (radius 2 r_L) and traced both ways.
    """
    itraj = pick_trajectory(batch)
    pos = batch["traj_position"].values[itraj]
    t_omega = batch["traj_t_omega"].values[itraj]
    mu = batch["traj_mu"].values[itraj]
    finite = np.all(np.isfinite(pos), axis=1)
    pos, t_omega, mu = pos[finite], t_omega[finite], mu[finite]
    shift, n_keep = _segment_in_box(pos, snap.origin_pc, snap.box_pc)
    pos, t_omega, mu = pos[:n_keep] - shift, t_omega[:n_keep], mu[:n_keep]
    shift = np.zeros(3)  # the trajectory now sits in the primary box

    r_l = float(batch.attrs.get("larmor_radius_pc", snap.cell_pc.min() * 10))
    rng = np.random.default_rng(seed)
    seeds = pos[0] + rng.normal(scale=2.0 * r_l, size=(n_field_lines, 3))
    seeds = snap.origin_pc + np.mod(seeds - snap.origin_pc, snap.box_pc)
    lines, strength = trace_field_lines(snap, seeds, length_pc=0.5 * snap.box_pc.min())
    # keep only the parts of the lines inside the box so the picture stays the box
    stride = max(1, int(np.ceil(max(snap.shape) / max_face_cells)))
    log_n = np.log10(np.asarray(snap["density"]))
    log_t = np.log10(np.asarray(snap["temperature"]))

    fig = plt.figure(figsize=(PAGE_WIDTH_IN, 3.5))
    b_norm = Normalize(vmin=float(np.percentile(strength, 2)), vmax=float(np.percentile(strength, 98)))
    panels = [
        ("(a)", log_n, "viridis", r"$\log_{10}(n\,/\,\mathrm{cm^{-3}})$", t_omega, "plasma",
         Normalize(vmin=0, vmax=float(t_omega.max()) or 1.0), r"$t\Omega$"),
        ("(b)", log_t, "inferno", r"$\log_{10}(T\,/\,\mathrm{K})$", mu, "coolwarm",
         Normalize(vmin=-1, vmax=1), r"$\mu$"),
    ]
    for k, (label, field, fcmap, flabel, tvals, tcmap, tnorm, tlabel) in enumerate(panels):
        ax = fig.add_axes([0.04 + 0.48 * k, 0.17, 0.44, 0.78], projection="3d")
        ax.set_box_aspect((1, 1, 1), zoom=1.2)
        # draw order as added (faces, then lines on top): mplot3d's depth sort hides lines
        ax.computed_zorder = False
        fnorm = Normalize(vmin=float(np.percentile(field, 1)), vmax=float(np.percentile(field, 99)))
        _draw_box_faces(ax, snap, field, shift, plt.get_cmap(fcmap), fnorm, stride)
        for line, b in zip(lines, strength):
            inside = np.all((line >= snap.origin_pc) & (line <= snap.origin_pc + snap.box_pc), axis=1)
            seg = np.where(inside)[0]
            if len(seg) > 2:
                _colored_line(ax, line[seg], b[seg], plt.get_cmap("cividis"), b_norm, 0.8)
        _colored_line(ax, pos, tvals, plt.get_cmap(tcmap), tnorm, 1.4)
        o, L = snap.origin_pc, snap.box_pc
        ax.set_xlim(o[0], o[0] + L[0])
        ax.set_ylim(o[1], o[1] + L[1])
        ax.set_zlim(o[2], o[2] + L[2])
        ax.set_xlabel("x [pc]", labelpad=-6, fontsize=7)
        ax.set_ylabel("y [pc]", labelpad=-6, fontsize=7)
        ax.set_zlabel("z [pc]", labelpad=-6, fontsize=7)
        ax.tick_params(labelsize=6, pad=-2)
        ax.set_title(label, loc="left", fontsize=9)
        sm_f = plt.cm.ScalarMappable(norm=fnorm, cmap=fcmap)
        sm_t = plt.cm.ScalarMappable(norm=tnorm, cmap=tcmap)
        cb = fig.colorbar(sm_f, ax=ax, shrink=0.55, pad=0.02, location="left")
        cb.set_label(flabel, fontsize=7)
        cb.ax.tick_params(labelsize=6)
        cb = fig.colorbar(sm_t, ax=ax, shrink=0.55, pad=0.12)
        cb.set_label(tlabel, fontsize=7)
        cb.ax.tick_params(labelsize=6)
    sm_b = plt.cm.ScalarMappable(norm=b_norm, cmap="cividis")
    cax = fig.add_axes([0.30, 0.09, 0.40, 0.025])
    cb = fig.colorbar(sm_b, cax=cax, orientation="horizontal")
    cb.set_label(r"field-line $|B|$ [$\mu$G]", fontsize=7)
    cb.ax.tick_params(labelsize=6)
    e = batch.attrs.get("energy_PeV", float("nan"))
    fig.text(0.5, 0.96, f"{batch.attrs.get('medium', '')}: E = {float(e):g} PeV, "
             f"$r_L$ = {r_l:.2f} pc", ha="center", fontsize=9)
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
    """Paper convention: multiphase media solid lines, single-phase (isothermal) dashed + circles."""
    any_ds = next(iter(results.values()))
    if is_multiphase(any_ds):
        return {"linestyle": "-", "marker": "s", "markersize": 4}
    return {"linestyle": "--", "marker": "o", "markersize": 4, "markerfacecolor": "white"}


def plateau_or_late(result: xr.Dataset, name: str) -> tuple[np.ndarray, bool]:
    """The plateau value of ``name`` if a diffusive plateau was reached, else the running value
    at the last output time (flagged False so figures can mark it)."""
    plateau = np.asarray(result[f"{name}_plateau"].values, dtype=float)
    if np.all(np.isfinite(plateau)):
        return plateau, True
    return np.asarray(result[name].isel(time=-1).values, dtype=float), False


def _interval_err(result: xr.Dataset, name: str, value: float) -> tuple[float, float]:
    key = f"{name}_plateau_interval"
    if key not in result or not np.all(np.isfinite(result[key].values)):
        return 0.0, 0.0
    lo, hi = (float(v) for v in result[key].values)
    return max(value - lo, 0.0), max(hi - value, 0.0)


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

    ``media`` maps medium name to {energy [PeV]: isotropic transport result}. Error bars are the
    bootstrap intervals; where no diffusive plateau was reached the last running value is drawn
    with an open, grey-edged marker and no error bar.
    """
    fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH_IN, 2.6), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    all_e = []
    for k, (name, by_energy) in enumerate(media.items()):
        energies, results = _energy_series(by_energy)
        all_e.extend(energies)
        style = medium_style(by_energy)
        color = colors[k % len(colors)]
        for ax, var in zip(axes[:2], ("D_par", "D_perp")):
            vals, errs, reached = [], [], []
            for ds in results:
                v, ok = plateau_or_late(ds, var)
                vals.append(float(v))
                errs.append(_interval_err(ds, var, float(v)) if ok else (0.0, 0.0))
                reached.append(ok)
            vals, reached = np.array(vals), np.array(reached)
            ax.plot(energies, vals, color=color, ls=style["linestyle"], lw=1.2, label=name)
            ax.errorbar(energies[reached], vals[reached], yerr=np.array(errs)[reached].T, fmt="none",
                        ecolor=color, capsize=2)
            ax.plot(energies[reached], vals[reached], ls="none", marker=style["marker"], color=color,
                    markersize=4, markerfacecolor=style.get("markerfacecolor", color))
            ax.plot(energies[~reached], vals[~reached], ls="none", marker=style["marker"],
                    markersize=5, markerfacecolor="white", markeredgecolor="0.5")
        y = np.array([float(ds["D_mumu_over_omega_early"]) for ds in results])
        iv = np.array([ds["D_mumu_over_omega_early_interval"].values for ds in results])
        axes[2].errorbar(energies, y, yerr=np.abs(np.stack([y - iv[:, 0], iv[:, 1] - y])), color=color,
                         capsize=2, label=name, **style)
    _empirical_band(axes[0], np.array(all_e))
    labels = (r"$D_\parallel$ [cm$^2$ s$^{-1}$]", r"$D_\perp$ [cm$^2$ s$^{-1}$]", r"$D_{\mu\mu}/\Omega$")
    for ax, lab in zip(axes, labels):
        _energy_axes(ax, all_e)
        ax.set_ylabel(lab, fontsize=8)
    axes[0].legend(fontsize=6, frameon=False, loc="upper left")
    axes[2].legend(fontsize=7, frameon=False)
    twophase.overlay_fig7(axes, media, mono)  # Bohm, QLT kappa_par, energy slopes (issue 14)
    return fig


def fig8_phase_matrix(media: Mapping[str, Mapping[float, xr.Dataset]]) -> plt.Figure:
    """Paper Fig. 8: the 3x3 phase-phase matrices D∥_αβ (blue) and D⊥_αβ (red) vs energy.

    Late-window (plateau) matrices (Eqs. 13-14); where no plateau was reached, the running
    matrix at the last output time. Log y: negative entries are drawn at their magnitude with
    open markers (listed in the panel as "<0").
    """
    first = next(iter(next(iter(media.values())).values()))
    phases = [str(p) for p in first["phase_a"].values]
    n = len(phases)
    fig, axes = plt.subplots(n, n, figsize=(PAGE_WIDTH_IN, PAGE_WIDTH_IN * 0.85), sharex=True,
                             constrained_layout=True)
    for name, by_energy in media.items():
        energies, results = _energy_series(by_energy)
        style = medium_style(by_energy)
        for var, color in (("D_par_matrix", "tab:blue"), ("D_perp_matrix", "tab:red")):
            mats = []
            for ds in results:
                m = np.asarray(ds[f"{var}_plateau"].values, dtype=float)
                if not np.all(np.isfinite(m)):
                    m = np.asarray(ds[var].isel(time=-1).values, dtype=float)
                mats.append(m)
            mats = np.array(mats)  # (energy, a, b)
            for a in range(n):
                for b in range(n):
                    ax = axes[a, b]
                    v = mats[:, a, b]
                    ax.plot(energies, np.abs(v), color=color, ls=style["linestyle"], lw=1.1)
                    pos, neg = v > 0, v < 0
                    ax.plot(energies[pos], v[pos], ls="none", marker=style["marker"], ms=3, color=color)
                    ax.plot(energies[neg], -v[neg], ls="none", marker=style["marker"], ms=4,
                            markerfacecolor="white", markeredgecolor=color)
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
               Line2D([], [], color="tab:red", label=r"$D^\perp_{\alpha\beta}$"),
               Line2D([], [], color="k", marker="o", ls="none", markerfacecolor="white", label="negative")]
    for name, by_energy in media.items():
        st = medium_style(by_energy)
        handles.append(Line2D([], [], color="k", ls=st["linestyle"], label=name))
    fig.legend(handles=handles, fontsize=7, frameon=False, loc="outside lower center",
               ncol=len(handles))
    return fig


def fig9_effective_diffusion(media: Mapping[str, Mapping[float, xr.Dataset]]) -> plt.Figure:
    """Paper Fig. 9: D_eff,α = D_αα/f_α vs energy per phase (parallel, perpendicular) and the
    total coefficient (black dash-dotted). Plateau values; last running values where none."""
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 2.8), constrained_layout=True)
    phase_colors = {"CNM": "tab:blue", "UNM": "tab:green", "WNM": "tab:red"}
    for name, by_energy in media.items():
        energies, results = _energy_series(by_energy)
        style = medium_style(by_energy)
        phases = [str(p) for p in results[0]["phase"].values]
        for ax, comp in zip(axes, ("par", "perp")):
            total = np.array([float(plateau_or_late(ds, f"D_{comp}")[0]) for ds in results])
            ax.plot(energies, total, color="k", ls="-." if style["linestyle"] == "-" else ":", lw=1.3,
                    label=f"{name}: total")
            for i, ph in enumerate(phases):
                vals = []
                for ds in results:
                    v = np.asarray(ds[f"D_eff_{comp}_plateau"].values, dtype=float)[i]
                    if not np.isfinite(v):
                        v = float(ds[f"D_eff_{comp}"].isel(time=-1).values[i])
                    vals.append(v)
                vals = np.array(vals)
                if not np.any(np.isfinite(vals) & (vals > 0)):
                    continue
                ax.plot(energies, vals, color=phase_colors.get(ph, None), ls=style["linestyle"],
                        marker=style["marker"], ms=3, label=f"{name}: {ph}")
    all_e = [e for by_energy in media.values() for e in by_energy]
    for ax, comp in zip(axes, (r"\parallel", r"\perp")):
        _energy_axes(ax, all_e)
        ax.set_ylabel(rf"$D^{{\rm eff}}_{{{comp}}}$ [cm$^2$ s$^{{-1}}$]", fontsize=8)
    axes[1].legend(fontsize=6, frameon=False, ncol=2)
    twophase.overlay_fig9(axes, media)  # kappa_H-kappa_A band, c^2/(3 nu_eff) (issue 14)
    return fig
