"""Figs. 10-11 (cosmicflow.plotting_mechanisms) draw from constructed results without error."""

from __future__ import annotations

import numpy as np
from particle_batches import labelled_ou_walk, make_batch, random_labels, with_classes

from cosmicflow import transport as tr
from cosmicflow.fieldlines import FieldLineParams, field_line_statistics
from cosmicflow.plotting_mechanisms import fig10_mechanisms, fig11_field_lines
from cosmicflow.snapshot import read_snapshot, write_snapshot
from conftest import make_fields

P = tr.TransportParams(bootstrap_samples=20)


def _result(energy, classes):
    rng = np.random.default_rng(int(energy))
    out = np.unique(np.geomspace(20, 2000, 15).astype(int))
    n_groups = 9 if classes else 3
    p = np.full(n_groups, 1 / n_groups)
    time, disp, gd, gt = labelled_ou_walk(rng, 60, int(out[-1]), 1.0, 50.0, 1e-3, out, random_labels(p), n_groups)
    if classes:
        ds = with_classes(make_batch(time, disp, energy_PeV=energy), gd.reshape(60, -1, 3, 3, 3),
                          gt.reshape(60, -1, 3, 3))
    else:
        ds = make_batch(time, disp, phase_displacement=gd, phase_time=gt, energy_PeV=energy)
    return tr.analyse_transport(ds, P)


def test_fig10_and_fig11_draw(tmp_path):
    media = {"with_classes": {e: _result(e, True) for e in (1.5, 5.0)},
             "phases_only": {e: _result(e, False) for e in (1.5, 5.0)}}
    fig = fig10_mechanisms(media)
    assert len(fig.axes) >= 4
    fig.savefig(tmp_path / "f10.png")
    f = make_fields((16, 16, 16), seed=1, b0=(0.0, 0.0, 3.0))
    snap = read_snapshot(write_snapshot(tmp_path / "s.h5", f, 100.0))
    fl = field_line_statistics(snap, FieldLineParams(n_lines=50, length_box=1.0, step_cells=0.5, bootstrap_samples=10))
    fig = fig11_field_lines({"with_classes": fl}, media)
    assert len(fig.axes) == 3
    fig.savefig(tmp_path / "f11.png")
