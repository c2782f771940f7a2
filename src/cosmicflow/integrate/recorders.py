r"""Recorders: what is observed along the trajectories, separate from how particles move.

After every step the pusher hands one :class:`StepEvent` (the step's path, displacement, the
field at its evaluation point x_{n+½}, the midpoint cell's phase and look-up, the new position
and direction) to :func:`record_step`, which calls each recorder's kernel: those of every step
(:func:`record_every_step`) and, when :func:`sample_due` says one of them wants the step, the
sampling ones (:func:`record_sampled`). The lane kernel calls the two halves itself and builds
the full event only for a sampled step (loads of fields no recorder reads are then dropped by
the compiler). A recorder is

* its state arrays, fields of :class:`Records` (checkpointed with the particles; a switched-off
  recorder gets empty arrays and records nothing),
* a kernel called from :func:`record_every_step` or :func:`record_sampled` (a sampling recorder
  also adds its condition to :func:`sample_due`),
* a Python part (a :class:`Recorder`): allocating the state, copying running sums at output
  times, and the variables it adds to the particle batch file (``docs/data-contracts.md``).

Adding a statistic is one recorder in this file (and its lines in the output contract).

Recorders
---------
phase accounting
    Each step's displacement increment and path go to the phase of the cell holding the step's
    midpoint x_{n+½}, so Σ_α Δr_α = Δr and Σ_α t_α = t (to round-off).
statistics samples (paper Fig. 5)
    Every ``stats_cadence_gyroperiods``, at the field-evaluation point of the first step ending
    after each cadence time (μ from the step's chord, B and the corners from its look-up):
    |Δμ|/(Δt Ω_ref), |Δ|B||/(Δt Ω_ref) [µG], |ΔT|/(Δt Ω_ref) [K] between consecutive samples,
    binned in fixed log-spaced 2-D histograms (:data:`HIST_EDGES`; values outside the edges
    go to the first/last bin, exact zeros to the first), and ε_ref = |∇|B|| r_L,ref / |B| per
    phase, with ∇|B| the analytic gradient of the trilinear interpolant of |B|. The first rates
    compare with the values at injection.
trajectories
    Position, t Ω_ref, μ, |B|, T at whole steps, ``trajectory_samples_per_gyroperiod``.
adiabaticity classes (issue 13, switch ``integrate.class_accounting``)
    Every step is classified by the local ε = |∇|B|| r_L,loc / |B| = |∇|B|| R_1 / |B|² at its
    field-evaluation point (∇|B| of the trilinear interpolant, r_L,loc = R_1/|B|) into classes
    bounded by ``class_eps_edges`` (default ε < 0.1, 0.1 ≤ ε < 1, ε ≥ 1); displacement and
    time accumulate per class exactly as per phase (Σ_c Δr_c = Δr), with the joint phase ×
    class time. At steps whose |dμ/d(t Ω_ref)| — μ from the chord against B at x_{n+½},
    differenced with the previous step's — exceeds ``scatter_dmu_threshold``, the local ε is
    histogrammed per phase (``hist_epsilon_scatter``, edges :data:`HIST_EDGES` ``eps``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from cosmicflow._numba import JIT_INLINE, f64_bits
from cosmicflow.integrate.field import corner_bmag, grad_bmag, value_at
from cosmicflow.integrate.step import C_PC_S
from cosmicflow.phase_rule import N_PHASES

#: log10 range and bins per decade of the on-the-fly histograms: (lo, hi, per decade)
HIST_SPEC = {
    "dmu": (-6.0, 2.0, 10),  # |dmu/d(t Omega)|
    "dB": (-6.0, 3.0, 10),  # |d|B|/d(t Omega)| [uG]
    "dT": (-3.0, 7.0, 10),  # |dT/d(t Omega)| [K]
    "eps": (-5.0, 4.0, 10),  # |grad B| r_L / B
}
#: the fixed log-spaced bin edges of those histograms
HIST_EDGES = {
    k: np.logspace(lo, hi, int(round((hi - lo) * per)) + 1) for k, (lo, hi, per) in HIST_SPEC.items()
}


class LogBins(NamedTuple):
    """Log-spaced bins: log10 of the first edge, bins per decade, number of bins; and where
    their look-up table (:func:`log_bin`) sits in :data:`_BIN_BELOW` / :data:`_BIN_EDGE`:
    first key, number of keys, offset."""

    lo: float
    per_decade: float
    nbins: int
    key0: int
    nkeys: int
    base: int


class HistSpecs(NamedTuple):
    """The bins of each histogram (:data:`HIST_SPEC`)."""

    dmu: LogBins
    dB: LogBins
    dT: LogBins
    eps: LogBins


#: a float64 v > 0 falls in table cell ``bits(v) >> BIN_KEY_SHIFT``: 8 cells per octave (the
#: exponent and the top 3 mantissa bits), each < 0.04 decades wide, so < 1 bin at 10 per decade
BIN_KEY_SHIFT = 49


def _floor_bin(v: float, lo: float, per: float) -> float:
    """The bin definition: floor((log10 v − lo) · per_decade), by the C library's log10 (the
    one compiled kernels call)."""
    return math.floor((math.log10(v) - lo) * per)


def _bits(v: float) -> int:
    return int(np.float64(v).view(np.int64))


def _from_bits(b: int) -> float:
    return float(np.int64(b).view(np.float64))


def _first_in_bin(b: int, lo: float, per: float) -> float:
    """The smallest float64 whose :func:`_floor_bin` is ≥ b (bisection over the ordered bits
    of positive doubles)."""
    a, z = _bits(10.0 ** (lo + (b - 1) / per)), _bits(10.0 ** (lo + (b + 1) / per))
    assert _floor_bin(_from_bits(a), lo, per) < b <= _floor_bin(_from_bits(z), lo, per)
    while z - a > 1:
        m = (a + z) // 2
        if _floor_bin(_from_bits(m), lo, per) >= b:
            z = m
        else:
            a = m
    return _from_bits(z)


def _bin_table(lo: float, per: float, nbins: int):
    """One histogram's look-up table: for each cell from the one holding the first inner edge
    to the one holding the last, the bin of the cell's smallest value and the first value of
    the next bin if it lies in the cell (else inf)."""
    first = np.array([_first_in_bin(b, lo, per) for b in range(1, nbins)])
    keys = np.array([_bits(x) >> BIN_KEY_SHIFT for x in first])
    key0 = int(keys[0])
    nkeys = int(keys[-1]) - key0 + 1
    starts = np.array([_from_bits((key0 + i) << BIN_KEY_SHIFT) for i in range(nkeys)])
    below = np.searchsorted(first, starts, side="right").astype(np.int32)  # edges <= start
    edge = np.full(nkeys, np.inf)
    inside = keys - key0
    if np.unique(inside).size != inside.size:
        raise ValueError(f"log bins {lo, per}: two edges in one table cell")
    edge[inside] = first
    below[inside] = np.searchsorted(first, first, side="left")  # the edge itself is the next bin
    return key0, nkeys, below, edge


def _hist_tables():
    specs, below, edge, base = [], [], [], 0
    for lo, hi, per in HIST_SPEC.values():
        nbins = int(round((hi - lo) * per))
        key0, nkeys, b, e = _bin_table(lo, float(per), nbins)
        specs.append(LogBins(lo, float(per), nbins, key0, nkeys, base))
        below.append(b)
        edge.append(e)
        base += nkeys
    return HistSpecs(*specs), np.concatenate(below), np.concatenate(edge)


#: the bins as a kernel constant (frozen into the compiled code: the edges are fixed by design),
#: and their look-up tables (global arrays, likewise frozen)
HISTS, _BIN_BELOW, _BIN_EDGE = _hist_tables()


class RecordParams(NamedTuple):
    """Recorder constants (kernel parameters, by name).

    stats_cadence, traj_interval : sampling intervals [pc of path]; rl_ref : r_L(B_ref) [pc].
    (Flat: a parallel kernel cannot take nested tuples; the bins are :data:`HISTS`.)
    """

    stats_cadence: float
    traj_interval: float
    rl_ref: float
    class_on: bool  # adiabaticity classes recorded
    class_edges: np.ndarray  # their inner edges in eps (float64)
    dmu_threshold: float  # |dmu/d(t Omega_ref)| of a scattering event


def record_params(settings, rl_ref: float) -> RecordParams:
    """The recorders' constants for a run with r_L(B_ref) = rl_ref [pc]."""
    gyro = 2.0 * math.pi * rl_ref  # path of one reference gyro-period [pc]
    return RecordParams(
        stats_cadence=settings.stats_cadence_gyroperiods * gyro,
        traj_interval=gyro / settings.trajectory_samples_per_gyroperiod,
        rl_ref=rl_ref,
        class_on=bool(settings.class_accounting),
        class_edges=np.asarray(settings.class_eps_edges, dtype=np.float64),
        dmu_threshold=float(settings.scatter_dmu_threshold),
    )


class StepEvent(NamedTuple):
    """What one step hands to the recorders.

    p, chunk : particle and its histogram chunk; h : path of the step [pc]; s_mid, s_end :
    path at x_{n+½} and at the step's end [pc]; dx, dy, dz : displacement [pc] (the chord,
    ∥ the velocity at x_{n+½}); bx, by, bz, bmag : B at x_{n+½} [µG]; t : T there [K] (blended
    with B, :func:`~.field.blend4`); gradb : |∇|B|| there [µG pc^-1] (:func:`~.field.grad_bmag`)
    if the pusher computed it (class accounting on), else −1 (:func:`_grad_b`); phase : the midpoint
    cell's phase; o, wx, wy, wz : the look-up at x_{n+½} (:func:`~.field.lookup`); x, y, z :
    new unwrapped position [pc]; cx, cy, cz : its wrapped cell coordinates; nx, ny, nz : new
    direction (after scattering).
    """

    p: int
    chunk: int
    h: float
    s_mid: float
    s_end: float
    dx: float
    dy: float
    dz: float
    bx: float
    by: float
    bz: float
    bmag: float
    t: float
    gradb: float
    phase: int
    o: int
    wx: float
    wy: float
    wz: float
    x: float
    y: float
    z: float
    cx: float
    cy: float
    cz: float
    nx: float
    ny: float
    nz: float


class Records(NamedTuple):
    """Every recorder's state arrays (kernel argument; checkpointed by name)."""

    # phase accounting
    phase_disp: np.ndarray  # (n, phase, 3) [pc]
    phase_path: np.ndarray  # (n, phase) [pc]
    # statistics samples
    stat_prev: np.ndarray  # (n, 4): mu, |B| [uG], T [K], path [pc] at the previous sample
    stat_next: np.ndarray  # (n,) path of the next sample [pc]
    hist_mu_b: np.ndarray  # (chunk, dmu_bin, dB_bin)
    hist_mu_t: np.ndarray  # (chunk, dmu_bin, dT_bin)
    hist_eps: np.ndarray  # (chunk, phase, eps_bin)
    # trajectories
    traj_pos: np.ndarray  # (traj, sample, 3) [pc]
    traj_aux: np.ndarray  # (traj, sample, 4): t Omega_ref, mu, |B| [uG], T [K]
    traj_count: np.ndarray  # (traj,)
    traj_next: np.ndarray  # (traj,) path of the next sample [pc]
    # adiabaticity classes (empty arrays when switched off)
    class_disp: np.ndarray  # (n, class, 3) [pc]
    class_path: np.ndarray  # (n, class) [pc]
    phase_class_path: np.ndarray  # (n, phase, class) [pc]
    class_prev: np.ndarray  # (n, 2): mu and path [pc] at the previous step's midpoint
    hist_eps_scatter: np.ndarray  # (chunk, phase, eps_bin)


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------


@njit(**JIT_INLINE)
def log_bin(v, bins):
    """Bin of v in :class:`LogBins` (≤ 0, NaN and below-range values: bin 0; above, and inf:
    the last): floor((log10 v − lo) · per_decade), clamped.

    The histograms take a bin at most steps (ε at scattering events, ~90 % of steps at high
    energy), so no logarithm is taken: the top bits of v pick a cell of a table
    (:data:`BIN_KEY_SHIFT`) narrower than a bin, which holds the bin of its smallest value and
    the first value of the next bin if that lies inside it, found once by bisection with the
    C library's log10 (:func:`_first_in_bin`); so the bin is the one floor(log10) gives, for
    every double (test at and beside every edge).
    """
    if not v > 0.0:
        return 0
    i = (f64_bits(v) >> BIN_KEY_SHIFT) - bins.key0
    if i < 0:
        return 0
    if i >= bins.nkeys:
        return bins.nbins - 1
    j = bins.base + i
    return np.int64(_BIN_BELOW[j]) + np.int64(v >= _BIN_EDGE[j])


@njit(**JIT_INLINE)
def _phase_step(rec, ev):
    rec.phase_disp[ev.p, ev.phase, 0] += ev.dx
    rec.phase_disp[ev.p, ev.phase, 1] += ev.dy
    rec.phase_disp[ev.p, ev.phase, 2] += ev.dz
    rec.phase_path[ev.p, ev.phase] += ev.h


@njit(**JIT_INLINE)
def _grad_b(field, sp, ev):
    """|∇|B|| [µG pc^-1] at the step's evaluation point: the pusher's if it has it, else from
    the 8 corner |B| (the same functions either way)."""
    if ev.gradb >= 0.0:
        return ev.gradb
    return grad_bmag(corner_bmag(field, ev.o), ev.wx, ev.wy, ev.wz, sp.inv_dx, sp.inv_dy, sp.inv_dz)


@njit(**JIT_INLINE)
def _mu_chord(ev):
    """μ of the step's chord (the velocity at x_{n+½}) against B there."""
    tn = math.sqrt(ev.dx * ev.dx + ev.dy * ev.dy + ev.dz * ev.dz)
    return (ev.dx * ev.bx + ev.dy * ev.by + ev.dz * ev.bz) / (ev.bmag * tn)


@njit(**JIT_INLINE)
def _stats_step(rec, rp, sp, field, ev):
    p = ev.p
    if ev.s_end < rec.stat_next[p]:
        return
    # the corners are in L1 now: |B| at them for the gradient
    mu = _mu_chord(ev)
    tt = ev.t
    dto = (ev.s_mid - rec.stat_prev[p, 3]) / rp.rl_ref  # elapsed t Omega_ref
    imu = log_bin(abs(mu - rec.stat_prev[p, 0]) / dto, HISTS.dmu)
    ib = log_bin(abs(ev.bmag - rec.stat_prev[p, 1]) / dto, HISTS.dB)
    it = log_bin(abs(tt - rec.stat_prev[p, 2]) / dto, HISTS.dT)
    rec.hist_mu_b[ev.chunk, imu, ib] += 1
    rec.hist_mu_t[ev.chunk, imu, it] += 1
    g = _grad_b(field, sp, ev)
    rec.hist_eps[ev.chunk, ev.phase, log_bin(g * rp.rl_ref / ev.bmag, HISTS.eps)] += 1
    rec.stat_prev[p, 0] = mu
    rec.stat_prev[p, 1] = ev.bmag
    rec.stat_prev[p, 2] = tt
    rec.stat_prev[p, 3] = ev.s_mid
    while rec.stat_next[p] <= ev.s_end:
        rec.stat_next[p] += rp.stats_cadence


@njit(**JIT_INLINE)
def _trajectory_step(rec, rp, field, ev):
    p = ev.p
    if p >= rec.traj_pos.shape[0] or ev.s_end < rec.traj_next[p]:
        return
    k = rec.traj_count[p]
    if k < rec.traj_pos.shape[1]:
        gx = value_at(field, ev.cx, ev.cy, ev.cz, 0)
        gy = value_at(field, ev.cx, ev.cy, ev.cz, 1)
        gz = value_at(field, ev.cx, ev.cy, ev.cz, 2)
        gm = math.sqrt(gx * gx + gy * gy + gz * gz)
        rec.traj_pos[p, k, 0] = ev.x
        rec.traj_pos[p, k, 1] = ev.y
        rec.traj_pos[p, k, 2] = ev.z
        rec.traj_aux[p, k, 0] = ev.s_end / rp.rl_ref
        rec.traj_aux[p, k, 1] = (ev.nx * gx + ev.ny * gy + ev.nz * gz) / gm
        rec.traj_aux[p, k, 2] = gm
        rec.traj_aux[p, k, 3] = value_at(field, ev.cx, ev.cy, ev.cz, 3)
        rec.traj_count[p] = k + 1
    while rec.traj_next[p] <= ev.s_end:
        rec.traj_next[p] += rp.traj_interval


@njit(**JIT_INLINE)
def _class_step(rec, rp, sp, field, ev):
    p = ev.p
    g = _grad_b(field, sp, ev)
    eps = g * sp.r1 / (ev.bmag * ev.bmag)  # |grad B| r_L,loc / |B|, r_L,loc = R_1 / |B|
    c = 0
    for e in rp.class_edges:
        c += int(eps >= e)
    rec.class_disp[p, c, 0] += ev.dx
    rec.class_disp[p, c, 1] += ev.dy
    rec.class_disp[p, c, 2] += ev.dz
    rec.class_path[p, c] += ev.h
    rec.phase_class_path[p, ev.phase, c] += ev.h
    mu = _mu_chord(ev)
    rate = abs(mu - rec.class_prev[p, 0]) * rp.rl_ref / (ev.s_mid - rec.class_prev[p, 1])
    if rate > rp.dmu_threshold:
        rec.hist_eps_scatter[ev.chunk, ev.phase, log_bin(eps, HISTS.eps)] += 1
    rec.class_prev[p, 0] = mu
    rec.class_prev[p, 1] = ev.s_mid


@njit(**JIT_INLINE)
def record_every_step(rec, rp, sp, field, ev):
    """The recorders that see every step (phase and class accounting)."""
    _phase_step(rec, ev)
    if rp.class_on:
        _class_step(rec, rp, sp, field, ev)


@njit(**JIT_INLINE)
def sample_due(rec, p, s_end):
    """Whether a sampling recorder (statistics, trajectories) takes particle p's step that
    ends at path s_end [pc]: the pusher builds the full event only then."""
    return s_end >= rec.stat_next[p] or (p < rec.traj_next.shape[0] and s_end >= rec.traj_next[p])


@njit(**JIT_INLINE)
def record_sampled(rec, rp, sp, field, ev):
    """The sampling recorders (each checks its own cadence)."""
    _stats_step(rec, rp, sp, field, ev)
    _trajectory_step(rec, rp, field, ev)


@njit(**JIT_INLINE)
def record_step(rec, rp, sp, field, ev):
    """Hand one step (:class:`StepEvent`) to every recorder."""
    record_every_step(rec, rp, sp, field, ev)
    if sample_due(rec, ev.p, ev.s_end):
        record_sampled(rec, rp, sp, field, ev)


# --------------------------------------------------------------------------------------------
# Python side: allocation, output-time records, batch-file variables
# --------------------------------------------------------------------------------------------


class RunContext(NamedTuple):
    """What recorders need to size and describe themselves (built by the run)."""

    n: int  # particles
    nt: int  # output times
    nchunks: int  # histogram chunks
    n_traj: int  # trajectories
    n_samp: int  # samples per trajectory
    settings: Any  # IntegrateSettings
    params: RecordParams
    mu0: np.ndarray  # injection mu
    bmag0: np.ndarray  # |B| at injection [uG]
    t0: np.ndarray  # T at injection [K]
    pos0: np.ndarray  # injection positions [pc]


class Recorder:
    """A recorder's Python part (see the module docstring)."""

    def state(self, ctx: RunContext) -> dict[str, np.ndarray]:
        """Kernel state (fields of :class:`Records`) and per-output records (``rec_*``)."""
        raise NotImplementedError

    def at_output(self, st: dict, k: int) -> None:
        """Copy running sums into the records of output time k."""

    def results(self, st: dict) -> dict[str, Any]:
        """Result arrays of :func:`~cosmicflow.integrate.run.integrate_particles`."""
        return {}

    def variables(self, res: dict, settings) -> tuple[dict, dict, dict]:
        """(data variables, coordinates, global attributes) for the batch file."""
        return {}, {}, {}


class PhaseAccounting(Recorder):
    def state(self, ctx):
        n, nt = ctx.n, ctx.nt
        return {"phase_disp": np.zeros((n, N_PHASES, 3)), "phase_path": np.zeros((n, N_PHASES)),
                "rec_pdisp": np.zeros((n, nt, N_PHASES, 3)), "rec_ppath": np.zeros((n, nt, N_PHASES))}

    def at_output(self, st, k):
        st["rec_pdisp"][:, k] = st["phase_disp"]
        st["rec_ppath"][:, k] = st["phase_path"]

    def results(self, st):
        return {"phase_displacement": st["rec_pdisp"], "phase_time": st["rec_ppath"] / C_PC_S}

    def variables(self, res, settings):
        return {
            "phase_displacement": (("particle", "time", "phase", "component"),
                                   res["phase_displacement"],
                                   {"units": "pc", "long_name": "displacement accumulated in "
                                    "each phase (sum over phases = displacement)"}),
            "phase_time": (("particle", "time", "phase"), res["phase_time"],
                           {"units": "s", "long_name": "time spent in each phase"}),
        }, {}, {}


class StatisticsSamples(Recorder):
    def state(self, ctx):
        nb = [b.nbins for b in HISTS]
        return {
            "stat_prev": np.stack([ctx.mu0, ctx.bmag0, ctx.t0, np.zeros(ctx.n)], 1),
            "stat_next": np.full(ctx.n, ctx.params.stats_cadence),
            "hist_mu_b": np.zeros((ctx.nchunks, nb[0], nb[1]), np.int64),
            "hist_mu_t": np.zeros((ctx.nchunks, nb[0], nb[2]), np.int64),
            "hist_eps": np.zeros((ctx.nchunks, N_PHASES, nb[3]), np.int64),
        }

    def results(self, st):
        return {"hist_dmu_dB": st["hist_mu_b"].sum(0), "hist_dmu_dT": st["hist_mu_t"].sum(0),
                "hist_epsilon": st["hist_eps"].sum(0)}

    def variables(self, res, settings):
        return {
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
        }, {}, {}


class Trajectories(Recorder):
    def state(self, ctx):
        nj, ns = ctx.n_traj, ctx.n_samp
        st = {"traj_pos": np.full((nj, ns, 3), np.nan), "traj_aux": np.full((nj, ns, 4), np.nan),
              "traj_count": np.ones(nj, np.int64),
              "traj_next": np.full(nj, ctx.params.traj_interval)}
        st["traj_pos"][:, 0] = ctx.pos0[:nj]
        st["traj_aux"][:, 0] = np.stack([np.zeros(nj), ctx.mu0[:nj], ctx.bmag0[:nj],
                                         ctx.t0[:nj]], 1)
        return st

    def results(self, st):
        aux = st["traj_aux"]
        return {"traj_position": st["traj_pos"], "traj_t_omega": aux[:, :, 0],
                "traj_mu": aux[:, :, 1], "traj_B": aux[:, :, 2], "traj_T": aux[:, :, 3]}

    def variables(self, res, settings):
        return {
            "traj_position": (("traj", "sample", "component"), res["traj_position"],
                              {"units": "pc", "long_name": "trajectory positions, unwrapped"}),
            "traj_t_omega": (("traj", "sample"), res["traj_t_omega"], {"units": "1"}),
            "traj_mu": (("traj", "sample"), res["traj_mu"], {"units": "1"}),
            "traj_B": (("traj", "sample"), res["traj_B"], {"units": "uG"}),
            "traj_T": (("traj", "sample"), res["traj_T"], {"units": "K"}),
        }, {}, {}


def class_labels(edges) -> list[str]:
    """Labels of the ε classes bounded by the inner ``edges``: "eps<0.1", "0.1<=eps<1", ..."""
    e = [f"{float(x):g}" for x in edges]
    return [f"eps<{e[0]}"] + [f"{a}<=eps<{b}" for a, b in zip(e, e[1:])] + [f"eps>={e[-1]}"]


class ClassAccounting(Recorder):
    """Adiabaticity classes (issue 13): per-class displacement and time, phase x class time,
    ε at scattering events; nothing (no state, no variables) when switched off."""

    def state(self, ctx):
        on = bool(ctx.settings.class_accounting)
        nc = len(ctx.settings.class_eps_edges) + 1
        n = ctx.n if on else 0
        st = {"class_disp": np.zeros((n, nc, 3)), "class_path": np.zeros((n, nc)),
              "phase_class_path": np.zeros((n, N_PHASES, nc)),
              "class_prev": (np.stack([ctx.mu0, np.zeros(n)], 1) if on else np.zeros((0, 2))),
              "hist_eps_scatter": np.zeros((ctx.nchunks if on else 0, N_PHASES, HISTS.eps.nbins),
                                           np.int64)}
        if on:
            st.update({"rec_cdisp": np.zeros((n, ctx.nt, nc, 3)),
                       "rec_cpath": np.zeros((n, ctx.nt, nc)),
                       "rec_pcpath": np.zeros((n, ctx.nt, N_PHASES, nc))})
        return st

    def at_output(self, st, k):
        if "rec_cdisp" in st:
            st["rec_cdisp"][:, k] = st["class_disp"]
            st["rec_cpath"][:, k] = st["class_path"]
            st["rec_pcpath"][:, k] = st["phase_class_path"]

    def results(self, st):
        if "rec_cdisp" not in st:
            return {}
        return {"class_displacement": st["rec_cdisp"], "class_time": st["rec_cpath"] / C_PC_S,
                "phase_class_time": st["rec_pcpath"] / C_PC_S,
                "hist_epsilon_scatter": st["hist_eps_scatter"].sum(0)}

    def variables(self, res, settings):
        if "class_displacement" not in res:
            return {}, {}, {}
        return {
            "class_displacement": (
                ("particle", "time", "eps_class", "component"), res["class_displacement"],
                {"units": "pc", "long_name": "displacement accumulated in each adiabaticity "
                 "class of eps = |grad B| r_L,loc / B (sum over classes = displacement)"}),
            "class_time": (("particle", "time", "eps_class"), res["class_time"],
                           {"units": "s", "long_name": "time spent in each adiabaticity class"}),
            "phase_class_time": (("particle", "time", "phase", "eps_class"),
                                 res["phase_class_time"],
                                 {"units": "s", "long_name": "time spent in each phase and class"}),
            "hist_epsilon_scatter": (
                ("phase", "eps_bin"), res["hist_epsilon_scatter"],
                {"units": "count", "long_name": "local eps = |grad B| r_L,loc / B at steps with "
                 "|dmu/d(t Omega_ref)| > scatter_dmu_threshold, per phase"}),
        }, {"eps_class": class_labels(settings.class_eps_edges)}, {
            "eps_class_edges": np.asarray(settings.class_eps_edges, dtype=np.float64),
            "scatter_dmu_threshold": float(settings.scatter_dmu_threshold)}


#: the recorders of a run, in the order their variables appear
RECORDERS: tuple[Recorder, ...] = (PhaseAccounting(), StatisticsSamples(), Trajectories(),
                                   ClassAccounting())
