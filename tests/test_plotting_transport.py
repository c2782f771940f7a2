"""Figures 4 and 7-9 draw what the transport results say and nothing else.

The must-show check of issue 12: no figure or derived number shows a substituted value.
Results are built from constructed batches: one medium with a plateau at every energy, one
whose D(t) still rises (no plateau). The test reads the drawn data back from the artists
(each carries a gid "<kind>|<quantity>|<medium>") and compares it with the summary rows.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from particle_batches import log_times, make_batch, random_walk  # noqa: E402
from test_plateau_statistics import drifting_walk  # noqa: E402

from cosmicflow import plotting_transport as pt  # noqa: E402
from cosmicflow import transport as tr  # noqa: E402
from cosmicflow.constants import PC_CM  # noqa: E402

ENERGIES = (1.5, 5.0, 15.0)
PARAMS = tr.TransportParams(bootstrap_samples=100)


def _result(kind: str, energy: float, seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    t = log_times(30, 1e8, 1e11)
    if kind == "plateau":
        disp, pdisp, ptime = random_walk(rng, 2000, t, 1e29 * energy**0.3 / PC_CM**2,
                                         3e28 * energy**0.3 / PC_CM**2, (0, 0, 1), [0.2, 0.3, 0.5])
    else:
        disp = drifting_walk(rng, 2000, t, 1e-8, 0.4, (0, 0, 1))
        pdisp = ptime = None
    ds = make_batch(t, disp, phase_displacement=pdisp, phase_time=ptime, energy_PeV=energy,
                    medium=kind)
    ds["hist_epsilon"].values[:] = 1
    res = tr.analyse_transport(ds, PARAMS, {"cell_pc": 0.78, "box_pc": 100.0, "median_B_uG": 3.0,
                                            "rms_dB_uG": 3.0, "correlation_length_pc": 10.0,
                                            "correlation_length_axes_pc": [10.0] * 3, "fft_stride": 1})
    return res


@pytest.fixture(scope="module")
def media():
    return {kind: {e: _result(kind, e, 10 * i + j) for j, e in enumerate(ENERGIES)}
            for i, kind in enumerate(("plateau", "drifting"))}


@pytest.fixture(scope="module")
def summary(media):
    return pd.DataFrame([tr.summary_row(ds) for by_e in media.values() for ds in by_e.values()])


def _drawn(fig, prefix: str) -> dict[str, np.ndarray]:
    """{gid: ydata} of every line whose gid starts with ``prefix`` (all axes)."""
    out: dict[str, list] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            gid = line.get_gid() or ""
            if gid.startswith(prefix) and len(line.get_ydata()):
                out.setdefault(gid, []).append((np.asarray(line.get_xdata(), float),
                                                np.asarray(line.get_ydata(), float)))
    return out


def test_summary_never_substitutes(media, summary):
    drift = summary[summary["medium"] == "drifting"]
    for comp in ("par", "perp"):
        assert drift[f"D_{comp}_regime"].eq("superdiffusive").all()
        assert drift[f"D_{comp}_limit_kind"].eq("lower").all()
        for ph in ("CNM", "UNM", "WNM"):
            assert drift[f"D_eff_{comp}_{ph}_cm2_s"].isna().all()
            assert drift[f"D_{comp}_{ph}_{ph}_cm2_s"].isna().all()
        reached = summary[f"D_{comp}_plateau_reached"].astype(bool)
        assert reached.sum() >= 2  # the random walks: a true plateau is refused in ~5 % of runs
        # a value exactly where the plateau test passed, a limit exactly where it failed
        assert summary.loc[reached, f"D_{comp}_cm2_s"].notna().all()
        assert summary.loc[~reached, [f"D_{comp}_cm2_s", f"D_{comp}_lo_cm2_s", f"D_{comp}_hi_cm2_s"]].isna().all().all()
        assert summary.loc[reached, f"D_{comp}_limit_cm2_s"].isna().all()
        assert summary.loc[reached, f"D_{comp}_limit_kind"].eq("plateau").all()
    # every unresolved row says so (r_L(1.5-15 PeV, 3 uG) < 10 cells of 0.78 pc)
    assert summary["flag_rl_unresolved"].all() and summary["caveats"].str.contains("resolve").all()
    for medium, by_e in media.items():
        for e, ds in by_e.items():
            row = summary[(summary["medium"] == medium) & (summary["energy_PeV"] == e)].iloc[0]
            if row["D_par_limit_kind"] in ("lower", "upper"):
                assert row["D_par_limit_cm2_s"] == pytest.approx(float(ds["D_par"].values[-1]))


def _kind_points(fig, comp, medium):
    """{kind: (energies, values)} drawn for D_comp of a medium."""
    out = {}
    for gid, pairs in _drawn(fig, "").items():
        kind, name, med = (gid.split("|") + ["", ""])[:3]
        if name == f"D_{comp}" and med == medium and kind != "line":
            out[kind] = (np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs]))
    return out


def test_fig7_draws_plateaus_filled_and_running_values_only_as_limits(media, summary):
    fig = pt.fig7_diffusion_vs_energy(media)
    for comp in ("par", "perp"):
        for medium in media:
            rows = summary[summary["medium"] == medium].sort_values("energy_PeV")
            drawn = _kind_points(fig, comp, medium)
            reached = rows[f"D_{comp}_plateau_reached"].astype(bool).values
            if reached.any():
                x, y = drawn.pop("plateau")
                np.testing.assert_allclose(x, rows["energy_PeV"].values[reached])
                np.testing.assert_allclose(y, rows[f"D_{comp}_cm2_s"].values[reached], rtol=1e-12)
            for kind, (x, y) in drawn.items():  # open points: exactly the failed rows, their limits
                sel = rows[f"D_{comp}_limit_kind"].values == kind
                np.testing.assert_allclose(x, rows["energy_PeV"].values[sel])
                if kind in ("lower", "upper"):
                    np.testing.assert_allclose(y, rows[f"D_{comp}_limit_cm2_s"].values[sel], rtol=1e-12)
                assert not reached[sel].any()
            # the joining line passes through plateau values only
            (_, yl), = _drawn(fig, f"line|D_{comp}|{medium}")[f"line|D_{comp}|{medium}"]
            np.testing.assert_array_equal(np.isfinite(yl), reached)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("lower limit" in t for t in labels) and any("unresolved" in t for t in labels)
    assert _drawn(fig, "flag|rl_unresolved")
    lo, hi = fig.axes[1].get_ylim()
    assert np.log10(hi / lo) >= 1.5 - 1e-9


def test_fig8_and_fig9_draw_no_running_value_as_a_plateau(media, summary):
    fig8 = pt.fig8_phase_matrix(media)
    assert not _drawn(fig8, "plateau|D_par_matrix|drifting")
    assert _drawn(fig8, "none|D_par_matrix|drifting")
    drawn = _drawn(fig8, "plateau|D_par_matrix|plateau")
    values = np.concatenate([y for pairs in drawn.values() for _, y in pairs])
    table = summary[(summary["medium"] == "plateau") & summary["D_par_plateau_reached"].astype(bool)]
    expect = np.concatenate([np.abs(table[f"D_par_{a}_{b}_cm2_s"].values)
                             for a in ("CNM", "UNM", "WNM") for b in ("CNM", "UNM", "WNM")])
    assert values.size and np.all(np.isfinite(expect))
    for v in values:
        assert np.min(np.abs(expect - abs(v)) / abs(v)) < 1e-12
    # the legend's negative marker is the one drawn for negatives
    neg = [h for h in fig8.legends[0].legend_handles if h.get_label().startswith("negative")]
    assert all(h.get_marker() == "v" for h in neg)
    fig9 = pt.fig9_effective_diffusion(media)
    assert not any(k.endswith("|drifting") for k in _drawn(fig9, "plateau|D_eff"))
    (x, y), = _drawn(fig9, "plateau|D_eff_par_WNM|plateau")["plateau|D_eff_par_WNM|plateau"]
    table = table.sort_values("energy_PeV")
    np.testing.assert_allclose(x, table["energy_PeV"])
    np.testing.assert_allclose(y, table["D_eff_par_WNM_cm2_s"], rtol=1e-12)
    # error bars are drawn (one LineCollection per errorbar call)
    assert any(len(ax.collections) for ax in fig9.axes)


def test_fig4_shows_a_whole_reflecting_run(tmp_path):
    """A trajectory that reverses μ where |B| peaks is picked and drawn in full, unwrapped."""
    from cosmicflow.snapshot import read_snapshot, write_snapshot
    from conftest import make_fields

    fields = make_fields(shape=(16, 16, 16))
    path = write_snapshot(tmp_path / "snapshot.h5", fields, box_pc=10.0)
    snap = read_snapshot(path)
    n = 400
    t_omega = np.linspace(0, 200, n)
    mu = np.stack([np.cos(t_omega / 60), np.full(n, 0.5)])  # the first reverses near tΩ = 94
    b = np.stack([3 + 2 * np.exp(-((t_omega - 60 * np.pi / 2) / 5) ** 2), np.full(n, 3.0)])
    pos = np.stack([np.stack([t_omega * 0.2, np.sin(t_omega), np.cos(t_omega)], axis=1)] * 2)  # 40 pc: 4 boxes
    batch = xr.Dataset(
        {"traj_position": (("traj", "sample", "component"), pos), "traj_t_omega": (("traj", "sample"), np.stack([t_omega] * 2)),
         "traj_mu": (("traj", "sample"), mu), "traj_B": (("traj", "sample"), b)},
        attrs={"medium": "toy", "energy_PeV": 5.0, "larmor_radius_pc": 0.5},
    )
    itraj, k = pt.pick_trajectory(batch)
    assert itraj == 0 and abs(t_omega[k] - 60 * np.pi / 2) < 2
    fig = pt.fig4_trajectory_3d(snap, batch, n_field_lines=2)
    ax3d = [ax for ax in fig.axes if ax.name == "3d"]
    assert len(ax3d) == 3  # the whole run, and the zoom on density and on temperature
    xlo, xhi = ax3d[0].get_xlim()
    assert xhi - xlo > 40  # the whole unwrapped run, beyond one box of 10 pc
    assert all(ax.get_zlabel() == "z [pc]" and ax.get_xlabel() == "x [pc]" for ax in ax3d)
    whole = [ln for ax in fig.axes if ax.name != "3d" for ln in ax.get_lines() if len(ln.get_xdata()) == n]
    assert len(whole) == 2  # mu and |B| along the whole run
    assert math.isclose(float(whole[0].get_xdata()[-1]), 200.0)
    fig.savefig(tmp_path / "fig4.png", dpi=80)


@pytest.mark.parametrize("name", ["fig7_diffusion_vs_energy", "fig8_phase_matrix", "fig9_effective_diffusion"])
def test_transport_figures_keep_their_layout(media, name):
    """Every panel keeps a readable width: an empty flag rug once had a tight bbox at the
    figure origin and the constrained layout squeezed the panels to slivers (or gave up)."""
    import warnings

    fig = getattr(pt, name)(media)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="constrained_layout not applied")
        fig.canvas.draw()
    width = fig.get_window_extent().width
    ncols = fig.axes[0].get_subplotspec().get_gridspec().ncols
    for ax in fig.axes:
        assert ax.get_window_extent().width > 0.5 * width / ncols, (name, ax.get_title())
