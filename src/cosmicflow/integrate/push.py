"""Pushing many particles: lanes of particles in vectorised passes, chunks over threads.

:func:`_advance` splits the particles into fixed contiguous chunks (one set of histograms
each, so no two threads write the same memory and results do not depend on the thread
count); each thread pushes its chunk LANES particles at a time (:func:`_push_lanes`). The
lanes' state lives in a small scratch array, one row per quantity, so the arithmetic of a
step (step length, midpoint and look-up weights, |B| and the Boris kick, the drift) runs as
loops over the lanes that LLVM vectorises (AVX2: 4 lanes per instruction); what cannot be
vectorised runs per lane: the field look-up (itself 4-wide, B and T of a cell in one vector,
:func:`~cosmicflow.integrate.field.blend4`), scattering, recorders. The corner cells of the
step after next are prefetched as soon as the drift is done, so the misses of all lanes
overlap with a whole round of work. A lane whose particle reaches the output time takes the
next particle of the chunk, so lanes stay busy. Each particle's arithmetic is what it would be
alone, so results do not depend on lanes or grouping: :func:`_advance_reference` pushes one
particle at a time with the same step and recorders (the benchmark's reference, and the
test's).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from cosmicflow._numba import JIT_INLINE, JIT_PARALLEL, JIT_UNCOUNTED
from cosmicflow.integrate.field import (
    b_at,
    blend4,
    blend4_bmag,
    cell_offset,
    grad_bmag,
    lookup,
    lookup_f,
    phase_at,
    prefetch_corners,
)
from cosmicflow.integrate.recorders import (
    RecordParams,
    StepEvent,
    record_every_step,
    record_sampled,
    record_step,
    sample_due,
)
from cosmicflow.integrate.step import (
    ScatterRates,
    StepParams,
    half_drift,
    kick,
    scatter,
    scattering_rate,
    step_length,
    wrap,
)

#: particles in flight per thread (:func:`_push_lanes`): two AVX2 vectors of float64
LANES = 8


class Params(NamedTuple):
    """All kernel constants, by name."""

    step: StepParams
    scatter: ScatterRates
    record: RecordParams


class Particles(NamedTuple):
    """Particle state (kernel argument; checkpointed by name).

    pos : unwrapped positions [pc] (n, 3); cell : wrapped cell coordinates (n, 3); dirn : unit
    directions (n, 3); bprev : |B| [µG] at the last field evaluation (n,); rng : splitmix64
    states (n,); steps : steps taken (n,).
    """

    pos: np.ndarray
    cell: np.ndarray
    dirn: np.ndarray
    bprev: np.ndarray
    rng: np.ndarray
    steps: np.ndarray


@njit(**JIT_INLINE)
def _finish_step(p, chunk, h, last, s_prev, s_end, o, wx, wy, wz, ocell, field, par, parts, rec):
    """Everything after the field-evaluation point of one step is known: blend B, kick,
    drift, scatter, record. Returns the path [pc] at the step's end."""
    sp = par.step
    if par.record.class_on:  # the class recorder's |grad B| from the same corners
        r = blend4_bmag(field, o, wx, wy, wz)
        fx, fy, fz, tt = r[0], r[1], r[2], r[3]
        g = grad_bmag((r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11]), wx, wy, wz,
                      sp.inv_dx, sp.inv_dy, sp.inv_dz)
    else:
        fx, fy, fz, tt = blend4(field, o, wx, wy, wz)
        g = -1.0
    bm = math.sqrt(fx * fx + fy * fy + fz * fz)
    parts.bprev[p] = bm
    half = 0.5 * h
    d = parts.dirn
    ox, oy, oz = d[p, 0], d[p, 1], d[p, 2]
    nx_, ny_, nz_ = kick(ox, oy, oz, fx, fy, fz, half, sp)
    a = phase_at(field, ocell, sp.t1, sp.t2)
    if par.scatter.on:  # the scattering slot, at x_{n+1/2} where the rate is evaluated
        nu = scattering_rate(par.scatter, a, bm)
        if nu > 0.0:
            nx_, ny_, nz_, parts.rng[p] = scatter(nx_, ny_, nz_, parts.rng[p], nu, h)
    dx, dy, dz = half * (ox + nx_), half * (oy + ny_), half * (oz + nz_)
    x, c = parts.pos, parts.cell
    x[p, 0] += dx
    x[p, 1] += dy
    x[p, 2] += dz
    c[p, 0] = wrap(c[p, 0] + dx * sp.inv_dx, sp.nx)
    c[p, 1] = wrap(c[p, 1] + dy * sp.inv_dy, sp.ny)
    c[p, 2] = wrap(c[p, 2] + dz * sp.inv_dz, sp.nz)
    sl = s_end if last else s_prev + h
    parts.steps[p] += 1
    d[p, 0], d[p, 1], d[p, 2] = nx_, ny_, nz_
    record_step(rec, par.record, sp, field, StepEvent(
        p, chunk, h, sl - half, sl, dx, dy, dz, fx, fy, fz, bm, tt, g, a, o, wx, wy, wz,
        x[p, 0], x[p, 1], x[p, 2], c[p, 0], c[p, 1], c[p, 2], nx_, ny_, nz_))
    return sl


# Rows of the per-thread lane scratch: value ``row`` of lane l is ``lf[row * LANES + l]``
# (``li`` for integers). Module-level ints are compile-time constants to Numba, so every
# lane loop below indexes one array at constant offsets: LLVM proves the rows disjoint and
# vectorises the loops across lanes without run-time alias checks.
(_CX, _CY, _CZ, _NX, _NY, _NZ, _PX, _PY, _PZ, _BPREV, _S, _H, _LAST, _OF, _TCF,
 _WX, _WY, _WZ, _BX, _BY, _BZ, _BM, _T, _KX, _KY, _KZ, _DX, _DY, _DZ) = range(29)
_M0 = 29  # class accounting: |B| at the 8 corners in rows _M0 .. _M0 + 7, then |grad |B||
_G = _M0 + 8
N_LANE_F = _G + 1
_P, _O, _PHASE = range(3)  # particle (-1: idle lane), look-up offset, midpoint cell's phase
N_LANE_I = 3


@njit(**JIT_INLINE)
def _r(row, lane):
    return row * LANES + lane


@njit(**JIT_INLINE)
def _take(lf, li, lane, p, s_start, parts):
    """Load particle p into a lane."""
    li[_r(_P, lane)] = p
    for k in range(3):
        lf[_r(_CX + k, lane)] = parts.cell[p, k]
        lf[_r(_NX + k, lane)] = parts.dirn[p, k]
        lf[_r(_PX + k, lane)] = parts.pos[p, k]
    lf[_r(_BPREV, lane)] = parts.bprev[p]
    lf[_r(_S, lane)] = s_start


@njit(**JIT_INLINE)
def _give_back(lf, lane, p, parts):
    """Store a lane's particle state back into particle p."""
    for k in range(3):
        parts.cell[p, k] = lf[_r(_CX + k, lane)]
        parts.dirn[p, k] = lf[_r(_NX + k, lane)]
        parts.pos[p, k] = lf[_r(_PX + k, lane)]
    parts.bprev[p] = lf[_r(_BPREV, lane)]


@njit(**JIT_INLINE)
def _lanes_midpoint(lf, s_end, field, sp):
    """Every lane: step length h, whether it lands on s_end, the midpoint x_{n+½} and its
    look-up (branch-free arithmetic over the lanes, vectorised; idle lanes compute on stale
    values, never read)."""
    g1 = np.float64(field.gdim[1])
    g2 = np.float64(field.gdim[2])
    for lane in range(LANES):
        h, last = step_length(lf[_r(_BPREV, lane)], lf[_r(_S, lane)], s_end, sp)
        lf[_r(_H, lane)] = h
        lf[_r(_LAST, lane)] = 1.0 if last else 0.0
        mx, my, mz = half_drift(lf[_r(_CX, lane)], lf[_r(_CY, lane)], lf[_r(_CZ, lane)],
                                lf[_r(_NX, lane)], lf[_r(_NY, lane)], lf[_r(_NZ, lane)],
                                0.5 * h, sp)
        (lf[_r(_OF, lane)], lf[_r(_WX, lane)], lf[_r(_WY, lane)], lf[_r(_WZ, lane)],
         lf[_r(_TCF, lane)]) = lookup_f(g1, g2, mx, my, mz)


@njit(**JIT_INLINE)
def _lanes_field(lf, li, field, sp, classes):
    """Busy lanes: B and T at x_{n+½} (one 4-wide blend per lane, :func:`~.field.blend4`) and
    the midpoint cell's phase; with ``classes``, also |B| at the 8 corners from the same load
    (:func:`~.field.blend4_bmag`) for :func:`_lanes_gradient`."""
    for lane in range(LANES):
        if li[_r(_P, lane)] < 0:
            continue
        o = np.int64(lf[_r(_OF, lane)])
        li[_r(_O, lane)] = o
        wx, wy, wz = lf[_r(_WX, lane)], lf[_r(_WY, lane)], lf[_r(_WZ, lane)]
        if classes:
            r = blend4_bmag(field, o, wx, wy, wz)
            fx, fy, fz, tt = r[0], r[1], r[2], r[3]
            for k in range(8):
                lf[_r(_M0 + k, lane)] = r[4 + k]
        else:
            fx, fy, fz, tt = blend4(field, o, wx, wy, wz)
        lf[_r(_BX, lane)] = fx
        lf[_r(_BY, lane)] = fy
        lf[_r(_BZ, lane)] = fz
        lf[_r(_T, lane)] = tt
        li[_r(_PHASE, lane)] = phase_at(field, np.int64(lf[_r(_TCF, lane)]), sp.t1, sp.t2)


@njit(**JIT_INLINE)
def _lanes_gradient(lf, sp):
    """Every lane: |grad |B|| at x_{n+½} from the corner |B| (vectorised; for the class
    recorder, which needs it at every step)."""
    for lane in range(LANES):
        m = (lf[_r(_M0, lane)], lf[_r(_M0 + 1, lane)], lf[_r(_M0 + 2, lane)],
             lf[_r(_M0 + 3, lane)], lf[_r(_M0 + 4, lane)], lf[_r(_M0 + 5, lane)],
             lf[_r(_M0 + 6, lane)], lf[_r(_M0 + 7, lane)])
        lf[_r(_G, lane)] = grad_bmag(m, lf[_r(_WX, lane)], lf[_r(_WY, lane)], lf[_r(_WZ, lane)],
                                     sp.inv_dx, sp.inv_dy, sp.inv_dz)


@njit(**JIT_INLINE)
def _lanes_kick(lf, sp):
    """Every lane: |B| and the Boris kick (vectorised)."""
    for lane in range(LANES):
        fx, fy, fz = lf[_r(_BX, lane)], lf[_r(_BY, lane)], lf[_r(_BZ, lane)]
        lf[_r(_BM, lane)] = math.sqrt(fx * fx + fy * fy + fz * fz)
        kx, ky, kz = kick(lf[_r(_NX, lane)], lf[_r(_NY, lane)], lf[_r(_NZ, lane)], fx, fy, fz,
                          0.5 * lf[_r(_H, lane)], sp)
        lf[_r(_KX, lane)] = kx
        lf[_r(_KY, lane)] = ky
        lf[_r(_KZ, lane)] = kz


@njit(**JIT_INLINE)
def _lanes_scatter(lf, li, rates, parts):
    """Busy lanes: the scattering slot (each particle's own random stream)."""
    for lane in range(LANES):
        p = li[_r(_P, lane)]
        if p < 0:
            continue
        nu = scattering_rate(rates, li[_r(_PHASE, lane)], lf[_r(_BM, lane)])
        if nu > 0.0:
            (lf[_r(_KX, lane)], lf[_r(_KY, lane)], lf[_r(_KZ, lane)],
             parts.rng[p]) = scatter(lf[_r(_KX, lane)], lf[_r(_KY, lane)], lf[_r(_KZ, lane)],
                                     parts.rng[p], nu, lf[_r(_H, lane)])


@njit(**JIT_INLINE)
def _lanes_drift(lf, s_end, field, sp):
    """Every lane: the second half drift with the new direction (vectorised)."""
    g1 = np.float64(field.gdim[1])
    g2 = np.float64(field.gdim[2])
    for lane in range(LANES):
        h = lf[_r(_H, lane)]
        half = 0.5 * h
        ox, oy, oz = lf[_r(_NX, lane)], lf[_r(_NY, lane)], lf[_r(_NZ, lane)]
        kx, ky, kz = lf[_r(_KX, lane)], lf[_r(_KY, lane)], lf[_r(_KZ, lane)]
        dx, dy, dz = half * (ox + kx), half * (oy + ky), half * (oz + kz)
        lf[_r(_DX, lane)] = dx
        lf[_r(_DY, lane)] = dy
        lf[_r(_DZ, lane)] = dz
        lf[_r(_PX, lane)] += dx
        lf[_r(_PY, lane)] += dy
        lf[_r(_PZ, lane)] += dz
        lf[_r(_CX, lane)] = wrap(lf[_r(_CX, lane)] + dx * sp.inv_dx, sp.nx)
        lf[_r(_CY, lane)] = wrap(lf[_r(_CY, lane)] + dy * sp.inv_dy, sp.ny)
        lf[_r(_CZ, lane)] = wrap(lf[_r(_CZ, lane)] + dz * sp.inv_dz, sp.nz)
        lf[_r(_NX, lane)] = kx
        lf[_r(_NY, lane)] = ky
        lf[_r(_NZ, lane)] = kz
        lf[_r(_BPREV, lane)] = lf[_r(_BM, lane)]
        s = s_end if lf[_r(_LAST, lane)] != 0.0 else lf[_r(_S, lane)] + h
        lf[_r(_S, lane)] = s
        # the look-up of the step after next, x_{n+1} + 1.5 h n̂ (its midpoint if the next two
        # steps have this one's length and direction: off by a fraction of a cell at most, so
        # its corners are mostly those the next step needs too): requested a whole round before
        # it is used, so an L3 or DRAM miss has the next step's recorders, passes and look-ups
        # to arrive in. Prefetching only one step ahead left part of each miss to wait for
        # (128^3: 40 -> 37 ns a step, 512^3: 54 -> 50; two steps ahead and one step ahead
        # together cost more instructions than they saved)
        qx, qy, qz = half_drift(lf[_r(_CX, lane)], lf[_r(_CY, lane)], lf[_r(_CZ, lane)], kx, ky,
                                kz, 3.0 * half, sp)
        lf[_r(_OF, lane)] = lookup_f(g1, g2, qx, qy, qz)[0]


@njit(**JIT_INLINE)
def _lanes_prefetch(lf, li, field):
    """Busy lanes: request the corner cells of the look-up offset in row _OF."""
    for lane in range(LANES):
        if li[_r(_P, lane)] >= 0:
            prefetch_corners(field, np.int64(lf[_r(_OF, lane)]))


@njit(**JIT_INLINE)
def _lane_event(lf, li, lane, p, chunk, classes):
    """The :class:`~.recorders.StepEvent` of a lane's step just taken."""
    h = lf[_r(_H, lane)]
    s = lf[_r(_S, lane)]
    return StepEvent(
        p, chunk, h, s - 0.5 * h, s, lf[_r(_DX, lane)], lf[_r(_DY, lane)], lf[_r(_DZ, lane)],
        lf[_r(_BX, lane)], lf[_r(_BY, lane)], lf[_r(_BZ, lane)], lf[_r(_BM, lane)],
        lf[_r(_T, lane)], lf[_r(_G, lane)] if classes else -1.0, li[_r(_PHASE, lane)],
        li[_r(_O, lane)], lf[_r(_WX, lane)], lf[_r(_WY, lane)], lf[_r(_WZ, lane)],
        lf[_r(_PX, lane)], lf[_r(_PY, lane)], lf[_r(_PZ, lane)],
        lf[_r(_CX, lane)], lf[_r(_CY, lane)], lf[_r(_CZ, lane)], lf[_r(_NX, lane)],
        lf[_r(_NY, lane)], lf[_r(_NZ, lane)])


@njit(**JIT_UNCOUNTED)
def _push_lanes(lo, hi, chunk, s_start, s_end, field, par, parts, rec, lf, li):
    """Advance particles lo..hi-1 from path s_start to exactly s_end [pc], LANES at a time.

    Each lane holds one particle until it reaches s_end, then takes the next particle of the
    range, so lanes stay busy. A round is a step of every busy lane, in passes over the
    lanes: midpoint and look-up weights (vectorised), field and phase (per lane, 4-wide),
    kick (vectorised), scattering (per lane), drift (vectorised), prefetch of the look-up
    two steps ahead, then recorders and hand-over (per lane). Each particle's arithmetic is
    that of :func:`_push_one`, bit for bit (``tests/test_integrate.py``).
    """
    sp = par.step
    if not s_start < s_end:
        return
    classes = par.record.class_on
    nxt = lo
    busy = 0
    for lane in range(LANES):
        if nxt < hi:
            _take(lf, li, lane, nxt, s_start, parts)
            nxt += 1
            busy += 1
        else:
            li[_r(_P, lane)] = -1
    while busy > 0:
        _lanes_midpoint(lf, s_end, field, sp)
        _lanes_field(lf, li, field, sp, classes)
        if classes:
            _lanes_gradient(lf, sp)
        _lanes_kick(lf, sp)
        if par.scatter.on:
            _lanes_scatter(lf, li, par.scatter, parts)
        _lanes_drift(lf, s_end, field, sp)
        _lanes_prefetch(lf, li, field)
        for lane in range(LANES):
            p = li[_r(_P, lane)]
            if p < 0:
                continue
            # the recorders of every step see the fields they use; the full event (28 values)
            # is built only for a sampled step: built every step, its loads were hoisted and
            # spilled (~6 ns a step at 32^3)
            record_every_step(rec, par.record, sp, field,
                              _lane_event(lf, li, lane, p, chunk, classes))
            if sample_due(rec, p, lf[_r(_S, lane)]):
                record_sampled(rec, par.record, sp, field,
                               _lane_event(lf, li, lane, p, chunk, classes))
            parts.steps[p] += 1
            if lf[_r(_LAST, lane)] != 0.0:
                _give_back(lf, lane, p, parts)
                if nxt < hi:
                    _take(lf, li, lane, nxt, s_start, parts)
                    nxt += 1
                else:
                    li[_r(_P, lane)] = -1
                    busy -= 1


@njit(**JIT_UNCOUNTED)
def _push_one(lo, hi, chunk, s_start, s_end, field, par, parts, rec):
    """Advance particles lo..hi-1 one at a time from s_start to s_end [pc]: the same step as
    :func:`_push_lanes`, without lanes or prefetching (the benchmark's reference kernel)."""
    sp = par.step
    c, d = parts.cell, parts.dirn
    for p in range(lo, hi):
        s = s_start
        while s < s_end:
            h, last = step_length(parts.bprev[p], s, s_end, sp)
            mx, my, mz = half_drift(c[p, 0], c[p, 1], c[p, 2], d[p, 0], d[p, 1], d[p, 2],
                                    0.5 * h, sp)
            o, wx, wy, wz = lookup(field.gdim, mx, my, mz)
            s = _finish_step(p, chunk, h, last, s, s_end, o, wx, wy, wz,
                             cell_offset(field.gdim, mx, my, mz), field, par, parts, rec)
            if last:
                break


@njit(**JIT_INLINE)
def _mu_at_end(lo, hi, field, parts, mu_out):
    """μ at the particles' whole-step positions against the local field."""
    c, d = parts.cell, parts.dirn
    for p in range(lo, hi):
        fx, fy, fz = b_at(field, c[p, 0], c[p, 1], c[p, 2])
        mu_out[p] = (d[p, 0] * fx + d[p, 1] * fy + d[p, 2] * fz) / math.sqrt(
            fx * fx + fy * fy + fz * fz)


@njit(**JIT_PARALLEL)
def _advance(s_start, s_end, nchunks, field, step, scatter, record, parts, rec, mu_out):
    """Advance every particle from s_start to s_end [pc] in parallel; μ at s_end into mu_out.

    Particles are split into ``nchunks`` fixed contiguous chunks (chunk c writes histogram
    row c only), so the result does not depend on the thread count. The parameters come as
    the three flat tuples of :class:`Params` (a parallel loop cannot take nested tuples).
    """
    n = parts.pos.shape[0]
    for chunk in prange(nchunks):
        # the parallel loop's index is unsigned in one of Numba's two lowerings of this body:
        # a signed chunk keeps _push_lanes to one compiled signature (one compile, not two)
        ch = np.int64(chunk)
        par = Params(step, scatter, record)
        lo, hi = ch * n // nchunks, (ch + 1) * n // nchunks
        lf = np.zeros(N_LANE_F * LANES)
        li = np.zeros(N_LANE_I * LANES, dtype=np.int64)
        _push_lanes(lo, hi, ch, s_start, s_end, field, par, parts, rec, lf, li)
        _mu_at_end(lo, hi, field, parts, mu_out)


@njit(**JIT_PARALLEL)
def _advance_reference(s_start, s_end, nchunks, field, step, scatter, record, parts, rec, mu_out):
    """:func:`_advance` with :func:`_push_one`: one particle at a time, no prefetching."""
    n = parts.pos.shape[0]
    for chunk in prange(nchunks):
        ch = np.int64(chunk)  # one signature of _push_one (see _advance)
        par = Params(step, scatter, record)
        lo, hi = ch * n // nchunks, (ch + 1) * n // nchunks
        _push_one(lo, hi, ch, s_start, s_end, field, par, parts, rec)
        _mu_at_end(lo, hi, field, parts, mu_out)


def _stamp_with_dependencies(*dispatchers) -> None:
    """Make Numba's on-disk cache of these kernels depend on the modules inlined into them.

    Numba keys a cached kernel by the modification stamp of its own source file only, and the
    step, recorders and field modules are inlined into the kernels above: after an edit there
    a stale kernel would be loaded. Adding a digest of those files to the stamp the cache index
    is checked against makes such an edit recompile (``Cache._cache_file._source_stamp`` is
    Numba-internal; if it is missing nothing is changed and the cache behaves as before).
    """
    import hashlib
    from pathlib import Path

    import cosmicflow._numba
    import cosmicflow.phase_rule
    from cosmicflow.integrate import field, recorders, step

    digest = hashlib.sha256()
    for mod in (field, step, recorders, cosmicflow.phase_rule, cosmicflow._numba):
        digest.update(Path(mod.__file__).read_bytes())
    for disp in dispatchers:
        cache_file = getattr(getattr(disp, "_cache", None), "_cache_file", None)
        if cache_file is not None and hasattr(cache_file, "_source_stamp"):
            cache_file._source_stamp = (cache_file._source_stamp, digest.hexdigest())


_stamp_with_dependencies(_push_lanes, _push_one, _advance, _advance_reference)
