"""Magnetic field lines through a canonical snapshot (for paper Fig. 4).

A field line solves dx/ds = B(x)/|B(x)|; it is traced with classical RK4 in arc length s [pc]
through the periodic, trilinearly interpolated cell-centred field. Positions are unwrapped
(the line may leave the box; the field wraps).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates

from cosmicflow.snapshot import Snapshot


def sample_periodic(
    grids: tuple[np.ndarray, ...], points_pc: np.ndarray, origin_pc: np.ndarray, cell_pc: np.ndarray
) -> np.ndarray:
    """Trilinear periodic interpolation of cell-centred grids at ``points_pc`` (n, 3) [pc].

    Cell (i, j, k) is centred at origin + (i + 1/2) dx, so the fractional grid index of a point
    is (x - origin)/dx - 1/2; ``grid-wrap`` makes the interpolation periodic. Returns
    (len(grids), n).
    """
    idx = ((np.asarray(points_pc) - origin_pc) / cell_pc - 0.5).T
    return np.stack([map_coordinates(np.asarray(g), idx, order=1, mode="grid-wrap") for g in grids])


def trace_field_lines(
    snap: Snapshot, seeds_pc: np.ndarray, length_pc: float, step_pc: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Trace field lines from ``seeds_pc`` (n, 3) both ways for ``length_pc`` each way.

    Returns ``(lines, strength)``: positions (n, m, 3) [pc] and |B| (n, m) [uG] along them,
    m = 2 * length/step + 1, ordered from the backward end to the forward end.
    """
    grids = (snap["bx"], snap["by"], snap["bz"])
    cell = snap.cell_pc
    h = float(step_pc if step_pc is not None else 0.5 * cell.min())
    n_steps = int(np.ceil(length_pc / h))

    def direction(p: np.ndarray) -> np.ndarray:
        b = sample_periodic(grids, p, snap.origin_pc, cell).T
        return b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-30)

    def walk(sign: float) -> np.ndarray:
        p = np.array(seeds_pc, dtype=np.float64)
        out = [p.copy()]
        for _ in range(n_steps):
            k1 = direction(p)
            k2 = direction(p + 0.5 * sign * h * k1)
            k3 = direction(p + 0.5 * sign * h * k2)
            k4 = direction(p + sign * h * k3)
            p = p + sign * h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
            out.append(p.copy())
        return np.stack(out, axis=1)

    lines = np.concatenate([walk(-1.0)[:, ::-1], walk(+1.0)[:, 1:]], axis=1)
    b = sample_periodic(grids, lines.reshape(-1, 3), snap.origin_pc, cell)
    strength = np.linalg.norm(b, axis=0).reshape(lines.shape[:2])
    return lines, strength
