"""Benchmark of the particle pusher: ns per particle-step per core and the 2-core speed-up.

    PYTHONPATH=src python benchmarks/bench_integrate.py [--grids 128 512] [--particles 2000]

For each grid (a divergence-free random field, δB = B0 = 3 µG, tiled from a 128^3 realisation
for larger grids so generation stays cheap — the pusher's memory access is the same) the
particle energy is chosen so r_L(B0) = 10 cells. The same particles are pushed with 1 and
with 2 Numba threads, one run right after the other, so the ratio is fair on a shared machine.
Times are of the pusher (``_advance``) only; the serial setup of ``integrate_particles``
(mean field, phase volume fractions, injection look-ups) is printed separately, as the
whole call. ``--mmap`` reads the padded field from a file, memory-mapped as integrate jobs
read ``results/{medium}/field_cache.h5``.
Target: <= 30 ns per particle-step per core on 128^3, >= 1.8x on 2 cores.

Measured (2-core VM shared with other jobs, pusher only, ranges over repeats and sessions):

    grid   before (4 arrays + int8 phase)   now (padded interleaved field + prefetch)
    32^3   59-65 ns                         50-52 ns
    128^3  126-149 ns                       53-61 ns (memory-mapped file: 53-56)
    512^3  179-216 ns                       91-116 ns (memory-mapped file: 103-116)
    2-core speed-up 1.8-2.3x before, 1.96-2.2x now (>= 1.8x when the machine is idle).

The old "~900 ns at 512^3" was the whole call: building a 128 MB int8 phase grid and the
field means took ~4 s of a 5 s run; the pusher itself was ~200 ns.

Profile. The VM exposes no hardware counters (``perf stat -e instructions`` says "not
supported"), so by ablation and software counters: the statistics samples (every 0.1
gyro-period, ~12.6 steps: 4 log10, 10 sqrt, ∇|B|) cost ~10 ns per step; the three
trilinear blends ~10 ns (replacing them by one load); the phase bookkeeping ~8 ns before it
was made branchless (~6 now); the rest (~25 ns) is the Boris rotation with its two
divisions and a sqrt, the wraps and the step / output-time logic. Memory adds 3-10 ns on
128^3 and 40-60 ns on 512^3 (DRAM latency left after 8 particles x 8 prefetched lines;
16 lanes were no better). Page faults: none in memory; a memory-mapped field cache is
mapped in 2 MB folios (ext4 large folios, FilePmdMapped = whole file), ~260 minor faults
for 2 GB, so neither MADV_POPULATE_READ nor huge-page advice changed anything (MADV_COLLAPSE
is refused and unnecessary). No effect either: fastmath contract (FMA), unsigned indices
(no negative-index wraparound), 4 or 16 lanes instead of 8, log instead of log10, binning
by a frexp estimate plus edge compares instead of log10 (dropping the log10 altogether would
save ~5 ns; the replacements cost as much as it). What
would reach 30 ns is fewer instructions per step, e.g. pushing the lanes in SIMD (the
lanes' arithmetic is independent): a larger rewrite of the kernel.
"""

from __future__ import annotations

import argparse
import mmap
import os
import resource
import time

import numba
import numpy as np

from cosmicflow.constants import LARMOR_PC_PER_PEV_UG
import cosmicflow.integrate as ci
from cosmicflow.integrate import IntegrateSettings, inject, integrate_particles, padded_field


def random_field(n: int, seed: int = 0, b0: float = 3.0, db: float = 3.0) -> dict:
    base = min(n, 128)
    rng = np.random.default_rng(seed)
    k1 = np.fft.fftfreq(base, 1.0 / base)
    kx, ky, kz = np.meshgrid(k1, k1, k1, indexing="ij")
    kk = np.sqrt(kx**2 + ky**2 + kz**2)
    amp = np.where((kk >= 2) & (kk <= base // 3), np.maximum(kk, 1) ** (-17 / 6), 0.0)
    a = [amp * (rng.normal(size=kk.shape) + 1j * rng.normal(size=kk.shape)) for _ in range(3)]
    kd = (kx * a[0] + ky * a[1] + kz * a[2]) / np.where(kk > 0, kk, 1.0) ** 2
    b = np.stack([np.fft.ifftn(c - kc * kd).real for c, kc in zip(a, (kx, ky, kz))])
    b *= db / np.sqrt(np.mean(np.sum(b**2, axis=0)))
    reps = (n // base,) * 3
    f = {c: np.tile(b[i].astype(np.float32), reps) for i, c in enumerate(("bx", "by", "bz"))}
    f["bz"] += np.float32(b0)
    t = 10 ** (2.0 + 2.0 * np.sin(np.linspace(0, 6 * np.pi, base)))  # a few phase layers
    f["temperature"] = np.tile(np.broadcast_to(t[:, None, None], (base,) * 3).astype(np.float32), reps)
    return f


def run(f, n_particles, energy, duration, threads, seed=1, grid=None):
    numba.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    pos, d, _ = inject(f, 0.0, 100.0, n_particles, rng)
    st = IntegrateSettings(duration_gyroperiods=duration, output_times=4,
                           first_output_gyroperiods=duration / 8, trajectories=0)
    kernel = [0.0, 0.0, 0]  # wall, CPU [s] and minor page faults inside the pusher only

    def timed(*a):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0, c0 = time.perf_counter(), time.process_time()
        advance(*a)
        kernel[0] += time.perf_counter() - t0
        kernel[1] += time.process_time() - c0
        kernel[2] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

    advance, ci._advance = ci._advance, timed
    try:
        t0 = time.perf_counter()
        res = integrate_particles(f, 0.0, 100.0, pos, d, energy_pev=energy, settings=st, grid=grid)
        total = time.perf_counter() - t0
    finally:
        ci._advance = advance
    return kernel[0], kernel[1], int(res["n_steps"].sum()), kernel[2], total


def huge_pages_kb() -> str:
    """This process's memory in transparent huge pages (anonymous / file-backed PMD maps)."""
    try:
        with open("/proc/self/smaps_rollup") as fh:
            kv = dict(line.split(":", 1) for line in fh if ":" in line)
        return (f"AnonHugePages {kv['AnonHugePages'].strip()}, "
                f"FilePmdMapped {kv.get('FilePmdMapped', '0 kB').strip()}")
    except (OSError, KeyError):
        return "unknown"


def mapped_grid(grid: np.ndarray, folder: str, advice: str) -> np.ndarray:
    """The padded field written to a file and memory-mapped read-only, as integrate jobs read
    the field cache, with an optional madvise on the mapping."""
    path = os.path.join(folder, f"bench_field_{grid.shape[0] - 2}.npy")
    np.save(path, grid)
    m = np.load(path, mmap_mode="r")
    if advice != "none":
        flag = {"willneed": mmap.MADV_WILLNEED, "hugepage": mmap.MADV_HUGEPAGE,
                "populate": 22,  # MADV_POPULATE_READ (Linux 5.14): fault every page in now
                "collapse": 25}[advice]  # MADV_COLLAPSE (Linux 6.1): huge pages now if possible
        try:
            m._mmap.madvise(flag)
        except OSError as err:
            print(f"  madvise({advice}) refused: {err}")
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--grids", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--particles", type=int, default=2000)
    ap.add_argument("--gyroperiods", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs per thread count")
    ap.add_argument("--mmap", metavar="DIR", help="read the padded field from a file in DIR, "
                    "memory-mapped (as the workflow's field cache), instead of from memory")
    ap.add_argument("--madvise", default="none",
                    choices=["none", "willneed", "populate", "hugepage", "collapse"],
                    help="advice on that mapping before the runs")
    args = ap.parse_args()
    print(f"numba {numba.__version__}, threading layer threads available: {numba.config.NUMBA_NUM_THREADS}")
    for n in args.grids:
        t = time.perf_counter()
        f = random_field(n)
        cell = 100.0 / n
        energy = 10 * cell * 3.0 / LARMOR_PC_PER_PEV_UG  # r_L(3 uG) = 10 cells
        print(f"\n{n}^3 field ({time.perf_counter() - t:.1f} s to build), E = {energy:.3g} PeV, "
              f"r_L = 10 cells, {args.particles} particles x {args.gyroperiods:g} gyro-periods")
        grid = padded_field(f)  # once per snapshot, as the field_cache rule does
        if args.mmap:
            grid = mapped_grid(grid, args.mmap, args.madvise)
            print(f"  field memory-mapped from {args.mmap} (madvise {args.madvise})")
        run(f, 64, energy, 1.0, 2, grid=grid)  # compile / load cache
        print(f"  load average before: {os.getloadavg()[0]:.2f} (2 idle cores: 0)")
        best, runs = {}, {1: [], 2: []}
        for _ in range(args.repeat):
            for threads in (1, 2):
                wall, cpu, steps, faults, total = run(f, args.particles, energy,
                                                      args.gyroperiods, threads, grid=grid)
                runs[threads].append((wall, cpu, faults, total))
                best[threads] = min(best.get(threads, (np.inf,)), (wall, cpu, steps))
        for threads, (wall, cpu, steps) in best.items():
            walls = [r[0] * threads / steps * 1e9 for r in runs[threads]]
            print(f"  {threads} thread(s): wall {wall:7.3f} s, CPU {cpu:7.3f} s for {steps:.3e} "
                  f"particle-steps -> {wall * threads / steps * 1e9:6.1f} ns per particle-step "
                  f"per core (wall x threads; all runs {min(walls):.0f}-{max(walls):.0f}), "
                  f"{cpu / steps * 1e9:6.1f} ns (CPU time); minor page faults per run "
                  f"{[r[2] for r in runs[threads]]}; whole call incl. setup "
                  f"{min(r[3] for r in runs[threads]):.2f} s")
        print(f"  huge pages in use: {huge_pages_kb()}")
        print(f"  2-core speed-up (wall): {best[1][0] / best[2][0]:.2f}x; load average after: "
              f"{os.getloadavg()[0]:.2f} (on a shared machine the wall figures include waiting "
              "for other processes; the CPU-time figure does not)")
        del f, grid


if __name__ == "__main__":
    main()
