"""Memory and run-time estimates for each stage, used by Snakemake profiles and run-time checks.

The numbers are a cost model, not a promise: memory from what each stage holds (documented per
function), time from the integrator's measured cost per particle-step (``benchmarks/``). They
let a cluster profile ask for what a job needs instead of a hard-coded size, and let a stage
stop early with a clear message when the machine is too small.
"""

from __future__ import annotations

import math
import os

import numpy as np

from cosmicflow.constants import larmor_radius_pc

MB = 1024**2
#: bytes per cell of a canonical snapshot: 8 float32 fields
SNAPSHOT_BYTES_PER_CELL = 8 * 4
#: bytes per cell the integrator maps: the field cache, (bx, by, bz, T) float32 interleaved per
#: cell (the ghost layer adds 6/n of that); the phase is read from T, no separate map
INTEGRATE_BYTES_PER_CELL = 4 * 4
#: bytes per cell of each field-cache layout (cosmicflow.integrate.field.LAYOUTS): full =
#: 4 float32, compact = 4 uint16 (half-float B, half-float T with the phase in its low bits)
FIELD_LAYOUT_BYTES_PER_CELL = {"full": INTEGRATE_BYTES_PER_CELL, "compact": 4 * 2}
#: fixed overhead of a Python process with numpy, numba, xarray imported [MB]
PROCESS_OVERHEAD_MB = 400
#: measured integrator cost [ns per particle-step per core] by (field layout, class accounting)
#: and cells (benchmarks/bench_integrate.py, one thread, best of 3 runs in the fastest of three
#: invocations, 2-core machine, load ~1, 2026-12-03, the lane kernel with table-binned
#: statistics, the corner |B| from the blend's load and the look-up two steps ahead
#: prefetched; README "Scaling"). Class accounting
#: (the adiabaticity-class recorder, on by default) evaluates |grad |B|| at every step and
#: costs ~25-35 ns more.
NS_PER_PARTICLE_STEP_MEASURED = {
    ("full", False): {32**3: 33.0, 128**3: 36.0, 512**3: 48.0},
    ("full", True): {32**3: 62.0, 128**3: 68.0, 512**3: 80.0},
    ("compact", False): {32**3: 40.0, 128**3: 43.0, 512**3: 49.0},
    ("compact", True): {32**3: 65.0, 128**3: 73.0, 512**3: 79.0},
}


def ns_per_particle_step(n_cells: int, field_layout: str = "full",
                         class_accounting: bool = True) -> float:
    """Integrator cost [ns per particle-step per core] for a field of ``n_cells``.

    Interpolated in log(cells) between the points measured for that layout and class setting
    (:data:`NS_PER_PARTICLE_STEP_MEASURED`); beyond 512^3 it grows by the same factor per decade
    of cells as from 128^3 to 512^3 (DRAM latency not hidden by prefetching; at least flat), a
    conservative guess for 2048^3 until measured there.
    """
    key = (field_layout, bool(class_accounting))
    if key not in NS_PER_PARTICLE_STEP_MEASURED:
        raise ValueError(f"field_layout must be one of {sorted({k[0] for k in NS_PER_PARTICLE_STEP_MEASURED})}, "
                         f"got {field_layout!r}")
    measured = NS_PER_PARTICLE_STEP_MEASURED[key]
    cells = np.array(sorted(measured), dtype=float)
    ns = np.array([measured[int(c)] for c in cells])
    x = np.log(max(float(n_cells), 1.0))
    if x <= np.log(cells[-1]):
        return float(np.interp(x, np.log(cells), ns))
    # never less than flat: a measured dip within the noise must not extrapolate downwards
    slope = max(0.0, (np.log(ns[-1]) - np.log(ns[-2])) / (np.log(cells[-1]) - np.log(cells[-2])))
    return float(ns[-1] * np.exp(slope * (x - np.log(cells[-1]))))


def snapshot_bytes(shape: tuple[int, int, int]) -> int:
    """Size of a canonical snapshot's field data [bytes]."""
    return int(math.prod(shape)) * SNAPSHOT_BYTES_PER_CELL


def synthetic_memory_mb(grid: int) -> int:
    """Peak memory of generating a synthetic medium of ``grid``^3 cells [MB].

    The generators hold the 8 output fields (float32) plus a few complex FFT work arrays of
    half size (rfftn): measured 5.3 GB for the multiphase model at 512^3
    (benchmarks/synthetic_media.py), about 40 bytes per cell; 48 leaves a margin.
    """
    return int(PROCESS_OVERHEAD_MB + grid**3 * 48 / MB)


def ingest_memory_mb(output_bytes: int) -> int:
    """Peak memory of AthenaK ingest [MB]: the output held once plus bounded block buffers."""
    return int(PROCESS_OVERHEAD_MB + 1.5 * output_bytes / MB)


def integrate_memory_mb(n_cells: int, n_particles: int, n_outputs: int, n_phases: int = 3, *,
                        field_layout: str = "full", class_accounting: bool = True,
                        n_classes: int = 3) -> int:
    """Memory an integrate job needs [MB].

    The field cache is memory-mapped (shared through the page cache between jobs on one node,
    but resident while the job runs, so counted here) at :data:`FIELD_LAYOUT_BYTES_PER_CELL`
    of ``field_layout``; per particle and output time it records displacement (3), mu (1),
    per-phase displacement (3 x n_phases) and per-phase time (n_phases), and with
    ``class_accounting`` per-class displacement (3 x n_classes), per-class time (n_classes)
    and phase x class time (n_phases x n_classes), all float64.
    """
    if field_layout not in FIELD_LAYOUT_BYTES_PER_CELL:
        raise ValueError(f"field_layout must be one of {sorted(FIELD_LAYOUT_BYTES_PER_CELL)}, "
                         f"got {field_layout!r}")
    field = n_cells * FIELD_LAYOUT_BYTES_PER_CELL[field_layout]
    values = 3 + 1 + 3 * n_phases + n_phases
    if class_accounting:
        values += 3 * n_classes + n_classes + n_phases * n_classes
    per_particle = n_outputs * values * 8
    return int(PROCESS_OVERHEAD_MB + (field + n_particles * per_particle) / MB)


def steps_per_gyroperiod(
    larmor_radius_cells: float, max_rotation_rad: float = 0.1, max_step_cells: float = 0.5,
    field_contrast: float = 3.0,
) -> float:
    r"""Steps per reference gyro-period under cosmicflow's step rule.

    The step h satisfies :math:`\Omega_{loc} h \le \theta_{max}` and :math:`c h \le f\,\Delta x`;
    per reference gyro-period :math:`2\pi/\Omega_{ref}` that is

    .. math:: N = 2\pi \max\left(\frac{B_{max}/B_{ref}}{\theta_{max}},
                                 \frac{r_L}{f\,\Delta x}\right)

    with ``field_contrast`` = B_max / B_ref the assumed peak-to-reference field ratio.
    """
    return 2 * math.pi * max(field_contrast / max_rotation_rad,
                             larmor_radius_cells / max_step_cells)


def integrate_runtime_min(
    n_particles: int,
    duration_gyroperiods: float,
    energy_pev: float,
    b_ref_ug: float,
    cell_pc: float,
    threads: int = 1,
    max_rotation_rad: float = 0.1,
    max_step_cells: float = 0.5,
    charge: int = 1,
    n_cells: int = 128**3,
    field_layout: str = "full",
    class_accounting: bool = True,
) -> float:
    """Wall time of one integrate job [min]: particles x steps x cost per step / threads, the
    cost per step for the run's field layout and class accounting (:func:`ns_per_particle_step`)."""
    r_cells = larmor_radius_pc(energy_pev, b_ref_ug, charge) / cell_pc
    steps = duration_gyroperiods * steps_per_gyroperiod(r_cells, max_rotation_rad, max_step_cells)
    ns = ns_per_particle_step(n_cells, field_layout, class_accounting)
    return n_particles * steps * ns * 1e-9 / max(threads, 1) / 60.0


def available_memory_mb() -> int | None:
    """Memory this process may use [MB]: the cgroup limit if set, else MemAvailable; None if unknown."""
    limits = []
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = open(path).read().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:
            limits.append(int(raw) // MB)
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) // 1024)
                break
    except OSError:
        pass
    env = os.environ.get("SLURM_MEM_PER_NODE")
    if env and env.isdigit():
        limits.append(int(env))
    return min(limits) if limits else None


def require_memory(needed_mb: int, what: str) -> None:
    """Stop with a clear message when the machine has less memory than ``needed_mb``."""
    have = available_memory_mb()
    if have is not None and needed_mb > have:
        raise MemoryError(
            f"{what} needs about {needed_mb} MB but only {have} MB are available on this "
            "machine; use a node with more memory (profiles/slurm derives mem_mb from the same "
            "estimate), fewer particles per batch, or a downsampled snapshot"
        )
