"""Magnetic field lines through a canonical snapshot: paper Fig. 4 and the `field_lines` stage.

A field line solves dx/ds = B(x)/|B(x)|; it is traced with classical RK4 in arc length s [pc]
through the periodic, trilinearly interpolated cell-centred field. Positions are unwrapped
(the line may leave the box; the field wraps). :func:`trace_field_lines` (SciPy, a few lines
for Fig. 4); :func:`trace_many` (Numba, thousands of lines) feeds the field-line random walk
and phase-patch statistics of :func:`field_line_statistics` (issue 13; see the comment block
above :func:`trace_many` and docs/physics.md).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from dataclasses import fields as _dc_fields

import numpy as np
import xarray as xr
from numba import njit, prange
from scipy.ndimage import map_coordinates

from cosmicflow._numba import JIT_INLINE, JIT_PARALLEL
from cosmicflow.integrate.field import b_at, field_view, padded_field
from cosmicflow.phase_rule import DEFAULT_PHASE_NAMES, DEFAULT_THRESHOLDS_K, N_PHASES
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


# --------------------------------------------------------------------------------------------
# Field-line random walk and patch statistics (issue 13; the `field_lines` stage)
#
# Many lines (>= 1000) are traced with a Numba RK4 kernel through the same periodic trilinear
# interpolant the particle pusher uses (cosmicflow.integrate.field.b_at on its padded layout), both ways from random
# seeds, unwrapped across periodic images. From them:
#
# * the running field-line diffusion ⟨|Δr⊥|²⟩(z) against the distance z = |Δr·B̂0| along the
#   mean field, measured at the first passage of each line branch through |Δr∥| = z (linear
#   interpolation between samples), and κ_FL(z) = ⟨|Δr⊥|²⟩/(4z) [pc] with its plateau
#   (Jokipii 1966, ApJ 146, 480; Jokipii & Parker 1969; Matthaeus et al. 1995, PRL 75, 2136):
#   ⟨Δx²⟩ = ⟨Δy²⟩ = 2 κ_FL z for a diffusive field-line random walk;
# * the phase along each line (phase of the cell holding the sample, the pusher's rule) and the
#   arc lengths of contiguous segments in each phase (Appendix F of Kempski-type patch
#   statistics, paper-transport-inhomogeneous-media), with maximum-likelihood power-law fits
#   (Clauset, Shalizi & Newman 2009, SIAM Rev. 51, 661) and the linear filling fraction.



@njit(**JIT_INLINE)
def _unit_field(field, n, px, py, pz, ox, oy, oz, idx, idy, idz):
    """B̂ at the unwrapped position p [pc]: wrapped cell coordinates, the pusher's look-up."""
    cx = (px - ox) * idx
    cy = (py - oy) * idy
    cz = (pz - oz) * idz
    cx -= n[0] * math.floor(cx / n[0])
    cy -= n[1] * math.floor(cy / n[1])
    cz -= n[2] * math.floor(cz / n[2])
    fx, fy, fz = b_at(field, cx, cy, cz)
    m = math.sqrt(fx * fx + fy * fy + fz * fz)
    if m == 0.0:
        return 0.0, 0.0, 0.0
    return fx / m, fy / m, fz / m


@njit(**JIT_PARALLEL)
def _trace_kernel(field, n, origin, inv_cell, seeds, h, n_steps, out):
    """RK4 in arc length of dr/ds = B̂(r) from each seed, backward and forward.

    ``field`` is the pusher's :class:`~cosmicflow.integrate.field.Field` of a grid with ``n``
    (3,) cells; ``out`` (n_lines, 2 n_steps + 1, 3) [pc]: sample n_steps is the seed, higher
    indices forward (along B), lower backward; step h [pc]. Each line is independent (prange),
    so the result does not depend on the number of threads.
    """
    ox, oy, oz = origin[0], origin[1], origin[2]
    idx, idy, idz = inv_cell[0], inv_cell[1], inv_cell[2]
    for i in prange(seeds.shape[0]):
        for sgn in (-1.0, 1.0):
            px, py, pz = seeds[i, 0], seeds[i, 1], seeds[i, 2]
            out[i, n_steps, 0] = px
            out[i, n_steps, 1] = py
            out[i, n_steps, 2] = pz
            hs = sgn * h
            for k in range(1, n_steps + 1):
                k1x, k1y, k1z = _unit_field(field, n, px, py, pz, ox, oy, oz, idx, idy, idz)
                k2x, k2y, k2z = _unit_field(field, n, px + 0.5 * hs * k1x, py + 0.5 * hs * k1y,
                                            pz + 0.5 * hs * k1z, ox, oy, oz, idx, idy, idz)
                k3x, k3y, k3z = _unit_field(field, n, px + 0.5 * hs * k2x, py + 0.5 * hs * k2y,
                                            pz + 0.5 * hs * k2z, ox, oy, oz, idx, idy, idz)
                k4x, k4y, k4z = _unit_field(field, n, px + hs * k3x, py + hs * k3y, pz + hs * k3z,
                                            ox, oy, oz, idx, idy, idz)
                px += hs / 6.0 * (k1x + 2.0 * k2x + 2.0 * k3x + k4x)
                py += hs / 6.0 * (k1y + 2.0 * k2y + 2.0 * k3y + k4y)
                pz += hs / 6.0 * (k1z + 2.0 * k2z + 2.0 * k3z + k4z)
                j = n_steps + k if sgn > 0 else n_steps - k
                out[i, j, 0] = px
                out[i, j, 1] = py
                out[i, j, 2] = pz


def trace_many(
    fields, origin_pc, cell_pc, seeds_pc: np.ndarray, length_pc: float, step_pc: float,
) -> np.ndarray:
    """Field lines through the cell-centred periodic field of ``fields`` (``bx, by, bz,
    temperature``, e.g. a :class:`~cosmicflow.snapshot.Snapshot`'s), both ways.

    Returns (n, 2 m + 1, 3) unwrapped positions [pc], m = ceil(length/step), the seed at index
    m, forward (along B) above it. RK4 in arc length with the pusher's trilinear look-up on its
    padded layout (:func:`cosmicflow.integrate.field.padded_field`); a point where B = 0 stops
    the line there (direction zero).
    """
    if step_pc <= 0 or length_pc <= 0:
        raise ValueError(f"field lines need length_pc > 0 and step_pc > 0, got {length_pc}, {step_pc}")
    grid = padded_field({k: fields[k] for k in ("bx", "by", "bz", "temperature")})
    n = np.array(grid.shape[:3], dtype=np.float64) - 2.0
    seeds = np.ascontiguousarray(np.atleast_2d(seeds_pc), dtype=np.float64)
    n_steps = int(math.ceil(length_pc / step_pc))
    out = np.empty((seeds.shape[0], 2 * n_steps + 1, 3))
    origin = np.broadcast_to(np.asarray(origin_pc, np.float64), (3,)).copy()
    inv_cell = 1.0 / np.broadcast_to(np.asarray(cell_pc, np.float64), (3,))
    _trace_kernel(field_view(grid), n, origin, inv_cell.copy(), seeds, float(step_pc), n_steps, out)
    return out


@njit(**JIT_PARALLEL)
def _first_passage_kernel(par, perp, targets, out):
    """|Δr⊥|² at the first sample where |Δr∥| reaches each target (linear interpolation).

    par (u, m) and perp (u, m, 3) start at the seed (index 0); out (u, k) gets NaN for
    targets a branch never reaches.
    """
    for u in prange(par.shape[0]):
        j = 1
        m = par.shape[1]
        for k in range(targets.size):
            z = targets[k]
            while j < m and abs(par[u, j]) < z:
                j += 1
            if j >= m:
                for kk in range(k, targets.size):
                    out[u, kk] = np.nan
                break
            a = abs(par[u, j - 1])
            b = abs(par[u, j])
            w = (z - a) / (b - a) if b > a else 1.0
            s = 0.0
            for c in range(3):
                v = perp[u, j - 1, c] + w * (perp[u, j, c] - perp[u, j - 1, c])
                s += v * v
            out[u, k] = s


def first_passage_perp_sq(lines: np.ndarray, b0hat, distances_pc) -> np.ndarray:
    r"""|Δr⊥|² [pc²] of every line branch when it first reaches |Δr·B̂0| = z, for each z.

    ``lines`` (n, 2m+1, 3) from :func:`trace_many`; returns (n, 2, k): branch 0 backward, 1
    forward; NaN where a branch does not reach z within its length.
    """
    b = np.asarray(b0hat, float)
    b = b / np.linalg.norm(b)
    m = (lines.shape[1] - 1) // 2
    z = np.ascontiguousarray(distances_pc, dtype=np.float64)
    if np.any(np.diff(z) <= 0) or z[0] <= 0:
        raise ValueError("distances must be positive and increasing")
    out = np.empty((lines.shape[0], 2, z.size))
    for branch, sl in ((0, slice(m, None, -1)), (1, slice(m, None))):
        d = lines[:, sl] - lines[:, m : m + 1]
        par = np.ascontiguousarray(d @ b)
        perp = np.ascontiguousarray(d - par[..., None] * b)
        res = np.empty((lines.shape[0], z.size))
        _first_passage_kernel(par, perp, z, res)
        out[:, branch] = res
    return out


def slab_field_line_msd(bx_z: np.ndarray, dz_pc: float, b0: float, z_pc, refine: int = 16) -> np.ndarray:
    r"""Exact ⟨Δx(z)²⟩ [pc²] of field lines in slab turbulence B = B0 ẑ + b(z), from b_x(z).

    A slab line obeys dx/dz = b_x(z)/B0 exactly, so over starting points z0

    .. math:: \langle\Delta x(z)^2\rangle = \frac{1}{B_0^2}\int_0^z\!\!\int_0^z R(z'-z'')\,dz'dz''
              = \frac{2}{B_0^2}\int_0^z (z-u)\,R(u)\,du,
              \qquad R(u) = \langle b_x(z_0) b_x(z_0+u)\rangle_{z_0}

    (Jokipii 1966; Jokipii & Parker 1969). ``bx_z`` are the cell-centre values the tracer
    interpolates linearly; R is the periodic autocorrelation of that piecewise-linear
    realisation on the sub-grid z_j = z_cell,0 + j δ, δ = Δz/``refine`` (FFT), i.e. averaged
    over starting points on that sub-grid. Between sub-grid nodes b is linear, so the double
    integral is evaluated exactly by the double trapezoid rule,
    δ² Σ_{i,k} w_i w_k R((i−k)δ) (w = ½, 1, …, 1, ½), which is the single integral above
    for the piecewise-linear realisation. Lines traced from those starting points must match it
    to the tracer's RK4 and first-passage interpolation error. ``z_pc`` must be multiples of δ;
    ``b0`` is in the units of ``bx_z``.
    """
    b = np.asarray(bx_z, float)
    n = b.size
    zc = (np.arange(n) + 0.5) * dz_pc
    zf = zc[0] + np.arange(n * refine) * dz_pc / refine  # includes every cell centre
    lin = np.interp(zf, zc, b, period=n * dz_pc)
    spec = np.fft.rfft(lin)
    r = np.fft.irfft(spec * np.conj(spec), lin.size) / lin.size  # R(u_j), u_j = j dz/refine
    du = dz_pc / refine
    out = []
    for z in np.atleast_1d(np.asarray(z_pc, float)):
        j = int(round(z / du))
        if not math.isclose(j * du, z, rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(f"z = {z} pc is not a multiple of the refined cell {du} pc")
        w = np.ones(j + 1)
        w[[0, -1]] = 0.5  # trapezoid weights: exact for the piecewise-linear b between nodes
        lag_weight = np.correlate(w, w, "full")  # Σ_{i-k=u} w_i w_k for u = -j..j
        lags = np.abs(np.arange(-j, j + 1)) % r.size
        out.append(du * du / b0**2 * float(lag_weight @ r[lags]))
    return np.asarray(out)


def phase_runs(phase: np.ndarray, step_pc: float) -> list[np.ndarray]:
    """Arc lengths [pc] of complete contiguous runs of each phase along lines.

    ``phase`` (n, m) int labels per sample (−1 never occurs); a run of k samples has length
    k·step. Runs touching either end of a line are cut by the line's length and are dropped.
    Returns one array per phase (0, 1, 2).
    """
    ph = np.asarray(phase, dtype=np.int16)
    n, m = ph.shape
    arr = np.concatenate([ph, np.full((n, 1), -1, np.int16)], axis=1).ravel()
    starts = np.concatenate([[0], np.flatnonzero(np.diff(arr) != 0) + 1])
    lengths = np.diff(np.concatenate([starts, [arr.size]]))
    values = arr[starts]
    pos = starts % (m + 1)
    complete = (values >= 0) & (pos > 0) & (pos + lengths < m)
    return [lengths[complete & (values == a)] * float(step_pc) for a in range(3)]


@dataclass(frozen=True)
class PowerLawFit:
    """Maximum-likelihood power-law tail p(x) ∝ x^(−α) for x ≥ x_min (Clauset et al. 2009)."""

    alpha: float
    alpha_lower: float
    alpha_upper: float
    alpha_stderr: float  # (α − 1)/√n_tail, the asymptotic ML error at fixed x_min
    x_min: float
    n_tail: int
    n_total: int
    ks_distance: float

    @classmethod
    def nan(cls, n_total: int = 0) -> PowerLawFit:
        return cls(*(math.nan,) * 5, 0, n_total, math.nan)


def _fit_tail(y: np.ndarray, candidates: np.ndarray, min_tail: int) -> tuple[float, float, float, int]:
    """Best (α, y_min, KS distance, n_tail) over candidate y_min for sorted positive y."""
    best = (math.nan, math.nan, math.inf, 0)
    logs = np.log(y)
    csum = np.concatenate([[0.0], np.cumsum(logs[::-1])])[::-1]  # csum[i] = Σ_{j>=i} ln y_j
    for ymin in candidates:
        i = int(np.searchsorted(y, ymin, side="left"))
        nt = y.size - i
        if nt < min_tail:
            continue
        s = csum[i] - nt * math.log(ymin)
        if s <= 0:
            continue
        alpha = 1.0 + nt / s
        tail = y[i:]
        model = 1.0 - (tail / ymin) ** (1.0 - alpha)
        emp_hi = np.arange(1, nt + 1) / nt
        d = float(max(np.max(np.abs(emp_hi - model)), np.max(np.abs(emp_hi - 1.0 / nt - model))))
        if d < best[2]:
            best = (alpha, float(ymin), d, nt)
    return best


def fit_power_law(
    x: np.ndarray,
    lattice: float = 0.0,
    n_candidates: int = 30,
    min_tail: int = 20,
    bootstrap_samples: int = 200,
    interval_percent: float = 68.27,
    seed: int = 0,
) -> PowerLawFit:
    r"""Power-law tail of a sample by maximum likelihood with x_min chosen by the KS distance.

    .. math:: \hat\alpha = 1 + n\Big[\sum_{i} \ln\frac{x_i - \delta/2}{x_{\min} - \delta/2}\Big]^{-1},
              \qquad \sigma_{\hat\alpha} = \frac{\hat\alpha - 1}{\sqrt n}

    over the n values x_i ≥ x_min (Clauset, Shalizi & Newman 2009, Eqs. 3.1, 3.6 and, for
    values on a lattice of spacing δ = ``lattice``, their approximation 3.7); x_min is the
    candidate (``n_candidates`` quantiles of the sample, at least ``min_tail`` values above)
    that minimises the Kolmogorov–Smirnov distance between the tail and the fitted law. The
    interval is the percentile bootstrap over the sample with x_min chosen again in every
    resample (their §3.3). Returns NaNs for fewer than ``min_tail`` values.
    """
    v = np.sort(np.asarray(x, float))
    v = v[np.isfinite(v) & (v > 0)]
    if v.size < min_tail:
        return PowerLawFit.nan(int(v.size))
    y = v - 0.5 * lattice
    if y[0] <= 0:
        raise ValueError("values must exceed half the lattice spacing")
    qs = np.linspace(0.0, 1.0 - min_tail / y.size, n_candidates)
    cands = np.unique(np.quantile(y, qs, method="lower"))
    alpha, ymin, d, nt = _fit_tail(y, cands, min_tail)
    if not math.isfinite(alpha):
        return PowerLawFit.nan(int(v.size))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(bootstrap_samples):
        yb = np.sort(y[rng.integers(0, y.size, y.size)])
        cb = np.unique(np.quantile(yb, qs, method="lower"))
        boots.append(_fit_tail(yb, cb, min_tail)[0])
    half = (100.0 - interval_percent) / 2
    boots = np.asarray(boots)
    lo, hi = np.percentile(boots[np.isfinite(boots)], [half, 100 - half])
    return PowerLawFit(float(alpha), float(lo), float(hi), float((alpha - 1) / math.sqrt(nt)),
                       float(ymin + 0.5 * lattice), int(nt), int(v.size), float(d))


@dataclass(frozen=True)
class FieldLineParams:
    """Parameters of the field-line stage (config section ``field_lines``; see the schema).

    Attributes
    ----------
    n_lines : int
        Lines traced from uniform random seeds (each both ways).
    length_box : float
        Arc length traced each way, in units of the largest box edge.
    step_cells : float
        RK4 step in arc length [cells of the smallest edge].
    seed : int
        Seed of the line starting points.
    n_distances : int
        Log-spaced distances z along B̂0 at which ⟨|Δr⊥|²⟩ is measured (from one cell to the
        length traced).
    plateau_window_dex : float
        κ_FL plateau = mean of κ_FL(z) over the last ``plateau_window_dex`` decades of z that at
        least half the line branches reach.
    bootstrap_samples : int
        Resamples (over lines) for the intervals of κ_FL and of the power-law exponents.
    """

    n_lines: int = 1000
    length_box: float = 3.0
    step_cells: float = 0.25
    seed: int = 0
    n_distances: int = 40
    plateau_window_dex: float = 0.5
    bootstrap_samples: int = 100

    def __post_init__(self) -> None:
        checks = [
            (self.n_lines >= 10, "n_lines must be >= 10"),
            (self.length_box > 0, "length_box must be > 0"),
            (0 < self.step_cells <= 1, "step_cells must be in (0, 1]"),
            (self.n_distances >= 5, "n_distances must be >= 5"),
            (self.plateau_window_dex > 0, "plateau_window_dex must be > 0"),
            (self.bootstrap_samples >= 10, "bootstrap_samples must be >= 10"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"field_lines parameters: {message}; got {self}")

    @classmethod
    def from_config(cls, section) -> FieldLineParams:
        section = dict(section or {})
        unknown = sorted(set(section) - {f.name for f in _dc_fields(cls)})
        if unknown:
            raise ValueError(f"field_lines config: unknown key(s) {unknown}")
        return cls(**section)


def _phase_along(lines: np.ndarray, phase_grid: np.ndarray, origin, cell) -> np.ndarray:
    """Phase (int8) of the cell holding each line sample (the pusher's midpoint-cell rule)."""
    shape = np.asarray(phase_grid.shape)
    idx = np.floor((lines - np.asarray(origin)) / np.asarray(cell)).astype(np.int64) % shape
    return phase_grid[idx[..., 0], idx[..., 1], idx[..., 2]]


def field_line_statistics(snap: Snapshot, params: FieldLineParams | None = None,
                          thresholds_K=DEFAULT_THRESHOLDS_K, phase_names=DEFAULT_PHASE_NAMES) -> xr.Dataset:
    r"""Field-line random walk and phase-patch statistics of one snapshot.

    Traces ``n_lines`` lines from uniform random seeds both ways for ``length_box`` box edges
    and returns a Dataset with

    * ``msd_perp_fl`` (distance) = ⟨|Δr⊥|²⟩ [pc²] at first passage of |Δr·B̂0| = z, over line
      branches reaching z (``branches_reached``), ``kappa_fl`` = ⟨|Δr⊥|²⟩/(4z) [pc] with its
      bootstrap interval over lines, the local exponent d ln⟨|Δr⊥|²⟩/d ln z, and the plateau
      ``kappa_fl_plateau`` [pc] (window mean over the late window, given only when the window's
      exponent is diffusive, |γ − 1| ≤ 0.2, else NaN; attrs give the exponent and regime: in a
      periodic box lines can return towards their start after one box length, γ < 1), and the
      largest running value ``kappa_fl_peak`` at ``distance_kappa_fl_peak``;
    * per phase: the pdf of complete segment arc lengths [pc⁻¹] on log bins, the ML power-law
      fit (α with interval, l_min [pc], n), the mean segment length, the linear filling
      fraction (fraction of arc length) and the volume fraction of the phase's cells.

    B̂0 = ⟨B⟩/|⟨B⟩| from the snapshot.
    """
    from cosmicflow.phase_rule import phase_index
    from cosmicflow.transport import REGIMES, TransportParams, classify_exponent

    p = params or FieldLineParams()
    cell = snap.cell_pc
    step = p.step_cells * float(cell.min())
    length = p.length_box * float(np.max(snap.box_pc))
    b0 = snap.mean_field_ug()
    if not np.linalg.norm(b0) > 0:
        raise ValueError(f"{snap.path}: <B> = 0, no mean-field direction for the field-line walk")
    b0hat = b0 / np.linalg.norm(b0)
    rng = np.random.default_rng(p.seed)
    seeds = snap.origin_pc + rng.random((p.n_lines, 3)) * snap.box_pc
    lines = trace_many(snap.fields, snap.origin_pc, cell, seeds, length, step)

    z = np.geomspace(float(cell.min()), length, p.n_distances)
    sq = first_passage_perp_sq(lines, b0hat, z)  # (line, branch, z)
    reached = np.isfinite(sq).sum(axis=(0, 1))
    tp = TransportParams(bootstrap_samples=p.bootstrap_samples)
    rng_b = np.random.default_rng(p.seed + 1)
    boot = np.empty((p.bootstrap_samples, z.size))
    half = (100 - tp.interval_percent) / 2
    with warnings.catch_warnings():  # distances no branch reaches are NaN by design
        warnings.simplefilter("ignore", RuntimeWarning)
        per_line = np.nanmean(sq, axis=1)  # (line, z); NaN where neither branch reached
        msd = np.nanmean(sq, axis=(0, 1))
        for s in range(p.bootstrap_samples):
            boot[s] = np.nanmean(per_line[rng_b.integers(0, p.n_lines, p.n_lines)], axis=0) / (4 * z)
        kappa_int = np.nanpercentile(boot, [half, 100 - half], axis=0).T
    kappa = msd / (4 * z)
    gamma = np.gradient(np.log(msd), np.log(z))
    usable = reached >= sq.shape[0]  # at least half of the 2 n branches
    z_top = z[usable].max()
    win = usable & (z >= z_top * 10 ** (-p.plateau_window_dex))
    g_win = float(np.polyfit(np.log(z[win]), np.log(msd[win]), 1)[0]) if win.sum() >= 2 else math.nan
    regime_code = int(classify_exponent(g_win, tp))
    if regime_code >= 0 and REGIMES[regime_code] == "diffusive":
        k_boot = np.nanmean(boot[:, win], axis=1)
        k_plateau = float(np.mean(kappa[win]))
        k_lo, k_hi = np.percentile(k_boot, [half, 100 - half])
    else:  # no diffusive field-line walk within the traced length: no value is invented
        k_plateau = k_lo = k_hi = math.nan
    i_peak = int(np.nanargmax(np.where(usable, kappa, np.nan)))

    # phases along the lines
    pgrid = phase_index(np.asarray(snap["temperature"]), thresholds_K)
    ph = _phase_along(lines, pgrid, snap.origin_pc, cell)
    runs = phase_runs(ph, step)
    linear = np.bincount(ph.ravel(), minlength=N_PHASES) / ph.size
    volume = np.bincount(pgrid.ravel(), minlength=N_PHASES) / pgrid.size
    edges = np.geomspace(step, 2 * length, 41)
    pdf = np.zeros((3, edges.size - 1))
    fits = []
    for a in range(3):
        if runs[a].size:
            h, _ = np.histogram(runs[a], edges)
            pdf[a] = h / (runs[a].size * np.diff(edges))
        fits.append(fit_power_law(runs[a], lattice=step, bootstrap_samples=p.bootstrap_samples, seed=p.seed + a))
    fit_arr = lambda name: np.array([getattr(f, name) for f in fits], float)  # noqa: E731
    ds = xr.Dataset(
        {
            "msd_perp_fl": ("distance", msd, {"units": "pc^2", "long_name": "<|dr_perp|^2> of field lines at first passage of |dr . B0hat| = distance"}),
            "branches_reached": ("distance", reached, {"units": "1", "long_name": "line branches (2 per line) reaching the distance"}),
            "kappa_fl": ("distance", kappa, {"units": "pc", "long_name": "running field-line diffusion <|dr_perp|^2>/(4 z)"}),
            "kappa_fl_interval": (("distance", "bound"), kappa_int, {"units": "pc"}),
            "msd_exponent_fl": ("distance", gamma, {"units": "1", "long_name": "d ln<|dr_perp|^2> / d ln z"}),
            "kappa_fl_plateau": ((), k_plateau, {"units": "pc", "long_name": "field-line diffusion coefficient kappa_FL (late-window mean)"}),
            "kappa_fl_plateau_interval": ("bound", [k_lo, k_hi], {"units": "pc"}),
            "kappa_fl_peak": ((), float(kappa[i_peak]), {"units": "pc", "long_name": "largest kappa_FL(z) over distances at least half the branches reach"}),
            "kappa_fl_peak_interval": ("bound", kappa_int[i_peak], {"units": "pc"}),
            "distance_kappa_fl_peak": ((), float(z[i_peak]), {"units": "pc"}),
            "segment_pdf": (("phase", "length_bin"), pdf, {"units": "pc^-1", "long_name": "pdf of complete segment arc lengths per phase"}),
            "length_edges": ("length_edge", edges, {"units": "pc"}),
            "segment_count": ("phase", [r.size for r in runs], {"units": "1"}),
            "segment_mean_pc": ("phase", [float(r.mean()) if r.size else math.nan for r in runs], {"units": "pc"}),
            "powerlaw_alpha": ("phase", fit_arr("alpha"), {"units": "1", "long_name": "ML power-law exponent of segment lengths, p(l) ~ l^-alpha"}),
            "powerlaw_alpha_interval": (("phase", "bound"), np.stack([fit_arr("alpha_lower"), fit_arr("alpha_upper")], 1), {"units": "1"}),
            "powerlaw_alpha_stderr": ("phase", fit_arr("alpha_stderr"), {"units": "1"}),
            "powerlaw_l_min": ("phase", fit_arr("x_min"), {"units": "pc"}),
            "powerlaw_n_tail": ("phase", fit_arr("n_tail"), {"units": "1"}),
            "powerlaw_ks": ("phase", fit_arr("ks_distance"), {"units": "1"}),
            "linear_filling_fraction": ("phase", linear, {"units": "1", "long_name": "fraction of traced arc length in each phase"}),
            "volume_fraction": ("phase", volume, {"units": "1", "long_name": "fraction of cells in each phase"}),
        },
        coords={"distance": ("distance", z, {"units": "pc", "long_name": "|dr . B0hat| along the mean field"}),
                "bound": ["lower", "upper"], "phase": list(phase_names)},
        attrs={
            "n_lines": p.n_lines, "step_pc": step, "length_pc": length,
            "mean_field_direction": b0hat.tolist(),
            "kappa_fl_window_pc": [float(z[win].min()), float(z[win].max())] if win.any() else [math.nan] * 2,
            "kappa_fl_window_exponent": g_win,
            "kappa_fl_regime": REGIMES[regime_code] if regime_code >= 0 else "undetermined",
            "parameters": str({f.name: getattr(p, f.name) for f in _dc_fields(p)}),
        },
    )
    return ds


def flrw_expectations(kappa_fl_pc: float, d_par_cm2_s, time_s, speed_cm_s: float | None = None) -> dict:
    r"""Particle D⊥ [cm² s⁻¹] expected from field-line wandering alone.

    * ballistic streaming along wandering lines (Jokipii 1966; Forman, Jokipii & Owens 1974):
      |Δz| = |μ| v t with μ uniform, so ⟨|Δr⊥|²⟩ = 4 κ_FL v ⟨|μ|⟩ t and
      D⊥ = κ_FL v/2 (the "field-line random walk limit");
    * compound subdiffusion (Urch 1977; Kóta & Jokipii 2000, ApJ 531, 1067; Qin, Matthaeus &
      Bieber 2002): particles diffuse along fixed lines, ⟨|Δz|⟩ = √(4 D∥ t/π) for
      ⟨Δz²⟩ = 2 D∥ t, so ⟨|Δr⊥|²⟩ = 4 κ_FL √(4 D∥ t/π) and the running
      D⊥(t) = κ_FL √(4 D∥/(π t)) → 0 as t^(-1/2);

    with κ_FL [pc] from :func:`field_line_statistics`, D∥ [cm² s⁻¹] and t [s]. Matthaeus et al.
    (2003, ApJ 590, L53) interpolate between these regimes (NLGC); a measured D⊥ above the
    compound value at late times means particles leave their lines (cross-field decorrelation).
    """
    from cosmicflow.constants import C_CM_S, PC_CM

    v = C_CM_S if speed_cm_s is None else float(speed_cm_s)
    k_cm = float(kappa_fl_pc) * PC_CM
    t = np.asarray(time_s, float)
    return {
        "ballistic_cm2_s": 0.5 * k_cm * v,
        "compound_cm2_s": k_cm * np.sqrt(4.0 * np.asarray(d_par_cm2_s, float) / (math.pi * t)),
    }


def write_field_lines(snapshot_path, output, params=None, phases: dict | None = None, config=None):
    """Run :func:`field_line_statistics` on a canonical snapshot and write NetCDF atomically."""
    from cosmicflow.io import atomic_output, provenance_attrs
    from cosmicflow.snapshot import read_snapshot

    if not isinstance(params, FieldLineParams):
        params = FieldLineParams.from_config(params)
    phases = phases or {}
    snap = read_snapshot(snapshot_path)
    ds = field_line_statistics(snap, params, phases.get("thresholds_K", DEFAULT_THRESHOLDS_K),
                               phases.get("names", DEFAULT_PHASE_NAMES))
    ds.attrs.update(provenance_attrs("cosmicflow.fieldlines.write_field_lines",
                                     {"field_lines": dict(config or {})}))
    ds.attrs["snapshot"] = str(snapshot_path)
    ds.attrs = {k: (str(v) if isinstance(v, (dict,)) else v) for k, v in ds.attrs.items()}
    with atomic_output(output) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    return output
