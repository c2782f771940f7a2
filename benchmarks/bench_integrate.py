"""Benchmark of the particle pusher: ns per particle-step per core, against a reference kernel.

    PYTHONPATH=src python benchmarks/bench_integrate.py [--grids 32 128 512] [--particles 2000]
        [--threads 1 2] [--layouts full compact] [--classes on off] [--repeat 3]
        [--stats-cadence 0.1]

For each grid (a divergence-free random field, δB = B0 = 3 µG, tiled from a 128^3 realisation
for larger grids so generation stays cheap — the pusher's memory access is the same) the
particle energy is chosen so r_L(B0) = 10 cells. For every combination of field layout
(``full`` float32 16 B/cell, ``compact`` half floats 8 B/cell), class accounting (the
adiabaticity-class recorder on/off) and thread count, the same particles are pushed by the
production kernel (``push._advance``: 8 lanes in vectorised passes, 4-wide look-ups, the
look-up two steps ahead prefetched after each drift) and, right after, by the plain reference
kernel (``push._advance_reference``: one particle at a time, no grouping, no prefetch; same
physics, same results). The ratio of the two is measured in the same minute, so it holds on a
noisy shared machine where absolute times do not.

Times are of the kernel only (the serial setup of ``integrate_particles`` — mean field, phase
volume fractions, injection look-ups — is excluded). ns per particle-step per core =
wall × threads / particle-steps; the best of ``--repeat`` runs is reported, with the range.
``--stats-cadence`` sets the statistics recorder's sampling interval [gyro-periods] (default
the production default, 0.1: a sample every ~13 steps here); a large value shows the cost of
the step without it. ``--mmap DIR`` reads the field from a file in DIR, memory-mapped as integrate jobs read
``results/{medium}/field_cache.h5``.

Measurements are in the README ("Scaling"), with the machine's load at the time.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import numba
import numpy as np

import cosmicflow.integrate as ci
from cosmicflow.constants import LARMOR_PC_PER_PEV_UG
from cosmicflow.integrate import IntegrateSettings, build_field, inject, integrate_particles

KERNELS = {"grouped": "_advance", "reference": "_advance_reference"}


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


def run(f, grid, scales, layout, classes, kernel, n_particles, energy, duration, threads, seed=1,
        stats_cadence=IntegrateSettings.stats_cadence_gyroperiods):
    """Push n_particles once; returns (kernel wall [s], kernel CPU [s], particle-steps)."""
    numba.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    pos, d, _ = inject(f, 0.0, 100.0, n_particles, rng)
    st = IntegrateSettings(duration_gyroperiods=duration, output_times=4,
                           first_output_gyroperiods=duration / 8, trajectories=0,
                           field_layout=layout, class_accounting=classes,
                           stats_cadence_gyroperiods=stats_cadence)
    name = KERNELS[kernel]
    real = getattr(ci.push, name)
    spent = [0.0, 0.0]

    def timed(*a):
        t0, c0 = time.perf_counter(), time.process_time()
        real(*a)
        spent[0] += time.perf_counter() - t0
        spent[1] += time.process_time() - c0

    setattr(ci.push, name, timed)
    try:
        res = integrate_particles(f, 0.0, 100.0, pos, d, energy_pev=energy, settings=st,
                                  grid=grid, grid_scales=scales, kernel=kernel)
    finally:
        setattr(ci.push, name, real)
    return spent[0], spent[1], int(res["n_steps"].sum())


def mapped(grid: np.ndarray, folder: str, tag: str) -> np.ndarray:
    """The padded field written to a file and memory-mapped read-only (as the field cache)."""
    path = os.path.join(folder, f"bench_field_{tag}.npy")
    np.save(path, grid)
    return np.load(path, mmap_mode="r")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--grids", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--particles", type=int, default=2000)
    ap.add_argument("--gyroperiods", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs per configuration")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--layouts", nargs="+", default=["full", "compact"], choices=["full", "compact"])
    ap.add_argument("--classes", nargs="+", default=["off", "on"], choices=["off", "on"])
    ap.add_argument("--stats-cadence", type=float, default=IntegrateSettings.stats_cadence_gyroperiods,
                    help="statistics sampling interval [gyro-periods]")
    ap.add_argument("--mmap", metavar="DIR", help="read the field from a memory-mapped file in DIR")
    args = ap.parse_args()
    print(f"numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads available, "
          f"{os.cpu_count()} CPUs")
    rows = []
    for n in args.grids:
        t = time.perf_counter()
        f = random_field(n)
        energy = 10 * (100.0 / n) * 3.0 / LARMOR_PC_PER_PEV_UG  # r_L(3 uG) = 10 cells
        print(f"\n{n}^3 field ({time.perf_counter() - t:.1f} s to build), E = {energy:.3g} PeV, "
              f"r_L = 10 cells, {args.particles} particles x {args.gyroperiods:g} gyro-periods, "
              f"statistics every {args.stats_cadence:g} gyro-periods")
        for layout in args.layouts:
            grid, *scales = build_field(f, layout, (200.0, 5000.0))
            if args.mmap:
                grid = mapped(grid, args.mmap, f"{n}_{layout}")
            print(f"  {layout}: {grid.nbytes / 2**20:.0f} MiB field")
            combos = list(itertools.product(args.classes, args.threads))
            for classes, threads in combos:  # compile / load the cache
                for kernel in KERNELS:
                    run(f, grid, scales, layout, classes == "on", kernel, 16, energy, 0.5, threads,
                        stats_cadence=args.stats_cadence)
            load0 = os.getloadavg()[0]
            best: dict = {}
            for _ in range(args.repeat):
                for classes, threads in combos:
                    for kernel in KERNELS:  # the two kernels back to back
                        wall, cpu, steps = run(f, grid, scales, layout, classes == "on", kernel,
                                               args.particles, energy, args.gyroperiods, threads,
                                               stats_cadence=args.stats_cadence)
                        ns = wall * threads / steps * 1e9
                        best.setdefault((classes, threads, kernel), []).append((ns, cpu / steps * 1e9))
            for classes, threads in combos:
                g = best[(classes, threads, "grouped")]
                r = best[(classes, threads, "reference")]
                gmin, rmin = min(x[0] for x in g), min(x[0] for x in r)
                rows.append((n, layout, classes, threads, gmin, max(x[0] for x in g), rmin,
                             rmin / gmin, load0, os.getloadavg()[0]))
                print(f"  {layout:7s} classes {classes:3s} {threads} thread(s): grouped "
                      f"{gmin:6.1f} ns (runs up to {max(x[0] for x in g):.0f}), reference "
                      f"{rmin:6.1f} ns, reference/grouped {rmin / gmin:4.2f}")
            for classes in args.classes:
                if 1 in args.threads and 2 in args.threads:
                    one = [x for x in rows if x[:4] == (n, layout, classes, 1)][0][4]
                    two = [x for x in rows if x[:4] == (n, layout, classes, 2)][0][4]
                    print(f"  {layout} classes {classes}: 2-core speed-up {2 * one / two:.2f}x "
                          "(from ns per particle-step per core)")
            del grid
        del f
    print("\n| grid | layout | classes | threads | grouped ns/step | reference ns/step "
          "| reference/grouped | load avg before/after |")
    print("|---|---|---|---|---|---|---|---|")
    for n, layout, classes, threads, g, gmax, r, ratio, l0, l1 in rows:
        print(f"| {n}^3 | {layout} | {classes} | {threads} | {g:.0f} (-{gmax:.0f}) | {r:.0f} "
              f"| {ratio:.2f} | {l0:.1f}/{l1:.1f} |")


if __name__ == "__main__":
    main()
