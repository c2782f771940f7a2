"""Pushing many particles: lanes in lock-step, prefetched look-ups, chunks over threads.

:func:`_advance` splits the particles into fixed contiguous chunks (one set of histograms
each, so no two threads write the same memory and results do not depend on the thread
count); each thread pushes LANES particles of its chunk in lock-step (:func:`_push_group`):
a first pass computes every lane's field-evaluation point and prefetches its 8 corner cells,
a second blends, rotates, drifts, scatters and records. A single particle is bound by memory
latency (the next load address depends on the last rotation); requesting the lines of
several independent particles back to back overlaps those misses. Each particle's arithmetic
is what it would be alone, so results do not depend on grouping: :func:`_advance_reference`
pushes one particle at a time with the same step and recorders (the benchmark's reference).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from cosmicflow._numba import JIT_INLINE, JIT_PARALLEL, JIT_UNCOUNTED
from cosmicflow.integrate.field import b_at, blend, cell_offset, lookup, phase_at, prefetch_corners
from cosmicflow.integrate.recorders import RecordParams, StepEvent, record_step
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

#: particles pushed in lock-step by one thread (see _push_group)
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
    fx = blend(field, o, wx, wy, wz, 0)
    fy = blend(field, o, wx, wy, wz, 1)
    fz = blend(field, o, wx, wy, wz, 2)
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
        p, chunk, h, sl - half, sl, dx, dy, dz, fx, fy, fz, bm, a, o, wx, wy, wz,
        x[p, 0], x[p, 1], x[p, 2], c[p, 0], c[p, 1], c[p, 2], nx_, ny_, nz_))
    return sl


class Lanes(NamedTuple):
    """Per-lane scratch of :func:`_push_group` (LANES long; allocated once per chunk by the
    caller, since the pushing loops allocate nothing, see :data:`~cosmicflow._numba.JIT_UNCOUNTED`).

    base : look-up offset; tcell : midpoint cell offset; wts : (LANES, 3) look-up weights;
    hs : step path [pc]; s : path reached [pc]; last : the step lands on s_end; done.
    """

    base: np.ndarray
    tcell: np.ndarray
    wts: np.ndarray
    hs: np.ndarray
    s: np.ndarray
    last: np.ndarray
    done: np.ndarray


@njit(**JIT_INLINE)
def _lanes():
    return Lanes(np.empty(LANES, dtype=np.int64), np.empty(LANES, dtype=np.int64),
                 np.empty((LANES, 3)), np.empty(LANES), np.empty(LANES),
                 np.zeros(LANES, dtype=np.bool_), np.zeros(LANES, dtype=np.bool_))


@njit(**JIT_UNCOUNTED)
def _push_group(lo, hi, chunk, s_start, s_end, field, par, parts, rec, lanes):
    """Advance particles lo..hi-1 (at most LANES) from path s_start to exactly s_end [pc].

    Pass 1 per round: each lane's step length and field-evaluation point x_{n+½}, and a
    prefetch of its 8 corner cells; pass 2: :func:`_finish_step` per lane.
    """
    sp = par.step
    k = hi - lo
    base, tcell, wts, hs, s, last, done = lanes
    for lane in range(k):
        s[lane] = s_start
        last[lane] = False
        done[lane] = False
    active = k if s_start < s_end else 0
    c, d = parts.cell, parts.dirn
    while active > 0:
        for lane in range(k):
            if done[lane]:
                continue
            p = lo + lane
            h, last[lane] = step_length(parts.bprev[p], s[lane], s_end, sp)
            hs[lane] = h
            mx, my, mz = half_drift(c[p, 0], c[p, 1], c[p, 2], d[p, 0], d[p, 1], d[p, 2],
                                    0.5 * h, sp)
            o, wts[lane, 0], wts[lane, 1], wts[lane, 2] = lookup(field.gdim, mx, my, mz)
            base[lane] = o
            tcell[lane] = cell_offset(field.gdim, mx, my, mz)
            prefetch_corners(field, o)
        for lane in range(k):
            if done[lane]:
                continue
            s[lane] = _finish_step(lo + lane, chunk, hs[lane], last[lane], s[lane], s_end,
                                   base[lane], wts[lane, 0], wts[lane, 1], wts[lane, 2],
                                   tcell[lane], field, par, parts, rec)
            if last[lane]:
                done[lane] = True
                active -= 1


@njit(**JIT_UNCOUNTED)
def _push_one(lo, hi, chunk, s_start, s_end, field, par, parts, rec):
    """Advance particles lo..hi-1 one at a time from s_start to s_end [pc]: the same step as
    :func:`_push_group`, without lanes or prefetching (the benchmark's reference kernel)."""
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
        # a signed chunk keeps _push_group to one compiled signature (one compile, not two)
        ch = np.int64(chunk)
        par = Params(step, scatter, record)
        lo, hi = ch * n // nchunks, (ch + 1) * n // nchunks
        lanes = _lanes()
        for g in range(lo, hi, LANES):
            _push_group(g, min(g + LANES, hi), ch, s_start, s_end, field, par, parts, rec, lanes)
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


_stamp_with_dependencies(_push_group, _push_one, _advance, _advance_reference)
