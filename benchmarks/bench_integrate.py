"""Benchmark of the particle pusher: ns per particle-step per core and the 2-core speed-up.

    PYTHONPATH=src python benchmarks/bench_integrate.py [--grids 128 512] [--particles 2000]

For each grid (a divergence-free random field, δB = B0 = 3 µG, tiled from a 128^3 realisation
for larger grids so generation stays cheap — the pusher's memory access is the same) the
particle energy is chosen so r_L(B0) = 10 cells. The same particles are pushed with 1 and
with 2 Numba threads, one run right after the other, so the ratio is fair on a shared machine.
Target: <= 30 ns per particle-step per core on 128^3, >= 1.8x on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time

import numba
import numpy as np

from cosmicflow.constants import LARMOR_PC_PER_PEV_UG
from cosmicflow.integrate import IntegrateSettings, inject, integrate_particles


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


def run(f, n_particles, energy, duration, threads, seed=1):
    numba.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    pos, d, _ = inject(f, 0.0, 100.0, n_particles, rng)
    st = IntegrateSettings(duration_gyroperiods=duration, output_times=4,
                           first_output_gyroperiods=duration / 8, trajectories=0)
    t0, c0 = time.perf_counter(), time.process_time()
    res = integrate_particles(f, 0.0, 100.0, pos, d, energy_pev=energy, settings=st)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, int(res["n_steps"].sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--grids", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--particles", type=int, default=2000)
    ap.add_argument("--gyroperiods", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs per thread count")
    args = ap.parse_args()
    print(f"numba {numba.__version__}, threading layer threads available: {numba.config.NUMBA_NUM_THREADS}")
    for n in args.grids:
        t = time.perf_counter()
        f = random_field(n)
        cell = 100.0 / n
        energy = 10 * cell * 3.0 / LARMOR_PC_PER_PEV_UG  # r_L(3 uG) = 10 cells
        print(f"\n{n}^3 field ({time.perf_counter() - t:.1f} s to build), E = {energy:.3g} PeV, "
              f"r_L = 10 cells, {args.particles} particles x {args.gyroperiods:g} gyro-periods")
        run(f, 64, energy, 1.0, 2)  # compile / load cache
        print(f"  load average before: {os.getloadavg()[0]:.2f} (2 idle cores: 0)")
        best = {}
        for _ in range(args.repeat):
            for threads in (1, 2):
                wall, cpu, steps = run(f, args.particles, energy, args.gyroperiods, threads)
                best[threads] = min(best.get(threads, (np.inf,)), (wall, cpu, steps))
        for threads, (wall, cpu, steps) in best.items():
            print(f"  {threads} thread(s): wall {wall:7.3f} s, CPU {cpu:7.3f} s for {steps:.3e} "
                  f"particle-steps -> {wall * threads / steps * 1e9:6.1f} ns per particle-step "
                  f"per core (wall x threads), {cpu / steps * 1e9:6.1f} ns (CPU time)")
        print(f"  2-core speed-up (wall): {best[1][0] / best[2][0]:.2f}x; load average after: "
              f"{os.getloadavg()[0]:.2f} (on a shared machine the wall figures include waiting "
              "for other processes; the CPU-time figure does not)")
        del f


if __name__ == "__main__":
    main()
