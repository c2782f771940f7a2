"""Field-line tracer used by Fig. 4: exact field lines of analytic fields."""

from __future__ import annotations

import numpy as np

from conftest import make_fields
from cosmicflow.fieldlines import sample_periodic, trace_field_lines
from cosmicflow.snapshot import read_snapshot, write_snapshot


def _snapshot(tmp_path, bx, by, bz, box=100.0):
    f = make_fields(bx.shape)
    f.update(bx=bx.astype("f4"), by=by.astype("f4"), bz=bz.astype("f4"))
    return read_snapshot(write_snapshot(tmp_path / "s.h5", f, box))


def test_sample_periodic_is_cell_centred_and_wraps(tmp_path):
    n, box = 8, 8.0
    g = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, n, n)).copy()
    pts = np.array([[0.5, 1, 1], [1.0, 1, 1], [8.0, 1, 1], [0.0, 1, 1], [7.75, 1, 1]])
    vals = sample_periodic((g,), pts, np.zeros(3), np.ones(3) * box / n)[0]
    # value at a cell centre is the cell's value; between the last and first centre it wraps
    np.testing.assert_allclose(vals, [0.0, 0.5, 3.5, 3.5, 5.25])


def test_field_line_of_sinusoidal_field_matches_exact_curve(tmp_path):
    # B = B0 z + d sin(k z) x: dx/dz = (d/B0) sin(kz), so x(z) = x0 + d/(B0 k) (cos k z0 - cos k z)
    n, box, b0, d = 64, 100.0, 3.0, 1.0
    k = 2 * np.pi / box
    z = (np.arange(n) + 0.5) * box / n
    bx = np.broadcast_to(d * np.sin(k * z)[None, None, :], (n, n, n))
    snap = _snapshot(tmp_path, bx, np.zeros((n, n, n)), np.full((n, n, n), b0))
    seeds = np.array([[10.0, 20.0, 5.0], [60.0, 70.0, 40.0]])
    lines, strength = trace_field_lines(snap, seeds, length_pc=30.0, step_pc=0.25)
    for s, line in zip(seeds, lines):
        exact = s[0] + d / (b0 * k) * (np.cos(k * s[2]) - np.cos(k * line[:, 2]))
        # trilinear interpolation of a sine: error ~ (k dx)^2 / 8 of the amplitude d/(B0 k)
        np.testing.assert_allclose(line[:, 0], exact, atol=2e-3 * d / (b0 * k))
        np.testing.assert_allclose(line[:, 1], s[1], atol=1e-9)
    assert lines.shape == (2, 2 * 120 + 1, 3)
    np.testing.assert_allclose(strength, np.hypot(b0, d * np.sin(k * lines[..., 2])), rtol=2e-3)
