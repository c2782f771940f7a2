"""Figures 1-3 build from stage outputs, with labelled axes, colour bars and phase thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from conftest import make_fields
from cosmicflow import plotting
from cosmicflow.gradients import run_gradients
from cosmicflow.phases import run_phases
from cosmicflow.snapshot import write_snapshot

PHASES = {"thresholds_K": [200.0, 5000.0], "names": ["CNM", "UNM", "WNM"]}
SHAPE = (16, 12, 10)


@pytest.fixture(scope="module")
def stage_outputs(tmp_path_factory):
    """phases + gradients outputs of a three-phase box and an isothermal one."""
    root = tmp_path_factory.mktemp("media")
    out = {"slices": {}, "histograms": {}, "gradients": {}}
    for medium, seed in (("multiphase", 1), ("isothermal", 2)):
        f = make_fields(SHAPE, seed=seed)
        attrs = {}
        if medium == "isothermal":
            f["temperature"] = np.full(SHAPE, 12000.0, np.float32)
            attrs = {"equation_of_state": "isothermal", "mean_molecular_weight": 1.0}
        d = root / medium
        write_snapshot(d / "snapshot.h5", f, 20.0, attrs=attrs)
        run_phases(d / "snapshot.h5", d / "phases.csv", d / "h.nc", d / "s.nc", PHASES, medium,
                   chunk_cells=500)
        run_gradients(d / "snapshot.h5", d / "g.nc", {"energies_PeV": [1.5, 15.0]}, PHASES,
                      medium, chunk_cells=500)
        out["slices"][medium] = xr.load_dataset(d / "s.nc", engine="h5netcdf")
        out["histograms"][medium] = xr.load_dataset(d / "h.nc", engine="h5netcdf")
        out["gradients"][medium] = xr.load_dataset(d / "g.nc", engine="h5netcdf")
    return out


def _colorbars(fig):
    return [ax._colorbar for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def _panels(fig):
    return [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is None]


def _check_labels(fig, n_panels, n_colorbars):
    """Outer panels carry axis labels (inner ones share them), every colour bar a label."""
    panels = _panels(fig)
    assert len(panels) == n_panels
    for ax in panels:
        spec = ax.get_subplotspec()
        if spec.is_first_col():
            assert ax.get_ylabel(), f"panel {spec.rowspan.start},{spec.colspan.start} lacks y label"
        if spec.is_last_row():
            assert ax.get_xlabel(), f"panel {spec.rowspan.start},{spec.colspan.start} lacks x label"
        if spec.is_first_row():
            assert ax.get_title(loc="left") or ax.get_title()
    cbs = _colorbars(fig)
    assert len(cbs) == n_colorbars
    for cb in cbs:
        assert cb.ax.get_ylabel()
        assert cb.norm.__class__.__name__ == "LogNorm"


def test_fig1_slices(stage_outputs, tmp_path):
    fig = plotting.fig1_slices(stage_outputs["slices"])
    _check_labels(fig, n_panels=6, n_colorbars=3)
    labels = [cb.ax.get_ylabel() for cb in _colorbars(fig)]
    assert "cm$^{-3}$" in labels[0] and "M_\\mathrm{A}" in labels[1] and "M_\\mathrm{s}" in labels[2]
    assert [ax.get_ylabel() for ax in _panels(fig)[::2]] == ["z [pc]"] * 3
    plotting.save_figure(fig, tmp_path / "f1.png", tmp_path / "f1.pdf")
    assert (tmp_path / "f1.png").stat().st_size > 10_000 and (tmp_path / "f1.pdf").exists()


def test_fig2_marks_phase_thresholds(stage_outputs):
    fig = plotting.fig2_phase_histograms(stage_outputs["histograms"])
    _check_labels(fig, n_panels=6, n_colorbars=2)
    for ax in _panels(fig):
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        hlines = sorted({line.get_ydata()[0] for line in ax.get_lines()
                         if line.get_ydata()[0] == line.get_ydata()[1]})
        assert hlines == [200.0, 5000.0]
    assert _panels(fig)[0].get_ylabel() == "$T$ [K]"
    texts = {t.get_text() for ax in _panels(fig) for t in ax.texts}
    assert {"CNM", "UNM", "WNM"} <= texts


def test_fig3_gradient_histogram(stage_outputs, tmp_path):
    fig = plotting.fig3_gradient_histogram(stage_outputs["gradients"])
    panels = _panels(fig)
    assert len(panels) == 2 and len(_colorbars(fig)) == 1
    multi, iso = panels
    assert "nabla T" in multi.get_xlabel() and "K pc" in multi.get_xlabel()
    assert "nabla B" in multi.get_ylabel() and "mu" in multi.get_ylabel()
    # the isothermal box has no temperature gradient: drawn as the |grad B| distribution
    assert iso.get_xlabel() == "cells per bin" and "nabla B" in iso.get_ylabel()
    assert any("isothermal" in t.get_text() for t in iso.texts)
    plotting.save_figure(fig, tmp_path / "f3.png")
    assert (tmp_path / "f3.png").stat().st_size > 10_000


def test_single_medium_and_empty_input(stage_outputs):
    fig = plotting.fig3_gradient_histogram({"multiphase": stage_outputs["gradients"]["multiphase"]})
    assert len(_panels(fig)) == 1
    with pytest.raises(ValueError, match="no media"):
        plotting.fig1_slices({})
