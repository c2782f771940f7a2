r"""One particle step: drift–kick–drift Boris, the step rule, and the scattering slot.

Equation of motion (paper §2.3, Eq. 5) for v = c, with the path s = c t [pc]:

.. math:: \frac{d\hat{\mathbf n}}{ds} = \frac{Z}{R_1}\,\hat{\mathbf n}\times\mathbf B ,
          \qquad R_1 = 1.0810\,\mathrm{pc}\;\frac{E/\mathrm{PeV}}{Z}\Big/ (1\,\mu\mathrm G),

B in µG, R_1 = r_L(E, B = 1 µG) (:data:`cosmicflow.constants.LARMOR_PC_PER_PEV_UG`).

Step (as CRPropa's PropagationBP): half drift x_{n+½} = x_n + (h/2) n̂_n; B = B(x_{n+½});
Boris rotation n̂_{n+1} = R n̂_n (:func:`boris_rotate`, an exact rotation by
2·atan(Ω h/2c)); half drift x_{n+1} = x_{n+½} + (h/2) n̂_{n+1}. Step rule
(:func:`step_length`): h = min(θ_max r_L,loc, f_cell Δx_min, distance to the next output
time), r_L,loc = R_1/|B| from the previous field evaluation.

Scattering slot (:func:`scatter`): after the kick, with probability 1 − exp(−ν h/c) the
direction is redrawn uniformly on the sphere (hard-sphere sub-grid scattering), at the
field-evaluation point x_{n+½} where ν was evaluated: the second half drift already uses the
new direction. Scattering at the step's end instead shifts every scattering h/2 past the point
whose rate decided it; where ν jumps (phase or patch boundaries) that biases the time spent in
each region and D∥ at first order in νh (+4 % at νh = 0.2 for layers one mean free path thick,
``tests/test_twophase_physics.py``); at x_{n+½} the error is second order. The rate model
(:class:`ScatterRates`, :func:`scattering_rate`) gives ν/c at the step's field-evaluation
point from the midpoint cell's phase α and the local |B|:

.. math:: \nu/c = \nu_\alpha/c + [\,|B| > B_{mm}\,]\;\nu_{mm}/c ,

which holds the models of ``integrate.scattering``: none (all 0), uniform (ν_α = ν), per
phase (ν_α) and micromirror patches (ν_mm where |B| exceeds the threshold, on a uniform
background). Each particle draws from its own splitmix64 stream, only at steps where ν > 0,
so results depend neither on thread scheduling nor on grouping.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from cosmicflow._numba import JIT_INLINE
from cosmicflow.constants import C_CM_S, PC_CM

#: speed of light [pc s^-1]
C_PC_S = C_CM_S / PC_CM


class StepParams(NamedTuple):
    """Constants of the step rule and the geometry (kernel parameters, by name).

    r1 : R_1 = r_L at 1 µG [pc]; max_rot : θ_max [rad]; max_len : f_cell Δx_min [pc];
    t1, t2 : phase thresholds [K]; inv_dx, inv_dy, inv_dz : 1/Δx [pc^-1];
    nx, ny, nz : box size [cells] (float); rl_ref : r_L(B_ref) [pc].
    """

    r1: float
    max_rot: float
    max_len: float
    t1: float
    t2: float
    inv_dx: float
    inv_dy: float
    inv_dz: float
    nx: float
    ny: float
    nz: float
    rl_ref: float


class ScatterRates(NamedTuple):
    """The scattering slot's rate model at the job's energy (:func:`scattering_rate`).

    nu_phase : ν_α / c per phase [pc^-1] (float64, one per phase)
    b_mm : micromirror threshold on |B| [µG] (inf: no patches)
    nu_mm : extra ν / c inside patches [pc^-1]
    on : whether any rate is > 0 (else the slot is skipped)
    """

    nu_phase: np.ndarray
    b_mm: float
    nu_mm: float
    on: bool


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
def wrap(c, n):
    """Wrap a cell coordinate moved by less than one box back into [0, n]."""
    if c >= n:
        return c - n
    if c < 0.0:
        return c + n
    return c


@njit(**JIT_INLINE)
def step_length(bmag_prev, s, s_end, sp):
    """Path h [pc] of the next step from path s [pc] and whether it lands on s_end.

    h = min(θ_max R_1/|B|_prev, f_cell Δx_min, s_end − s).
    """
    h = sp.max_rot * sp.r1 / bmag_prev
    if h > sp.max_len:
        h = sp.max_len
    last = False
    if s + h >= s_end:
        h = s_end - s
        last = True
    return h, last


@njit(**JIT_INLINE)
def half_drift(cx, cy, cz, nx_, ny_, nz_, half, sp):
    """Wrapped cell coordinates after a drift of path ``half`` [pc] along n̂."""
    return (wrap(cx + half * nx_ * sp.inv_dx, sp.nx), wrap(cy + half * ny_ * sp.inv_dy, sp.ny),
            wrap(cz + half * nz_ * sp.inv_dz, sp.nz))


@njit(**JIT_INLINE)
def kick(ox, oy, oz, fx, fy, fz, half, sp):
    """Rotate n̂ about B = (fx, fy, fz) [µG] for a step of path 2·half [pc]; return the new n̂.
    The step's displacement is then half (n̂_old + n̂_new) [pc], with n̂_new after the
    scattering slot (scattering happens at x_{n+½}, see the module docstring)."""
    return boris_rotate(ox, oy, oz, fx, fy, fz, half / sp.r1)


@njit(**JIT_INLINE)
def splitmix64(state):
    """splitmix64 (Steele, Lea & Flood 2014): next state and a 64-bit output."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@njit(**JIT_INLINE)
def uniform(state):
    """Uniform double in [0, 1) from the top 53 bits; returns (new state, value)."""
    state, z = splitmix64(state)
    return state, np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(**JIT_INLINE)
def scattering_rate(rates, phase, bmag):
    """ν/c [pc^-1] at a step: the phase's rate plus the micromirror rate where |B| > B_mm."""
    return rates.nu_phase[phase] + rates.nu_mm * np.float64(bmag > rates.b_mm)


@njit(**JIT_INLINE)
def scatter(nx_, ny_, nz_, state, nu, h):
    """Hard-sphere scattering over a step of path h [pc] at rate ν/c = nu [pc^-1]: with
    probability 1 − exp(−nu h) a new isotropic n̂. Returns (n̂, new RNG state)."""
    state, u = uniform(state)
    if u < -math.expm1(-nu * h):
        state, u1 = uniform(state)
        state, u2 = uniform(state)
        nz_ = 2.0 * u1 - 1.0
        sperp = math.sqrt(max(0.0, 1.0 - nz_ * nz_))
        phi = 2.0 * math.pi * u2
        nx_ = sperp * math.cos(phi)
        ny_ = sperp * math.sin(phi)
    return nx_, ny_, nz_, state
