r"""Test-particle integration: ultra-relativistic charges through a static snapshot field.

Physics (paper §2.3, Eq. 5)
---------------------------
The equation of motion in a pure magnetic field,

.. math:: \frac{d\mathbf u}{dt} = \frac{q}{\gamma m c}\,\mathbf u\times\mathbf B ,

conserves |u|. For v = c we write u = c n̂ and use the path length s = c t [pc] as the
independent variable:

.. math:: \frac{d\hat{\mathbf n}}{ds} = \frac{Z}{R_1}\,\hat{\mathbf n}\times\mathbf B ,
          \qquad R_1 = 1.0810\,\mathrm{pc}\;\frac{E/\mathrm{PeV}}{Z}\Big/ (1\,\mu\mathrm G),

where B is in µG and R_1 = r_L(E, B = 1 µG) (:data:`cosmicflow.constants.LARMOR_PC_PER_PEV_UG`),
so the local gyroradius is r_L = R_1/|B| and the gyrofrequency Ω = c/r_L. The reference
values Ω_ref = c / r_L(B_ref), with B_ref = |⟨B⟩| unless configured, define "gyro-periods"
2π/Ω_ref and t Ω_ref.

Integrator (drift-kick-drift Boris, as CRPropa's PropagationBP)
---------------------------------------------------------------
One step of path h: half drift x_{n+½} = x_n + (h/2) n̂_n; field B = B(x_{n+½}) by trilinear
interpolation; Boris rotation n̂_{n+1} = R n̂_n with t = B h/(2R_1), s = 2t/(1+t²),
n' = n̂ + n̂×t, n̂_{n+1} = n̂ + n'×s (an exact rotation by 2·atan(Ω h/2), so |n̂| = 1 to
round-off); half drift x_{n+1} = x_{n+½} + (h/2) n̂_{n+1}. Positions and directions are
synchronised at whole steps; in a uniform field the whole-step positions lie on a circle of
radius exactly r_L √(1−μ²) (the field-evaluation points x_{n+½} on one of radius
r_L √(1−μ²) √(1+(Ωh/2)²)).

Step rule: h = min(θ_max r_L,loc, f_cell Δx_min, distance to the next output time), with
θ_max = ``max_rotation_rad``, f_cell = ``max_step_cells``, r_L,loc = R_1/|B| from the field at
the previous field evaluation (≤ f_cell cells back; the first step uses the field at
injection). So a step never crosses more than f_cell of a cell, and its rotation angle is
≤ θ_max up to the relative change of |B| over that distance. Steps are shortened to land
exactly on the output times.

Field and phases
----------------
B is cell-centred: cell (i, j, k) holds the value at origin + (i+½, j+½, k+½) Δx. The
interpolation wraps periodically; positions are kept unwrapped (float64 pc) for
displacements, with a wrapped copy in cell units for the look-ups. The thermal phase of a
cell is 0/1/2 (CNM/UNM/WNM) for T < T_1, T_1 ≤ T ≤ T_2, T > T_2 (``phases.thresholds_K``, the
rule of :func:`cosmicflow.phases.phase_index`, so phase maps and particle phases agree);
each step's displacement increment and path go to the phase of the cell holding the
step's midpoint x_{n+½}, so Σ_α Δr_α = Δr and Σ_α t_α = t.

The pusher reads the field in its own layout (:func:`padded_field`): per cell the float32
(B_x, B_y, B_z, T) side by side, with one periodic ghost layer, so the 8 corners of a
look-up are 4–5 cache lines instead of 13–16 and their indices never wrap. The phase of the
midpoint cell is one of those corners' T compared with the thresholds in the kernel (no phase
grid). Each thread pushes LANES particles in lock-step and prefetches all their corner lines
before it blends any, so the cache misses of independent particles overlap. The workflow
writes this layout once per snapshot (rule ``field_cache``, :func:`write_field_cache`) and
every job memory-maps it.

Cost (``benchmarks/bench_integrate.py``, r_L = 10 cells, one 2-core VM shared with other
jobs): 50-52 ns per particle-step per core with the field in cache (32^3), 53-61 ns on
128^3, 91-116 ns on 512^3 (in memory or memory-mapped from the field cache: the file is
mapped with 2 MB pages, ~260 minor faults for 2 GB), 2-core speed-up 1.96-2.2x. Without the
statistics samples it is ~10 ns less; the rest is arithmetic (the pusher is no longer waiting
for memory below ~128^3): see the benchmark's notes.

Along-trajectory statistics (paper Fig. 5) are sampled every ``stats_cadence_gyroperiods``,
at the field-evaluation point x_{n+½} of the first step ending after each cadence time (μ from
the step's chord direction, the velocity at the midpoint; B and the corner values from the
step's own look-up): |Δμ|/(Δt Ω_ref), |Δ|B||/(Δt Ω_ref) [µG],
|ΔT|/(Δt Ω_ref) [K] between consecutive samples, binned on the fly in fixed log-spaced 2-D
histograms (values outside the edges are counted in the first/last bin; exact zeros in the
first), and the adiabaticity ε = |∇|B|| r_L,ref / |B| histogrammed by the phase of the
particle's cell, with ∇|B| the analytic gradient of the trilinear interpolant of |B| at the 8
surrounding cell centres (no extra grid in memory). The first rates compare with the values
at injection.

Optional sub-grid scattering: each step, with probability 1 − exp(−ν h/c), the direction is
redrawn uniformly on the sphere (ν = ``subgrid_nu_over_omega`` Ω_ref); each particle has its
own splitmix64 stream, so results do not depend on thread scheduling.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time as _time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit, prange

from cosmicflow._numba import JIT, JIT_INLINE, JIT_PARALLEL, prefetch
from cosmicflow.constants import C_CM_S, LARMOR_PC_PER_PEV_UG, PC_CM
from cosmicflow.io import InputError, atomic_output, provenance_attrs
from cosmicflow.resources import integrate_memory_mb, require_memory
from cosmicflow.snapshot import _slabs, read_snapshot

__all__ = [
    "IntegrateSettings",
    "HIST_EDGES",
    "boris_rotate",
    "phase_grid",
    "phase_volume_fraction",
    "padded_field",
    "write_field_cache",
    "read_field_cache",
    "interpolate",
    "inject",
    "integrate_particles",
    "integrate_batch",
    "batch_seed",
    "output_t_omega",
]

log = logging.getLogger(__name__)

#: speed of light [pc s^-1]
C_PC_S = C_CM_S / PC_CM
INJECTIONS = ("isotropic", "mono")

#: log10 range and bins per decade of the on-the-fly histograms: (lo, hi, per decade)
_HIST_SPEC = {
    "dmu": (-6.0, 2.0, 10),  # |dmu/d(t Omega)|
    "dB": (-6.0, 3.0, 10),  # |d|B|/d(t Omega)| [uG]
    "dT": (-3.0, 7.0, 10),  # |dT/d(t Omega)| [K]
    "eps": (-5.0, 4.0, 10),  # |grad B| r_L / B
}
#: the fixed log-spaced bin edges of those histograms
HIST_EDGES = {
    k: np.logspace(lo, hi, int(round((hi - lo) * per)) + 1) for k, (lo, hi, per) in _HIST_SPEC.items()
}
_HIST_ARRAY = np.array(
    [[lo, per, int(round((hi - lo) * per))] for lo, hi, per in _HIST_SPEC.values()], dtype=np.float64
)
#: particles sharing one set of histograms inside the parallel loop (results do not depend on it)
_MAX_CHUNKS = 64


# --------------------------------------------------------------------------------------------
# Kernels: plain arrays in stated units, no checks, no I/O
# --------------------------------------------------------------------------------------------


@njit(**JIT_INLINE)
def boris_rotate(nx, ny, nz, bx, by, bz, k):
    r"""One Boris rotation of the unit direction n̂ about B (the kick of a drift-kick-drift step).

    .. math:: \mathbf t = k\mathbf B,\quad \mathbf s = \frac{2\mathbf t}{1+t^2},\quad
              \mathbf n' = \hat{\mathbf n} + \hat{\mathbf n}\times\mathbf t,\quad
              \hat{\mathbf n}_+ = \hat{\mathbf n} + \mathbf n'\times\mathbf s

    where k = h/(2R_1) [µG^-1] for a step of path h [pc] and R_1 = r_L at 1 µG [pc]; the
    result is n̂ rotated by 2·atan(|B| h/(2R_1)) = 2·atan(Ω h/(2c)) in the sense of a
    positive charge (dn̂/ds ∝ n̂ × B). Returns the new (nx, ny, nz).
    """
    tx = bx * k
    ty = by * k
    tz = bz * k
    f = 2.0 / (1.0 + tx * tx + ty * ty + tz * tz)
    px = nx + (ny * tz - nz * ty)
    py = ny + (nz * tx - nx * tz)
    pz = nz + (nx * ty - ny * tx)
    sx = f * tx
    sy = f * ty
    sz = f * tz
    return (nx + (py * sz - pz * sy), ny + (pz * sx - px * sz), nz + (px * sy - py * sx))


@njit(**JIT_INLINE)
def _corner(c, n):
    """Lower/upper cell-centre indices and weight of wrapped cell coordinate c ∈ [0, n].

    Cell i spans [i, i+1) in cell units and its value sits at i + ½, hence the −½.
    """
    g = c - 0.5
    i0 = int(g + 1.0) - 1  # floor for g >= -1 without calling floor
    w = g - i0
    if i0 < 0:
        i0 += n
    i1 = i0 + 1
    if i1 >= n:
        i1 -= n
    return i0, i1, w


@njit(**JIT_INLINE)
def _tri(f, i0, i1, j0, j1, k0, k1, wx, wy, wz):
    """Trilinear sum of the 8 corners of float32 grid f (weights of the upper corners w)."""
    c00 = f[i0, j0, k0] * (1.0 - wz) + f[i0, j0, k1] * wz
    c01 = f[i0, j1, k0] * (1.0 - wz) + f[i0, j1, k1] * wz
    c10 = f[i1, j0, k0] * (1.0 - wz) + f[i1, j0, k1] * wz
    c11 = f[i1, j1, k0] * (1.0 - wz) + f[i1, j1, k1] * wz
    return (c00 * (1.0 - wy) + c01 * wy) * (1.0 - wx) + (c10 * (1.0 - wy) + c11 * wy) * wx


@njit(**JIT_INLINE)
def _field(bx, by, bz, cx, cy, cz):
    """B [µG] at wrapped cell coordinates (cx, cy, cz) by periodic trilinear interpolation."""
    nx, ny, nz = bx.shape
    i0, i1, wx = _corner(cx, nx)
    j0, j1, wy = _corner(cy, ny)
    k0, k1, wz = _corner(cz, nz)
    return (
        _tri(bx, i0, i1, j0, j1, k0, k1, wx, wy, wz),
        _tri(by, i0, i1, j0, j1, k0, k1, wx, wy, wz),
        _tri(bz, i0, i1, j0, j1, k0, k1, wx, wy, wz),
    )


@njit(**JIT_INLINE)
def _scalar(f, cx, cy, cz):
    nx, ny, nz = f.shape
    i0, i1, wx = _corner(cx, nx)
    j0, j1, wy = _corner(cy, ny)
    k0, k1, wz = _corner(cz, nz)
    return _tri(f, i0, i1, j0, j1, k0, k1, wx, wy, wz)


@njit(**JIT_INLINE)
def _grad_bmag(m, wx, wy, wz, inv_dx, inv_dy, inv_dz):
    r"""|∇|B|| [µG pc^-1] of the trilinear interpolant of corner values m [µG].

    m holds |B| at the 8 surrounding cell centres in the order (i, j, k) = 000, 001, 010,
    011, 100, 101, 110, 111 (k fastest); w are the upper-corner weights; inv_d = 1/Δx [pc^-1].
    """
    ux, uy, uz = 1.0 - wx, 1.0 - wy, 1.0 - wz
    gx = (uy * uz * (m[4] - m[0]) + uy * wz * (m[5] - m[1])
          + wy * uz * (m[6] - m[2]) + wy * wz * (m[7] - m[3])) * inv_dx
    gy = (ux * uz * (m[2] - m[0]) + ux * wz * (m[3] - m[1])
          + wx * uz * (m[6] - m[4]) + wx * wz * (m[7] - m[5])) * inv_dy
    gz = (ux * uy * (m[1] - m[0]) + ux * wy * (m[3] - m[2])
          + wx * uy * (m[5] - m[4]) + wx * wy * (m[7] - m[6])) * inv_dz
    return math.sqrt(gx * gx + gy * gy + gz * gz)


@njit(**JIT_INLINE)
def _wrap(c, n):
    """Wrap a cell coordinate moved by less than one box back into [0, n]."""
    if c >= n:
        return c - n
    if c < 0.0:
        return c + n
    return c


@njit(**JIT_INLINE)
def _splitmix64(state):
    """splitmix64 (Steele, Lea & Flood 2014): next state and a 64-bit output."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@njit(**JIT_INLINE)
def _uniform(state):
    """Uniform double in [0, 1) from the top 53 bits; returns (new state, value)."""
    state, z = _splitmix64(state)
    return state, np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(**JIT_INLINE)
def _log_bin(v, lo, per_decade, nbins):
    if v <= 0.0:
        return 0
    b = int(math.floor((math.log10(v) - lo) * per_decade))
    if b < 0:
        return 0
    if b >= nbins:
        return nbins - 1
    return b


@njit(**JIT_INLINE)
def _sample_stats(p, s, tx, ty, tz, fx, fy, fz, ph, buf, wts, lane, m, geom, par, hspec,
                  stat_prev, hist_mu_b, hist_mu_t, hist_eps, chunk):
    """Record one along-trajectory sample at a step's field-evaluation point.

    Uses what the step already has: B = (fx, fy, fz) [µG] there, the step's chord direction
    (tx, ty, tz) (the velocity direction at the midpoint), the 24 corner values in buf for
    ∇|B|, the midpoint cell's phase ph, and the T [K] corner values in buf[lane, 24:32].
    s [pc] is the path at the midpoint; m is scratch space for 8 values.
    """
    bm = math.sqrt(fx * fx + fy * fy + fz * fz)
    tn = math.sqrt(tx * tx + ty * ty + tz * tz)
    mu = (tx * fx + ty * fy + tz * fz) / (bm * tn)
    tt = _blend(buf, wts, lane, 3)  # T corners come with B in every gather
    rl_ref = par[6]
    dto = (s - stat_prev[p, 3]) / rl_ref  # elapsed t Omega_ref since the previous sample
    rmu = abs(mu - stat_prev[p, 0]) / dto
    rb = abs(bm - stat_prev[p, 1]) / dto
    rt = abs(tt - stat_prev[p, 2]) / dto
    imu = _log_bin(rmu, hspec[0, 0], hspec[0, 1], int(hspec[0, 2]))
    ib = _log_bin(rb, hspec[1, 0], hspec[1, 1], int(hspec[1, 2]))
    it = _log_bin(rt, hspec[2, 0], hspec[2, 1], int(hspec[2, 2]))
    hist_mu_b[chunk, imu, ib] += 1
    hist_mu_t[chunk, imu, it] += 1
    for c in range(8):
        ax = np.float64(buf[lane, c])
        ay = np.float64(buf[lane, 8 + c])
        az = np.float64(buf[lane, 16 + c])
        m[c] = math.sqrt(ax * ax + ay * ay + az * az)
    g = _grad_bmag(m, wts[lane, 0], wts[lane, 1], wts[lane, 2], geom[0], geom[1], geom[2])
    ie = _log_bin(g * rl_ref / bm, hspec[3, 0], hspec[3, 1], int(hspec[3, 2]))
    hist_eps[chunk, ph, ie] += 1
    stat_prev[p, 0] = mu
    stat_prev[p, 1] = bm
    stat_prev[p, 2] = tt
    stat_prev[p, 3] = s


@njit(**JIT_INLINE)
def _scatter(nx_, ny_, nz_, state, nu, h):
    """Sub-grid hard-sphere scattering: with probability 1 - exp(-nu h) a new isotropic n̂."""
    state, u = _uniform(state)
    if u < -math.expm1(-nu * h):
        state, u1 = _uniform(state)
        state, u2 = _uniform(state)
        nz_ = 2.0 * u1 - 1.0
        sperp = math.sqrt(max(0.0, 1.0 - nz_ * nz_))
        phi = 2.0 * math.pi * u2
        nx_ = sperp * math.cos(phi)
        ny_ = sperp * math.sin(phi)
    return nx_, ny_, nz_, state


#: values per cell of the padded field grid (:func:`padded_field`): bx, by, bz [µG], T [K]
GRID_VALUES = 4


@njit(**JIT_INLINE)
def _grid_corner(c):
    """Lower corner index q in the padded grid and upper-corner weight w for a wrapped cell
    coordinate c ∈ [0, n].

    Padded index q = i + 1 for the unpadded cell-centre index i = floor(c − ½) ∈ [−1, n−1], so
    q ∈ [0, n] and q + 1 ≤ n + 1 always lie inside the (n + 2)-long padded axis: no wrap, no
    modulo. The arithmetic is that of :func:`_corner`, so weights are bit-identical.
    """
    g = c - 0.5
    q = int(g + 1.0)
    return q, g - (q - 1)


@njit(**JIT_INLINE)
def _grid_base(gdim, cx, cy, cz):
    """Flat offset of the lower corner (value 0) around (cx, cy, cz) and the three weights."""
    qx, wx = _grid_corner(cx)
    qy, wy = _grid_corner(cy)
    qz, wz = _grid_corner(cz)
    return ((qx * gdim[1] + qy) * gdim[2] + qz) * GRID_VALUES, wx, wy, wz


@njit(**JIT_INLINE)
def _grid_value(grid, gdim, cx, cy, cz, v):
    """Value v (0-2: B components [µG], 3: T [K]) at (cx, cy, cz) by trilinear interpolation."""
    o, wx, wy, wz = _grid_base(gdim, cx, cy, cz)
    sj = gdim[2] * GRID_VALUES
    si = gdim[1] * sj
    return _blend_grid(grid, o + v, sj, si, wx, wy, wz)


@njit(**JIT_INLINE)
def _load_cell(grid, o, buf, lane, corner):
    """Copy the 4 values of one corner cell (flat offset o) into buf[lane, corner + 8 v]."""
    buf[lane, corner] = grid[o]
    buf[lane, 8 + corner] = grid[o + 1]
    buf[lane, 16 + corner] = grid[o + 2]
    buf[lane, 24 + corner] = grid[o + 3]


@njit(**JIT_INLINE)
def _gather(grid, gdim, cx, cy, cz, buf, wts, lane):
    """Load the 8 corner cells around (cx, cy, cz) — 32 values, one or two cache lines per
    (i, j) pair — into buf[lane] (component-major: B_x corners 0-7, B_y 8-15, B_z 16-23, T
    24-31; corner order 000, 001, ..., 111 with k fastest) and the weights into wts[lane]."""
    o, wx, wy, wz = _grid_base(gdim, cx, cy, cz)
    wts[lane, 0] = wx
    wts[lane, 1] = wy
    wts[lane, 2] = wz
    sk = GRID_VALUES
    sj = gdim[2] * GRID_VALUES
    si = gdim[1] * sj
    _load_cell(grid, o, buf, lane, 0)
    _load_cell(grid, o + sk, buf, lane, 1)
    _load_cell(grid, o + sj, buf, lane, 2)
    _load_cell(grid, o + sj + sk, buf, lane, 3)
    _load_cell(grid, o + si, buf, lane, 4)
    _load_cell(grid, o + si + sk, buf, lane, 5)
    _load_cell(grid, o + si + sj, buf, lane, 6)
    _load_cell(grid, o + si + sj + sk, buf, lane, 7)


@njit(**JIT_INLINE)
def _prefetch_corners(grid, o, sj, si):
    """Request the cache lines of the 8 corner cells at flat offset o (strides sj, si): each
    (i, j) pair of cells is 32 bytes, in one line or straddling two."""
    prefetch(grid, o)
    prefetch(grid, o + 2 * GRID_VALUES - 1)
    prefetch(grid, o + sj)
    prefetch(grid, o + sj + 2 * GRID_VALUES - 1)
    prefetch(grid, o + si)
    prefetch(grid, o + si + 2 * GRID_VALUES - 1)
    prefetch(grid, o + si + sj)
    prefetch(grid, o + si + sj + 2 * GRID_VALUES - 1)


@njit(**JIT_INLINE)
def _blend_grid(grid, o, sj, si, wx, wy, wz):
    """Trilinear blend of the value at flat offset o (corner 000) and its 7 neighbours
    (the formula of :func:`_tri`, so results are bit-identical to it)."""
    sk = GRID_VALUES
    c00 = grid[o] * (1.0 - wz) + grid[o + sk] * wz
    c01 = grid[o + sj] * (1.0 - wz) + grid[o + sj + sk] * wz
    c10 = grid[o + si] * (1.0 - wz) + grid[o + si + sk] * wz
    c11 = grid[o + si + sj] * (1.0 - wz) + grid[o + si + sj + sk] * wz
    return (c00 * (1.0 - wy) + c01 * wy) * (1.0 - wx) + (c10 * (1.0 - wy) + c11 * wy) * wx


@njit(**JIT_INLINE)
def _cell_offset(gdim, cx, cy, cz):
    """Flat offset of the cell holding wrapped cell coordinates (cx, cy, cz) in the padded
    grid: cell int(c) is padded index int(c) + 1 ∈ [1, n + 1], and index n + 1 holds cell 0,
    so a coordinate of exactly n needs no wrap either. It is one of the 8 look-up corners."""
    return (((int(cx) + 1) * gdim[1] + int(cy) + 1) * gdim[2] + int(cz) + 1) * GRID_VALUES


@njit(**JIT_INLINE)
def _phase_of(t, t1, t2):
    """Phase 0/1/2 of temperature t [K] by :func:`phase_grid`'s rule (T < T_1, T_1 ≤ T ≤ T_2,
    T > T_2; NaN counts as the warm phase), without branches: along a trajectory the phase
    changes every few cells, and a mispredicted branch costs more than the two compares."""
    return 2 - int(t <= t2) - int(t < t1)


@njit(**JIT_INLINE)
def _traj_sample(p, s, x, y, z, cx, cy, cz, nx_, ny_, nz_, grid, gdim, par, traj_pos,
                 traj_aux, traj_count, traj_next):
    """Store a trajectory sample (position, t Ω, μ, |B|, T) at a whole-step point if due."""
    if s < traj_next[p]:
        return
    k = traj_count[p]
    if k < traj_pos.shape[1]:
        gx = _grid_value(grid, gdim, cx, cy, cz, 0)
        gy = _grid_value(grid, gdim, cx, cy, cz, 1)
        gz = _grid_value(grid, gdim, cx, cy, cz, 2)
        gm = math.sqrt(gx * gx + gy * gy + gz * gz)
        traj_pos[p, k, 0] = x
        traj_pos[p, k, 1] = y
        traj_pos[p, k, 2] = z
        traj_aux[p, k, 0] = s / par[6]
        traj_aux[p, k, 1] = (nx_ * gx + ny_ * gy + nz_ * gz) / gm
        traj_aux[p, k, 2] = gm
        traj_aux[p, k, 3] = _grid_value(grid, gdim, cx, cy, cz, 3)
        traj_count[p] = k + 1
    while traj_next[p] <= s:
        traj_next[p] += par[4]


@njit(**JIT_INLINE)
def _blend(buf, wts, lane, c):
    """Trilinear blend of component c from a :func:`_gather` buffer (same formula as _tri)."""
    wx, wy, wz = wts[lane, 0], wts[lane, 1], wts[lane, 2]
    o = 8 * c
    c00 = buf[lane, o + 0] * (1.0 - wz) + buf[lane, o + 1] * wz
    c01 = buf[lane, o + 2] * (1.0 - wz) + buf[lane, o + 3] * wz
    c10 = buf[lane, o + 4] * (1.0 - wz) + buf[lane, o + 5] * wz
    c11 = buf[lane, o + 6] * (1.0 - wz) + buf[lane, o + 7] * wz
    return (c00 * (1.0 - wy) + c01 * wy) * (1.0 - wx) + (c10 * (1.0 - wy) + c11 * wy) * wx


#: particles pushed in lock-step by one thread (see _push_group)
LANES = 8


@njit(**JIT)
def _push_group(lo, hi, chunk, s_start, s_end, grid, gdim, shape, geom, par, hspec,
                pos, cell, dirn, bprev, phase_disp, phase_path, rng, stat_prev, stat_next,
                hist_mu_b, hist_mu_t, hist_eps, traj_pos, traj_aux, traj_count, traj_next,
                steps):
    """Advance particles lo..hi-1 (at most LANES) from path s_start to exactly s_end [pc].

    One drift-kick-drift Boris step (module docstring) per particle and round, split in two
    passes: the first computes every particle's field-evaluation point and prefetches its 8
    corner cells (B and T interleaved, :func:`padded_field`), the second interpolates,
    rotates and drifts. A single particle is bound by memory latency (the next load address
    depends on the last rotation); requesting the lines of several independent particles
    back to back overlaps those misses, and a prefetch, unlike a load, does not hold the
    reorder buffer until the line arrives. Each particle's arithmetic is what it would be
    alone, so results do not depend on grouping.
    """
    nxc, nyc, nzc = np.float64(shape[0]), np.float64(shape[1]), np.float64(shape[2])
    r1, max_rot, max_len, nu = par[0], par[1], par[2], par[5]
    t1, t2 = par[7], par[8]
    idx, idy, idz = geom[0], geom[1], geom[2]
    sj = gdim[2] * GRID_VALUES
    si = gdim[1] * sj
    n_traj = traj_pos.shape[0]
    k = hi - lo
    base = np.empty(k, dtype=np.int64)
    tcell = np.empty(k, dtype=np.int64)
    buf = np.empty((k, 32), dtype=np.float32)
    wts = np.empty((k, 3))
    hs = np.empty(k)
    s = np.full(k, s_start)
    last = np.zeros(k, dtype=np.bool_)
    done = np.zeros(k, dtype=np.bool_)
    mids = np.empty((k, 3))
    scratch = np.empty(8)
    active = k if s_start < s_end else 0
    while active > 0:
        for lane in range(k):
            if done[lane]:
                continue
            p = lo + lane
            h = max_rot * r1 / bprev[p]
            if h > max_len:
                h = max_len
            if s[lane] + h >= s_end:
                h = s_end - s[lane]
                last[lane] = True
            hs[lane] = h
            half = 0.5 * h
            # drift half a step to the field-evaluation point
            mx = _wrap(cell[p, 0] + half * dirn[p, 0] * idx, nxc)
            my = _wrap(cell[p, 1] + half * dirn[p, 1] * idy, nyc)
            mz = _wrap(cell[p, 2] + half * dirn[p, 2] * idz, nzc)
            o, wts[lane, 0], wts[lane, 1], wts[lane, 2] = _grid_base(gdim, mx, my, mz)
            base[lane] = o
            tcell[lane] = _cell_offset(gdim, mx, my, mz) + 3  # T of the midpoint's cell
            _prefetch_corners(grid, o, sj, si)
            mids[lane, 0] = mx
            mids[lane, 1] = my
            mids[lane, 2] = mz
        for lane in range(k):
            if done[lane]:
                continue
            p = lo + lane
            h = hs[lane]
            half = 0.5 * h
            o = base[lane]
            wx, wy, wz = wts[lane, 0], wts[lane, 1], wts[lane, 2]
            fx = _blend_grid(grid, o, sj, si, wx, wy, wz)
            fy = _blend_grid(grid, o + 1, sj, si, wx, wy, wz)
            fz = _blend_grid(grid, o + 2, sj, si, wx, wy, wz)
            bprev[p] = math.sqrt(fx * fx + fy * fy + fz * fz)
            # kick: rotate the direction about B, then the other half drift with it
            ox, oy, oz = dirn[p, 0], dirn[p, 1], dirn[p, 2]
            nx_, ny_, nz_ = boris_rotate(ox, oy, oz, fx, fy, fz, half / r1)
            dx = half * (ox + nx_)
            dy = half * (oy + ny_)
            dz = half * (oz + nz_)
            pos[p, 0] += dx
            pos[p, 1] += dy
            pos[p, 2] += dz
            cell[p, 0] = _wrap(cell[p, 0] + dx * idx, nxc)
            cell[p, 1] = _wrap(cell[p, 1] + dy * idy, nyc)
            cell[p, 2] = _wrap(cell[p, 2] + dz * idz, nzc)
            a = _phase_of(np.float64(grid[tcell[lane]]), t1, t2)
            phase_disp[p, a, 0] += dx
            phase_disp[p, a, 1] += dy
            phase_disp[p, a, 2] += dz
            phase_path[p, a] += h
            sl = s_end if last[lane] else s[lane] + h
            s[lane] = sl
            steps[p] += 1
            if nu > 0.0:
                nx_, ny_, nz_, rng[p] = _scatter(nx_, ny_, nz_, rng[p], nu, h)
            dirn[p, 0], dirn[p, 1], dirn[p, 2] = nx_, ny_, nz_
            if sl >= stat_next[p]:
                # the corners are in L1 now; copy them for the gradient and T
                _gather(grid, gdim, mids[lane, 0], mids[lane, 1], mids[lane, 2], buf, wts, lane)
                _sample_stats(p, sl - half, dx, dy, dz, fx, fy, fz, a, buf, wts, lane, scratch,
                              geom, par, hspec, stat_prev, hist_mu_b, hist_mu_t, hist_eps, chunk)
                while stat_next[p] <= sl:
                    stat_next[p] += par[3]
            if p < n_traj:
                _traj_sample(p, sl, pos[p, 0], pos[p, 1], pos[p, 2], cell[p, 0], cell[p, 1],
                             cell[p, 2], nx_, ny_, nz_, grid, gdim, par, traj_pos,
                             traj_aux, traj_count, traj_next)
            if last[lane]:
                done[lane] = True
                active -= 1


@njit(**JIT_PARALLEL)
def _advance(s_start, s_end, grid, gdim, shape, geom, par, hspec, pos, cell, dirn, bprev,
             phase_disp, phase_path, rng, stat_prev, stat_next, hist_mu_b, hist_mu_t, hist_eps,
             traj_pos, traj_aux, traj_count, traj_next, steps, mu_out):
    """Advance every particle from s_start to s_end [pc] in parallel; μ at s_end into mu_out.

    ``grid`` is the flattened padded field (:func:`padded_field`) with padded dimensions
    ``gdim``; ``shape`` is the unpadded grid. Particles are split into fixed contiguous
    chunks, each with its own histograms, so no two threads write the same memory and the
    result does not depend on the thread count.
    """
    n = pos.shape[0]
    nchunks = hist_mu_b.shape[0]
    for c in prange(nchunks):
        lo, hi = c * n // nchunks, (c + 1) * n // nchunks
        for g in range(lo, hi, LANES):
            _push_group(g, min(g + LANES, hi), c, s_start, s_end, grid, gdim, shape, geom, par,
                        hspec, pos, cell, dirn, bprev, phase_disp, phase_path, rng,
                        stat_prev, stat_next, hist_mu_b, hist_mu_t, hist_eps, traj_pos,
                        traj_aux, traj_count, traj_next, steps)
        for p in range(lo, hi):
            fx = _grid_value(grid, gdim, cell[p, 0], cell[p, 1], cell[p, 2], 0)
            fy = _grid_value(grid, gdim, cell[p, 0], cell[p, 1], cell[p, 2], 1)
            fz = _grid_value(grid, gdim, cell[p, 0], cell[p, 1], cell[p, 2], 2)
            mu_out[p] = (dirn[p, 0] * fx + dirn[p, 1] * fy + dirn[p, 2] * fz) / math.sqrt(
                fx * fx + fy * fy + fz * fz)


@njit(**JIT_PARALLEL)
def _interpolate_many(f, cells, out):
    for p in prange(cells.shape[0]):
        out[p] = _scalar(f, cells[p, 0], cells[p, 1], cells[p, 2])


# --------------------------------------------------------------------------------------------
# Public helpers
# --------------------------------------------------------------------------------------------


def _cell_coordinates(positions_pc, origin_pc, cell_pc, shape) -> np.ndarray:
    """Wrapped cell coordinates in [0, n): (x − origin)/Δx modulo the box, per axis."""
    c = (np.asarray(positions_pc, dtype=np.float64) - origin_pc) / cell_pc
    return np.mod(c, np.asarray(shape, dtype=np.float64))


def interpolate(field_: np.ndarray, positions_pc: np.ndarray, origin_pc=0.0, cell_pc=1.0):
    """Periodic trilinear interpolation of a cell-centred 3-D field at positions [pc].

    Cell (i, j, k) holds the value at origin + (i+½, j+½, k+½)·Δx; positions anywhere
    (unwrapped) are wrapped into the box. Returns float64 values of shape ``(n,)``.
    """
    f = np.asarray(field_)
    if f.ndim != 3:
        raise ValueError(f"field must be 3-D, got shape {f.shape}")
    pts = np.atleast_2d(np.asarray(positions_pc, dtype=np.float64))
    origin = np.broadcast_to(np.asarray(origin_pc, dtype=np.float64), (3,))
    cell = np.broadcast_to(np.asarray(cell_pc, dtype=np.float64), (3,))
    cells = np.ascontiguousarray(_cell_coordinates(pts, origin, cell, f.shape))
    out = np.empty(len(cells))
    _interpolate_many(f, cells, out)
    return out


def phase_grid(temperature: np.ndarray, thresholds_K: Sequence[float]) -> np.ndarray:
    """int8 phase index per cell by :func:`cosmicflow.phases.phase_index` (0 CNM for T < T_1,
    1 UNM for T_1 ≤ T ≤ T_2, 2 WNM above), computed slab by slab so a memory-mapped
    temperature is never loaded whole."""
    from cosmicflow.phases import phase_index

    out = np.empty(temperature.shape, dtype=np.int8)
    for s in _slabs(temperature.shape[0], int(np.prod(temperature.shape[1:]))):
        out[s] = phase_index(np.asarray(temperature[s]), thresholds_K)
    return out


def phase_volume_fraction(temperature: np.ndarray, thresholds_K: Sequence[float]) -> np.ndarray:
    """Fraction of cells in each phase (rule of :func:`phase_grid`), counted slab by slab."""
    from cosmicflow.phases import phase_index

    counts = np.zeros(3, dtype=np.int64)
    for s in _slabs(temperature.shape[0], int(np.prod(temperature.shape[1:]))):
        counts += np.bincount(phase_index(np.asarray(temperature[s]), thresholds_K).ravel(),
                              minlength=3)
    return counts / counts.sum()


def padded_field(fields: Mapping[str, np.ndarray], out=None, *, slab_cells: int = 1 << 24
                 ) -> np.ndarray:
    """The pusher's field layout: B and T interleaved per cell, with one periodic ghost layer.

    Returns float32 ``(nx+2, ny+2, nz+2, 4)`` holding (B_x, B_y, B_z [µG], T [K]) with
    ``out[q, r, s] = field[(q−1) mod nx, (r−1) mod ny, (s−1) mod nz]``. A trilinear look-up
    then reads 8 neighbouring 16-byte cells — 4–5 cache lines instead of the 13–16 of four
    separate arrays — and its corner indices never wrap (no modulo, no branch; see
    :func:`_grid_corner`). Values are copied unchanged, so interpolation is bit-identical to
    :func:`interpolate` on the original fields.

    ``fields`` may be memory maps: the copy goes slab by slab (``slab_cells`` cells, 256 MB
    of output, at a time) into ``out`` (a new array if omitted, or an HDF5 dataset).
    """
    names = ("bx", "by", "bz", "temperature")
    shape = np.shape(fields["bx"])
    for name in names:
        if np.shape(fields[name]) != shape or len(shape) != 3:
            raise ValueError(f"fields must be 3-D of one shape; {name} is {np.shape(fields[name])}")
    gshape = tuple(m + 2 for m in shape) + (GRID_VALUES,)
    if out is None:
        out = np.empty(gshape, dtype=np.float32)
    elif out.shape != gshape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {gshape}, got {out.dtype} {out.shape}")
    n0, n1, n2 = shape
    wrap1 = np.arange(-1, n1 + 1) % n1
    wrap2 = np.arange(-1, n2 + 1) % n2
    step = max(1, int(slab_cells) // (n1 * n2))
    slab = np.empty((min(step, n0), n1 + 2, n2 + 2, GRID_VALUES), dtype=np.float32)
    for lo in range(0, n0, step):
        hi = min(n0, lo + step)
        for v, name in enumerate(names):
            a = np.asarray(fields[name][lo:hi], dtype=np.float32)
            slab[: hi - lo, :, :, v] = a[:, wrap1][:, :, wrap2]
        out[lo + 1: hi + 1] = slab[: hi - lo]
    out[0] = out[n0]
    out[n0 + 1] = out[1]
    return out


def write_field_cache(snapshot_path: str | Path, output_path: str | Path) -> Path:
    """Write the pusher's padded, interleaved field (:func:`padded_field`) of one snapshot.

    Written once per snapshot (rule ``field_cache``) and memory-mapped read-only by every
    integrate job (:func:`read_field_cache`), so all jobs on a node share one copy in the page
    cache instead of each building its own. HDF5 with one contiguous, unfiltered float32
    dataset ``field`` (nx+2, ny+2, nz+2, 4) = (B_x, B_y, B_z [µG], T [K]) and attributes naming
    the snapshot it came from (path, size, ``created_utc``) so a stale cache is refused.
    Filled slab by slab; nothing is left behind if it fails.
    """
    import h5py

    snapshot_path = Path(snapshot_path)
    snap = read_snapshot(snapshot_path, validate=False)
    shape = snap.fields["bx"].shape
    gshape = tuple(m + 2 for m in shape) + (GRID_VALUES,)
    with atomic_output(output_path) as tmp:
        with h5py.File(tmp, "w") as h5:
            dset = h5.create_dataset("field", shape=gshape, dtype="<f4")  # contiguous
            padded_field(snap.fields, out=dset, slab_cells=1 << 22)
            dset.attrs["values"] = "bx, by, bz, temperature"
            dset.attrs["units"] = "uG, uG, uG, K"
            dset.attrs["layout"] = ("field[q, r, s, v] = snapshot variable v at cell "
                                    "((q-1) mod nx, (r-1) mod ny, (s-1) mod nz): one periodic "
                                    "ghost layer on each side")
            h5.attrs.update(_cache_identity(snapshot_path, snap))
            h5.attrs.update(provenance_attrs("cosmicflow.integrate.write_field_cache"))
    return Path(output_path)


def _cache_identity(snapshot_path: Path, snap) -> dict[str, Any]:
    return {"snapshot": str(snapshot_path), "snapshot_size": snapshot_path.stat().st_size,
            "snapshot_created": str(snap.attrs.get("created_utc", "")),
            "snapshot_shape": np.asarray(snap.fields["bx"].shape, dtype=np.int64)}


def read_field_cache(path: str | Path, snapshot_path: str | Path) -> np.ndarray:
    """Memory-map (read-only, no copy) a field cache written by :func:`write_field_cache`.

    Raises :class:`InputError` if the file is missing or unreadable, its ``field`` is not a
    contiguous float32 dataset of the snapshot's shape + 2, or it was made from a different
    snapshot file (size or ``created_utc`` differ).
    """
    import h5py

    path, snapshot_path = Path(path), Path(snapshot_path)
    if not path.exists():
        raise InputError(f"{path}: field cache does not exist (rule field_cache makes it)")
    snap = read_snapshot(snapshot_path, validate=False)
    want = _cache_identity(snapshot_path, snap)
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not a readable HDF5 file ({err})") from None
    with h5:
        if "field" not in h5:
            raise InputError(f"{path}: no 'field' dataset; not a field cache")
        dset = h5["field"]
        gshape = tuple(int(m) + 2 for m in want["snapshot_shape"]) + (GRID_VALUES,)
        if dset.shape != gshape or dset.dtype != np.dtype("<f4"):
            raise InputError(f"{path}: field is {dset.dtype} {dset.shape}, expected float32 "
                             f"{gshape} for {snapshot_path}")
        for k in ("snapshot_size", "snapshot_created"):
            got = h5.attrs.get(k)
            got = got.decode() if isinstance(got, bytes) else got
            if str(got) != str(want[k]):
                raise InputError(f"{path}: made from a different snapshot ({k} {got!r}, "
                                 f"{snapshot_path} has {want[k]!r}); rebuild it")
        offset = dset.id.get_offset()
        if dset.chunks is not None or dset.compression is not None or offset is None:
            raise InputError(f"{path}: field is chunked or compressed; cannot memory-map it")
    try:
        return np.memmap(path, dtype=np.float32, mode="r", offset=offset, shape=gshape)
    except ValueError as err:
        raise InputError(f"{path}: truncated field cache ({err})") from None


def output_t_omega(duration_gyroperiods: float, n_outputs: int, first_gyroperiods: float):
    """Output times in units of 1/Ω_ref: 0, then ``n_outputs`` log-spaced up to the duration."""
    if not 0 < first_gyroperiods < duration_gyroperiods:
        raise ValueError(
            f"first output ({first_gyroperiods} gyro-periods) must be > 0 and before the end "
            f"({duration_gyroperiods} gyro-periods)"
        )
    if n_outputs < 2:
        raise ValueError(f"need at least 2 output times after t = 0, got {n_outputs}")
    two_pi = 2.0 * math.pi
    t = np.geomspace(two_pi * first_gyroperiods, two_pi * duration_gyroperiods, n_outputs)
    t[-1] = two_pi * duration_gyroperiods
    return np.concatenate([[0.0], t])


def batch_seed(seed: int, medium: str, energy_pev: float, injection: str, batch: int):
    """SeedSequence for one (medium, energy, injection, batch): stable across runs and machines."""
    return np.random.SeedSequence([
        int(seed), zlib.crc32(medium.encode()), int(round(energy_pev * 1e6)),
        INJECTIONS.index(injection), int(batch),
    ])


def _unit_perp(b):
    """Two unit vectors e1, e2 with (b̂, e1, e2) right-handed, per row of b (n, 3)."""
    bh = b / np.linalg.norm(b, axis=1, keepdims=True)
    helper = np.where(np.abs(bh[:, [0]]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    e1 = np.cross(bh, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    return bh, e1, np.cross(bh, e1)


def inject(snap_fields: Mapping[str, np.ndarray], origin_pc, box_pc, n: int,
           rng: np.random.Generator, mu0: Sequence[float] | None = None):
    """Injection positions uniform over the box and directions with a given local μ.

    Isotropic (``mu0=None``): μ uniform in [−1, 1] with respect to the local field, gyrophase
    uniform — the same as isotropic in space. Mono: the ``n`` particles are split in equal
    consecutive blocks over the ``mu0`` values, each with a random gyrophase.
    Returns ``(position0 [pc] (n, 3), direction0 (n, 3), mu0 (n,))``.
    """
    origin = np.broadcast_to(np.asarray(origin_pc, dtype=np.float64), (3,))
    box = np.broadcast_to(np.asarray(box_pc, dtype=np.float64), (3,))
    pos = origin + rng.random((n, 3)) * box
    if mu0 is None:
        mu = rng.uniform(-1.0, 1.0, n)
    else:
        vals = np.asarray(mu0, dtype=np.float64)
        if vals.size == 0 or np.any(np.abs(vals) > 1):
            raise ValueError(f"mu0 must be a non-empty list of values in [-1, 1], got {mu0}")
        counts = [len(a) for a in np.array_split(np.arange(n), vals.size)]
        mu = np.repeat(vals, counts)
    phi = rng.uniform(0.0, 2.0 * math.pi, n)
    shape = snap_fields["bx"].shape
    cell = box / np.asarray(shape)
    b = np.stack([interpolate(snap_fields[c], pos, origin, cell) for c in ("bx", "by", "bz")], 1)
    bh, e1, e2 = _unit_perp(b)
    sperp = np.sqrt(1.0 - mu**2)[:, None]
    d = mu[:, None] * bh + sperp * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return pos, d, mu


@dataclass
class IntegrateSettings:
    """Integration parameters (schema sections ``particles``, ``integrate``, ``phases``).

    Defaults are the schema's. ``duration_gyroperiods`` is the run length in 2π/Ω_ref.
    """

    duration_gyroperiods: float = 1000.0
    charge: int = 1
    b_ref_uG: float | None = None
    max_rotation_rad: float = 0.1
    max_step_cells: float = 0.5
    output_times: int = 60
    first_output_gyroperiods: float = 0.1
    stats_cadence_gyroperiods: float = 0.1
    trajectories: int = 4
    trajectory_samples_per_gyroperiod: float = 16.0
    subgrid_nu_over_omega: float = 0.0
    seed: int = 2024
    phase_thresholds_K: tuple[float, float] = (200.0, 5000.0)
    phase_names: tuple[str, str, str] = ("CNM", "UNM", "WNM")
    checkpoint_interval_s: float = 60.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any], injection: str = "isotropic"):
        """Settings from a validated workflow config; mono runs take ``mono.duration_gyroperiods``."""
        it = dict(config.get("integrate", {}))
        pa = dict(config.get("particles", {}))
        ph = dict(config.get("phases", {}))
        mono = dict(it.pop("mono", {}) or {})
        kw = {k: it[k] for k in (
            "duration_gyroperiods", "max_rotation_rad", "max_step_cells", "output_times",
            "first_output_gyroperiods", "stats_cadence_gyroperiods", "trajectories",
            "trajectory_samples_per_gyroperiod", "subgrid_nu_over_omega", "seed") if k in it}
        if injection == "mono" and "duration_gyroperiods" in mono:
            kw["duration_gyroperiods"] = mono["duration_gyroperiods"]
        if "charge" in pa:
            kw["charge"] = pa["charge"]
        if "b_ref_uG" in pa:
            kw["b_ref_uG"] = pa["b_ref_uG"]
        if "thresholds_K" in ph:
            kw["phase_thresholds_K"] = tuple(ph["thresholds_K"])
        if "names" in ph:
            kw["phase_names"] = tuple(ph["names"])
        return cls(**kw)

    def check(self) -> None:
        """Raise ValueError naming the first parameter out of its physical range."""
        positive = ("duration_gyroperiods", "max_rotation_rad", "max_step_cells",
                    "first_output_gyroperiods", "stats_cadence_gyroperiods",
                    "trajectory_samples_per_gyroperiod")
        for k in positive:
            v = getattr(self, k)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"integrate setting {k} must be finite and > 0, got {v}")
        if self.max_step_cells > 1 or self.max_rotation_rad > 1:
            raise ValueError("max_step_cells and max_rotation_rad must be <= 1 (a step may never "
                             f"skip a cell), got {self.max_step_cells}, {self.max_rotation_rad}")
        if self.charge < 1:
            raise ValueError(f"charge must be a positive integer, got {self.charge}")
        if self.b_ref_uG is not None and not self.b_ref_uG > 0:
            raise ValueError(f"b_ref_uG must be > 0 or None (|<B>|), got {self.b_ref_uG}")
        if self.subgrid_nu_over_omega < 0:
            raise ValueError(f"subgrid_nu_over_omega must be >= 0, got {self.subgrid_nu_over_omega}")
        if self.trajectories < 0 or self.seed < 0:
            raise ValueError("trajectories and seed must be >= 0")
        if len(self.phase_names) != 3 or len(self.phase_thresholds_K) != 2:
            raise ValueError("need 3 phase names and 2 temperature thresholds")
        output_t_omega(self.duration_gyroperiods, self.output_times, self.first_output_gyroperiods)


# --------------------------------------------------------------------------------------------
# The run: state, checkpoints, the segment loop, the output Dataset
# --------------------------------------------------------------------------------------------

_STATE_KEYS = ("pos", "cell", "dirn", "bprev", "phase_disp", "phase_path", "rng", "stat_prev",
               "stat_next", "hist_mu_b", "hist_mu_t", "hist_eps", "traj_pos", "traj_aux",
               "traj_count", "traj_next", "steps", "rec_disp", "rec_pdisp", "rec_ppath",
               "rec_mu")


def _save_checkpoint(path: Path, key: str, k_done: int, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, key=np.array(key), k_done=np.array(k_done), **state)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, key: str):
    try:
        with np.load(path) as z:
            if str(z["key"]) != key:
                log.warning("%s belongs to a different run; starting over", path)
                return None
            return int(z["k_done"]), {k: z[k].copy() for k in _STATE_KEYS}
    except (OSError, ValueError, KeyError) as err:
        log.warning("unreadable checkpoint %s (%s); starting over", path, err)
        return None


def integrate_particles(
    fields: Mapping[str, np.ndarray],
    origin_pc,
    box_pc,
    position0: np.ndarray,
    direction0: np.ndarray,
    *,
    energy_pev: float,
    settings: IntegrateSettings,
    rng_seeds: np.ndarray | None = None,
    trajectories: int | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_key: str = "",
    progress: bool = False,
    grid: np.ndarray | None = None,
    mean_field_ug: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Integrate particles from given initial positions [pc] and unit directions.

    ``fields`` holds float32 ``bx, by, bz`` [µG] and ``temperature`` [K] on the cell-centred
    periodic grid (memory maps are used as they are, without a copy). Returns a dict of plain
    arrays and scalars (see :func:`integrate_batch` for the file written from it).
    ``checkpoint``: path of an ``.npz`` saved at output times (at most every
    ``settings.checkpoint_interval_s`` seconds) and resumed from when its key matches.
    ``grid``: the same fields as :func:`padded_field` returns them (e.g. memory-mapped from
    a field cache, :func:`read_field_cache`); built in memory from ``fields`` if omitted.
    ``mean_field_ug``: ⟨B⟩ [µG] when already known (:meth:`Snapshot.mean_field_ug`, stored by
    the snapshot writer), so a job need not scan the whole field; computed from ``fields``
    if omitted.
    """
    settings.check()
    bx, by, bz, temp = (np.asarray(fields[k]) for k in ("bx", "by", "bz", "temperature"))
    for name, a in (("bx", bx), ("by", by), ("bz", bz), ("temperature", temp)):
        if a.dtype != np.float32 or a.ndim != 3 or a.shape != bx.shape:
            raise ValueError(f"field {name} must be 3-D float32 of one shape, got {a.dtype} {a.shape}")
    shape = bx.shape
    origin = np.broadcast_to(np.asarray(origin_pc, dtype=np.float64), (3,)).copy()
    box = np.broadcast_to(np.asarray(box_pc, dtype=np.float64), (3,)).copy()
    cell_pc = box / np.asarray(shape)
    pos0 = np.ascontiguousarray(position0, dtype=np.float64)
    dir0 = np.ascontiguousarray(direction0, dtype=np.float64)
    n = len(pos0)
    if pos0.shape != (n, 3) or dir0.shape != (n, 3) or n == 0:
        raise ValueError(f"position0 and direction0 must be (n, 3) with n > 0, got "
                         f"{pos0.shape}, {dir0.shape}")
    if not (np.all(np.isfinite(pos0)) and np.all(np.isfinite(dir0))):
        raise ValueError("position0 and direction0 must be finite")
    if np.max(np.abs(np.linalg.norm(dir0, axis=1) - 1.0)) > 1e-12:
        raise ValueError("direction0 rows must be unit vectors")
    if energy_pev <= 0:
        raise ValueError(f"energy must be > 0 PeV, got {energy_pev}")

    mean_b = (np.array([float(np.mean(a, dtype=np.float64)) for a in (bx, by, bz)])
              if mean_field_ug is None else np.asarray(mean_field_ug, dtype=np.float64))
    b_ref = settings.b_ref_uG if settings.b_ref_uG is not None else float(np.linalg.norm(mean_b))
    if not b_ref > 0:
        raise ValueError("the mean field |<B>| is zero; set particles.b_ref_uG")
    r1 = LARMOR_PC_PER_PEV_UG * energy_pev / settings.charge  # r_L at 1 uG [pc]
    rl_ref = r1 / b_ref
    two_pi = 2.0 * math.pi
    t_omega = output_t_omega(settings.duration_gyroperiods, settings.output_times,
                             settings.first_output_gyroperiods)
    s_out = t_omega * rl_ref  # path length c t [pc] at the output times
    n_traj = min(n, settings.trajectories if trajectories is None else trajectories)
    n_samp = int(math.floor(settings.duration_gyroperiods
                            * settings.trajectory_samples_per_gyroperiod)) + 1
    par = np.array([
        r1, settings.max_rotation_rad, settings.max_step_cells * cell_pc.min(),
        settings.stats_cadence_gyroperiods * two_pi * rl_ref,
        two_pi * rl_ref / settings.trajectory_samples_per_gyroperiod,
        settings.subgrid_nu_over_omega / rl_ref, rl_ref, *map(float, settings.phase_thresholds_K),
    ])
    geom = 1.0 / cell_pc
    if grid is None:
        grid = padded_field(fields)
    gshape = tuple(m + 2 for m in shape) + (GRID_VALUES,)
    if grid.shape != gshape or grid.dtype != np.float32 or not grid.flags.c_contiguous:
        raise ValueError(f"padded field grid must be C-contiguous float32 {gshape} for fields of "
                         f"shape {shape}, got {grid.dtype} {grid.shape}")
    grid_flat = grid.reshape(-1)  # a view, also of a memory map
    gdim = np.array(gshape[:3], dtype=np.int64)
    shape_arr = np.array(shape, dtype=np.int64)
    nt = len(s_out)
    nchunks = min(n, _MAX_CHUNKS)
    nb = [int(h[2]) for h in _HIST_ARRAY]

    resumed = (_load_checkpoint(Path(checkpoint), checkpoint_key)
               if checkpoint and Path(checkpoint).exists() else None)
    if resumed is not None:
        k_done, st = resumed
        log.info("resuming from %s at output %d/%d", checkpoint, k_done, nt - 1)
    else:
        k_done = 0
        cell0 = np.ascontiguousarray(_cell_coordinates(pos0, origin, cell_pc, shape))
        b0 = np.stack([interpolate(a, pos0, origin, cell_pc) for a in (bx, by, bz)], 1)
        bm0 = np.linalg.norm(b0, axis=1)
        mu0 = np.einsum("ij,ij->i", dir0, b0) / bm0
        t0 = interpolate(temp, pos0, origin, cell_pc)
        seeds = (np.asarray(rng_seeds, dtype=np.uint64).ravel() if rng_seeds is not None
                 else np.random.SeedSequence(settings.seed).generate_state(n, np.uint64))
        if len(seeds) < n:
            raise ValueError(f"need one RNG seed per particle ({n}), got {len(seeds)}")
        st = {
            "pos": pos0.copy(), "cell": cell0, "dirn": dir0.copy(), "bprev": bm0,
            "phase_disp": np.zeros((n, 3, 3)), "phase_path": np.zeros((n, 3)),
            "rng": np.array(seeds[:n], dtype=np.uint64),  # a copy: the kernel advances it
            "stat_prev": np.stack([mu0, bm0, t0, np.zeros(n)], 1),
            "stat_next": np.full(n, par[3]),
            "hist_mu_b": np.zeros((nchunks, nb[0], nb[1]), np.int64),
            "hist_mu_t": np.zeros((nchunks, nb[0], nb[2]), np.int64),
            "hist_eps": np.zeros((nchunks, 3, nb[3]), np.int64),
            "traj_pos": np.full((n_traj, n_samp, 3), np.nan),
            "traj_aux": np.full((n_traj, n_samp, 4), np.nan),
            "traj_count": np.ones(n_traj, np.int64),
            "traj_next": np.full(n_traj, par[4]),
            "steps": np.zeros(n, np.int64),
            "rec_disp": np.zeros((n, nt, 3)), "rec_pdisp": np.zeros((n, nt, 3, 3)),
            "rec_ppath": np.zeros((n, nt, 3)), "rec_mu": np.zeros((n, nt)),
        }
        st["rec_mu"][:, 0] = mu0
        st["traj_pos"][:, 0] = pos0[:n_traj]
        st["traj_aux"][:, 0] = np.stack([np.zeros(n_traj), mu0[:n_traj], bm0[:n_traj],
                                         t0[:n_traj]], 1)
    mu_out = np.empty(n)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=float(settings.duration_gyroperiods), initial=t_omega[k_done] / two_pi,
                   unit="gyro", desc=f"E={energy_pev:g} PeV, {n} particles",
                   bar_format="{l_bar}{bar}| {n:.3g}/{total:.3g} gyro-periods [{elapsed}<{remaining}]")
    last_save = _time.monotonic()
    try:
        for k in range(k_done + 1, nt):
            _advance(s_out[k - 1], s_out[k], grid_flat, gdim, shape_arr, geom, par, _HIST_ARRAY,
                     st["pos"], st["cell"], st["dirn"], st["bprev"], st["phase_disp"],
                     st["phase_path"], st["rng"], st["stat_prev"], st["stat_next"],
                     st["hist_mu_b"], st["hist_mu_t"], st["hist_eps"], st["traj_pos"],
                     st["traj_aux"], st["traj_count"], st["traj_next"], st["steps"], mu_out)
            st["rec_disp"][:, k] = st["pos"] - pos0
            st["rec_pdisp"][:, k] = st["phase_disp"]
            st["rec_ppath"][:, k] = st["phase_path"]
            st["rec_mu"][:, k] = mu_out
            if bar is not None:
                bar.update((t_omega[k] - t_omega[k - 1]) / two_pi)
            now = _time.monotonic()
            if checkpoint and k < nt - 1 and now - last_save >= settings.checkpoint_interval_s:
                _save_checkpoint(Path(checkpoint), checkpoint_key, k, st)
                last_save = now
    finally:
        if bar is not None:
            bar.close()
    omega_ref = C_PC_S / rl_ref
    return {
        "time_s": t_omega / omega_ref,
        "t_omega": t_omega,
        "displacement": st["rec_disp"],
        "phase_displacement": st["rec_pdisp"],
        "phase_time": st["rec_ppath"] / C_PC_S,
        "mu": st["rec_mu"],
        "position0": pos0,
        "hist_dmu_dB": st["hist_mu_b"].sum(0),
        "hist_dmu_dT": st["hist_mu_t"].sum(0),
        "hist_epsilon": st["hist_eps"].sum(0),
        "traj_position": st["traj_pos"],
        "traj_t_omega": st["traj_aux"][:, :, 0],
        "traj_mu": st["traj_aux"][:, :, 1],
        "traj_B": st["traj_aux"][:, :, 2],
        "traj_T": st["traj_aux"][:, :, 3],
        "n_steps": st["steps"],
        "final_direction": st["dirn"],
        "phase_volume_fraction": phase_volume_fraction(temp, settings.phase_thresholds_K),
        "b_ref_uG": b_ref,
        "mean_field_uG": mean_b,
        "larmor_radius_pc": rl_ref,
        "omega_ref_rad_s": omega_ref,
    }


def _dataset(res: dict, attrs: dict, mu0: np.ndarray, phase_names):
    import xarray as xr

    comp = ["x", "y", "z"]
    n, nt = res["mu"].shape
    ds = xr.Dataset(
        {
            "t_omega": ("time", res["t_omega"], {"units": "1", "long_name": "time x Omega_ref"}),
            "displacement": (("particle", "time", "component"), res["displacement"],
                             {"units": "pc", "long_name": "r(t) - r(0), unwrapped"}),
            "phase_displacement": (("particle", "time", "phase", "component"),
                                   res["phase_displacement"],
                                   {"units": "pc", "long_name": "displacement accumulated in "
                                    "each phase (sum over phases = displacement)"}),
            "phase_time": (("particle", "time", "phase"), res["phase_time"],
                           {"units": "s", "long_name": "time spent in each phase"}),
            "mu": (("particle", "time"), res["mu"],
                   {"units": "1", "long_name": "pitch-angle cosine w.r.t. the local field"}),
            "mu0_injected": ("particle", mu0, {"units": "1", "long_name": "injection mu"}),
            "position0": (("particle", "component"), res["position0"],
                          {"units": "pc", "long_name": "injection position"}),
            "n_steps": ("particle", res["n_steps"], {"units": "1", "long_name": "Boris steps taken"}),
            "hist_dmu_dB": (("dmu_bin", "dB_bin"), res["hist_dmu_dB"],
                            {"units": "count", "long_name": "|dmu/d(t Omega)| vs |d|B|/d(t Omega)|"}),
            "hist_dmu_dT": (("dmu_bin", "dT_bin"), res["hist_dmu_dT"],
                            {"units": "count", "long_name": "|dmu/d(t Omega)| vs |dT/d(t Omega)|"}),
            "hist_epsilon": (("phase", "eps_bin"), res["hist_epsilon"],
                             {"units": "count",
                              "long_name": "adiabaticity |grad B| r_L / B per phase"}),
            "dmu_edges": ("dmu_edge", HIST_EDGES["dmu"], {"units": "1"}),
            "dB_edges": ("dB_edge", HIST_EDGES["dB"], {"units": "uG"}),
            "dT_edges": ("dT_edge", HIST_EDGES["dT"], {"units": "K"}),
            "eps_edges": ("eps_edge", HIST_EDGES["eps"], {"units": "1"}),
            "traj_position": (("traj", "sample", "component"), res["traj_position"],
                              {"units": "pc", "long_name": "trajectory positions, unwrapped"}),
            "traj_t_omega": (("traj", "sample"), res["traj_t_omega"], {"units": "1"}),
            "traj_mu": (("traj", "sample"), res["traj_mu"], {"units": "1"}),
            "traj_B": (("traj", "sample"), res["traj_B"], {"units": "uG"}),
            "traj_T": (("traj", "sample"), res["traj_T"], {"units": "K"}),
            "phase_volume_fraction": ("phase", res["phase_volume_fraction"], {"units": "1"}),
        },
        coords={
            "time": ("time", res["time_s"], {"units": "s"}),
            "particle": np.arange(n),
            "component": comp,
            "phase": list(phase_names),
        },
        attrs=attrs,
    )
    return ds


def integrate_batch(
    snapshot_path: str | Path,
    output_path: str | Path,
    *,
    energy_pev: float,
    n_particles: int,
    injection: str = "isotropic",
    batch: int = 0,
    medium: str | None = None,
    mu0: Sequence[float] | None = None,
    settings: IntegrateSettings | None = None,
    config: Mapping[str, Any] | None = None,
    progress: bool = True,
    field_cache: str | Path | None = None,
) -> Path:
    """Integrate one particle batch through a canonical snapshot and write its HDF5 file.

    Parameters
    ----------
    snapshot_path : canonical snapshot (``results/{medium}/snapshot.h5``); B is memory-mapped.
    output_path : batch file (layout: ``docs/data-contracts.md``, "Particle batch").
    energy_pev : particle energy E [PeV] (ultra-relativistic, E = pc).
    n_particles : particles in this batch (mono: split evenly over ``mu0``).
    injection : ``"isotropic"`` or ``"mono"`` (then ``mu0`` is required).
    batch : batch number; with ``medium``, E, ``injection`` and ``settings.seed`` it fixes
        the seed, so a rerun is bit-identical. Trajectories are stored from batch 0 only.
    medium : medium name (default: the snapshot's parent folder name).
    settings : :class:`IntegrateSettings`; default from ``config`` (the workflow config) if
        given, else the schema defaults.
    config : stored in the ``config`` attribute for provenance.
    progress : show a tqdm bar advancing between output times.
    field_cache : the snapshot's field cache (:func:`write_field_cache`), memory-mapped and
        shared with other jobs; without it the padded field is built in this process's memory.

    A checkpoint ``<output>.ckpt.npz`` is written at output times; a killed run restarted
    with the same arguments resumes from it and gives the same file. It is removed on success.
    """
    if injection not in INJECTIONS:
        raise ValueError(f"injection must be one of {INJECTIONS}, got {injection!r}")
    if injection == "mono" and not mu0:
        raise ValueError("injection 'mono' needs a non-empty mu0 list")
    if int(n_particles) < 1 or int(batch) < 0:
        raise ValueError(f"need n_particles >= 1 and batch >= 0, got {n_particles}, {batch}")
    if not energy_pev > 0:
        raise ValueError(f"energy must be > 0 PeV, got {energy_pev}")
    snapshot_path, output_path = Path(snapshot_path), Path(output_path)
    medium = medium or snapshot_path.parent.name
    if settings is None:
        settings = IntegrateSettings.from_config(config, injection) if config else IntegrateSettings()
    settings.check()
    snap = read_snapshot(snapshot_path, validate=False)
    # stop before any work when the machine cannot hold the field and the particle records
    needed = integrate_memory_mb(int(np.prod(snap.shape)), int(n_particles), settings.output_times + 1)
    if field_cache is None:
        needed += int(np.prod(snap.shape)) * 16 // 2**20  # the padded field built in memory
    require_memory(needed, f"integrate of {n_particles} particles through {snapshot_path} "
                           f"({'x'.join(map(str, snap.shape))} cells)")
    grid = read_field_cache(field_cache, snapshot_path) if field_cache is not None else None
    rng = np.random.default_rng(batch_seed(settings.seed, medium, energy_pev, injection, batch))
    pos0, dir0, mu_inj = inject(snap.fields, snap.origin_pc, snap.box_pc, int(n_particles), rng,
                                mu0 if injection == "mono" else None)
    seeds = rng.integers(0, 2**63, size=int(n_particles), dtype=np.uint64)
    if np.any(~np.isfinite(mu_inj)):
        raise InputError(f"{snapshot_path}: |B| = 0 at an injection point; mu is undefined")
    run = {
        "snapshot": str(snapshot_path), "medium": medium, "energy_PeV": float(energy_pev),
        "n_particles": int(n_particles), "injection": injection, "batch": int(batch),
        "mu0": list(mu0) if mu0 else None, "settings": asdict(settings),
        "snapshot_created": str(snap.attrs.get("created_utc", "")),
        "snapshot_size": snapshot_path.stat().st_size,
    }
    key = json.dumps({k: v for k, v in run.items() if k != "settings"}
                     | {"settings": {k: v for k, v in asdict(settings).items()
                                     if k != "checkpoint_interval_s"}},
                     sort_keys=True, default=str)
    ckpt = output_path.with_name(output_path.name + ".ckpt.npz")
    res = integrate_particles(
        snap.fields, snap.origin_pc, snap.box_pc, pos0, dir0, energy_pev=energy_pev,
        settings=settings, rng_seeds=seeds, trajectories=settings.trajectories if batch == 0 else 0,
        checkpoint=ckpt, checkpoint_key=key, progress=progress, grid=grid,
        mean_field_ug=snap.mean_field_ug(),
    )
    mu_inj = res["mu"][:, 0]
    attrs = {
        "medium": medium, "energy_PeV": float(energy_pev), "charge": int(settings.charge),
        "injection": injection, "batch": int(batch),
        "seed": int(settings.seed),
        "b_ref_uG": res["b_ref_uG"], "mean_field_uG": res["mean_field_uG"],
        "mean_field_direction": res["mean_field_uG"] / np.linalg.norm(res["mean_field_uG"])
        if np.linalg.norm(res["mean_field_uG"]) > 0 else np.zeros(3),
        "larmor_radius_pc": res["larmor_radius_pc"], "omega_ref_rad_s": res["omega_ref_rad_s"],
        "duration_gyroperiods": float(settings.duration_gyroperiods),
        "max_rotation_rad": float(settings.max_rotation_rad),
        "max_step_cells": float(settings.max_step_cells),
        "subgrid_nu_over_omega": float(settings.subgrid_nu_over_omega),
        "phase_thresholds_K": np.asarray(settings.phase_thresholds_K, dtype=np.float64),
        "particle_speed_pc_s": C_PC_S,
        "stats_cadence_gyroperiods": float(settings.stats_cadence_gyroperiods),
        "mu0_values": np.asarray(mu0 if mu0 else [], dtype=np.float64),
        "snapshot": str(snapshot_path),
        **provenance_attrs("cosmicflow.integrate.integrate_batch",
                           {"run": run, "workflow_config": dict(config) if config else None}),
    }
    ds = _dataset(res, attrs, mu_inj, settings.phase_names)
    with atomic_output(output_path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    ckpt.unlink(missing_ok=True)
    return output_path
