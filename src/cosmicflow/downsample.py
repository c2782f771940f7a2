"""Block-average a canonical snapshot to a coarser grid (quick looks at big snapshots).

Each coarse cell is the average over a cube of f^3 fine cells, chosen so the conserved
quantities of the box are kept exactly:

.. math::

    n_c = \\langle n \\rangle_f, \\qquad
    \\mathbf{B}_c = \\langle \\mathbf{B} \\rangle_f, \\qquad
    \\mathbf{v}_c = \\frac{\\langle n \\mathbf{v} \\rangle_f}{\\langle n \\rangle_f}, \\qquad
    T_c = \\frac{\\langle n T \\rangle_f}{\\langle n \\rangle_f}

where :math:`\\langle\\cdot\\rangle_f` is the plain average over the block. Mass (density), the
mean field :math:`\\langle \\mathbf{B} \\rangle` (the volume average of block averages is the
volume average), momentum (mass-weighted velocity) and thermal energy at fixed mean molecular
weight (P = n k_B T, so block-averaged pressure) are conserved. Small-scale structure below
f cells is lost: transport through a downsampled field is not the transport of the original.
The work streams f x-planes at a time, so memory stays at a few fine planes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cosmicflow.io import InputError
from cosmicflow.snapshot import FIELDS, read_snapshot, snapshot_writer


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f x f blocks of a (f*nx, f*ny, f*nz) array, in float64."""
    nx, ny, nz = (s // f for s in a.shape)
    return a.reshape(nx, f, ny, f, nz, f).mean(axis=(1, 3, 5), dtype=np.float64)


def downsample_fields(fields: dict[str, np.ndarray], factor: int) -> dict[str, np.ndarray]:
    """Block-average in-memory canonical fields by ``factor`` (see module docstring)."""
    f = int(factor)
    n = np.asarray(fields["density"], dtype=np.float64)
    n_c = _block_mean(n, f)
    out = {"density": n_c}
    for c in ("bx", "by", "bz"):
        out[c] = _block_mean(np.asarray(fields[c], dtype=np.float64), f)
    for c in ("vx", "vy", "vz", "temperature"):
        out[c] = _block_mean(n * np.asarray(fields[c], dtype=np.float64), f) / n_c
    return {k: out[k].astype(np.float32) for k in FIELDS}


def downsample_snapshot(source: str | Path, output: str | Path, factor: int) -> Path:
    """Write ``output``, the snapshot ``source`` block-averaged by ``factor`` along each axis.

    Every grid dimension must be divisible by ``factor``. Attributes are carried over, with
    ``downsampled_from`` and ``downsample_factor`` added.
    """
    snap = read_snapshot(source, validate=False)
    f = int(factor)
    if f < 1:
        raise ValueError(f"downsample factor must be a positive integer, got {factor}")
    if any(s % f for s in snap.shape):
        raise InputError(
            f"{source}: grid {snap.shape} is not divisible by the downsample factor {f}"
        )
    coarse = tuple(s // f for s in snap.shape)
    # geometry attributes are recomputed by the writer for the coarse grid
    geometry = {"box_size_pc", "origin_pc", "cell_size_pc", "conventions", "boundary",
                "index_order", "units"}
    attrs = {k: v for k, v in snap.attrs.items() if k not in geometry and not k.startswith("_NC")}
    attrs.update(downsampled_from=str(source), downsample_factor=f)
    with snapshot_writer(output, coarse, snap.box_pc, snap.origin_pc, attrs) as w:
        for i in range(coarse[0]):
            planes = {k: np.asarray(snap[k][i * f:(i + 1) * f]) for k in FIELDS}
            block = downsample_fields(planes, f)
            for k in FIELDS:
                w[k][i:i + 1] = block[k]
    return Path(output)
