"""Throughput and peak memory of the phases and gradients stages on N^3 snapshots.

    PYTHONPATH=src python benchmarks/bench_phases_gradients.py [--sizes 128 256 512]
        [--workdir /tmp/cosmicflow-bench] [--workers 2] [--chunk-cells 2097152] [--keep]

Each snapshot is written slab by slab with ``snapshot_writer`` (random fields: lognormal
density, T = 3000 K cm^-3 / n so all three phases occur, a 3 uG mean field along z plus unit
noise, 10 km/s velocities), so building it never holds the box in memory. Each stage then
runs in a fresh subprocess and reports its own peak resident set size (VmHWM), wall time
and throughput in cells per second. Snapshots are written in a subprocess too, so the parent
stays small.

Measured 2026-11-22 on the shared 2-core machine (2 workers, default 2^21-cell blocks):

    N      stage  wall [s]  Mcells/s  peak RSS [MB]
  128     phases       2.3      0.93            480
  128  gradients       1.2      1.69            442
  256     phases      12.0      1.40            855
  256  gradients      11.9      1.41            751
  512     phases      66.2      2.03            876
  512  gradients      27.4      4.90            807

and on the 512^3 synthetic multiphase medium of the default config (cosmicflow.synthetic,
seed 11; ``--snapshot results/.../snapshot.h5``):

  512     phases      45.6      2.95            896
  512  gradients      43.3      3.10            812

Peak memory stops growing once a block is a fixed number of cells: it is ~2 blocks of work
arrays plus the interpreter, not the snapshot (4.3 GB at 512^3). Wall times vary with the
load from other users of the machine. The target is <= 4 GB at 512^3.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cosmicflow.snapshot import snapshot_writer

STAGE = r"""
import json, resource, sys, time
from cosmicflow.phases import run_phases
from cosmicflow.gradients import run_gradients
stage, snap, out, workers, chunk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
phases = {"thresholds_K": [200.0, 5000.0], "names": ["CNM", "UNM", "WNM"]}
t0 = time.perf_counter()
if stage == "phases":
    run_phases(snap, out + "/phases.csv", out + "/phase_histograms.nc", out + "/slices.nc",
               phases, "bench", chunk_cells=chunk, num_workers=workers)
else:
    run_gradients(snap, out + "/gradients.nc", {"energies_PeV": [1.5, 2.5, 5.0, 7.5, 10.0, 15.0]},
                  phases, "bench", chunk_cells=chunk, num_workers=workers)
wall = time.perf_counter() - t0
# VmHWM is this process image's own high-water mark; ru_maxrss would also count the parent's
# resident set inherited at fork (Linux keeps it across exec)
try:
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
except (OSError, StopIteration):
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"wall_s": wall, "peak_rss_mb": hwm / 1024}))
"""


def write_random_snapshot(path: Path, n: int, seed: int = 0, slab: int = 16) -> None:
    rng = np.random.default_rng(seed)
    with snapshot_writer(path, (n, n, n), 100.0, attrs={"source": "benchmark random fields"}) as w:
        for i in range(0, n, slab):
            shape = (min(slab, n - i), n, n)
            dens = np.exp(1.5 * rng.standard_normal(shape, dtype=np.float32))
            w["density"][i : i + shape[0]] = dens
            w["temperature"][i : i + shape[0]] = np.clip(3000.0 / dens, 20.0, 2e4)
            for c, b0 in (("bx", 0.0), ("by", 0.0), ("bz", 3.0)):
                w[c][i : i + shape[0]] = b0 + rng.standard_normal(shape, dtype=np.float32)
            for c in ("vx", "vy", "vz"):
                w[c][i : i + shape[0]] = 10.0 / np.sqrt(3) * rng.standard_normal(shape, dtype=np.float32)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--write":
        write_random_snapshot(Path(sys.argv[2]), int(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/cosmicflow-bench"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk-cells", type=int, default=1 << 21)
    ap.add_argument("--keep", action="store_true", help="keep the snapshots afterwards")
    ap.add_argument("--snapshot", type=Path, nargs="*", default=[],
                    help="measure these existing snapshots (e.g. a synthetic medium) instead")
    args = ap.parse_args()
    print(f"{'N':>5} {'stage':>10} {'wall [s]':>9} {'Mcells/s':>9} {'peak RSS [MB]':>14}")
    jobs = [(None, p) for p in args.snapshot] or [(n, None) for n in args.sizes]
    for n, given in jobs:
        if given is not None:
            import h5py

            with h5py.File(given, "r") as h5:
                n = round(h5["density"].size ** (1 / 3))
            d = args.workdir / f"{given.parent.name}_{n}"
            d.mkdir(parents=True, exist_ok=True)
            snap = given
        else:
            d = args.workdir / f"n{n}"
            d.mkdir(parents=True, exist_ok=True)
            snap = d / "snapshot.h5"
        if not snap.exists():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--write", str(snap), str(n)], check=True)
            print(f"{n:>5} {'write':>10} {time.perf_counter() - t0:9.1f}", flush=True)
        for stage in ("phases", "gradients"):
            res = subprocess.run(
                [sys.executable, "-c", STAGE, stage, str(snap), str(d), str(args.workers),
                 str(args.chunk_cells)],
                check=True, capture_output=True, text=True,
            )
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"{n:>5} {stage:>10} {r['wall_s']:9.1f} {n**3 / r['wall_s'] / 1e6:9.2f} "
                  f"{r['peak_rss_mb']:14.0f}", flush=True)
        if not args.keep and given is None:
            snap.unlink()


if __name__ == "__main__":
    main()
