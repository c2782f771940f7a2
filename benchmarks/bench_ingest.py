"""Benchmark: stream a 256^3 AthenaK .bin into a canonical snapshot; print MB/s and peak RSS.

The input is written with the test fixture writer (tests/athenak_writer.py), block by block
so this script itself never holds the grid. Ingest runs in a fresh subprocess so its peak
resident set size (ru_maxrss of that child) is the ingest's alone; a second child that only
imports the same modules gives the interpreter's baseline.

    PYTHONPATH=src python benchmarks/bench_ingest.py [--n 256] [--block 64] [--ranks 1]

Target (issue 3): peak RSS <= ~1.5x the output size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from athenak_writer import ISM_UNITS, uniform_blocks, write_bin  # noqa: E402

VARS = ["dens", "velx", "vely", "velz", "eint", "bcc1", "bcc2", "bcc3"]

CHILD = """
import json, sys, time
import cosmicflow.snapshot as snapshot
from cosmicflow.athenak import athenak_to_snapshot

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return -1

# the writer's closing validation memory-maps the finished file; note the peak before it
seen = {}
_read = snapshot.read_snapshot
def read_and_note(*a, **k):
    seen.setdefault("before_validation", hwm())
    return _read(*a, **k)
snapshot.read_snapshot = read_and_note
t = time.perf_counter()
if sys.argv[1] != "-":
    athenak_to_snapshot(sys.argv[1], sys.argv[2], {}, {}, {"params": json.loads(sys.argv[3])})
print(json.dumps({"seconds": time.perf_counter() - t, **seen}))
"""


def block_data(spec, block):
    """Deterministic per-block fields (no global grid is ever built)."""
    rng = np.random.default_rng(abs(hash(spec)) % 2**32)
    shape = (block, block, block)
    out = {v: rng.standard_normal(shape, dtype=np.float32) for v in VARS}
    out["dens"] = np.exp(0.5 * out["dens"])
    out["eint"] = 40.0 * np.exp(0.5 * out["eint"])
    out["bcc3"] += 5.0
    return out


def run_child(src: str, dst: str, params: dict) -> tuple[dict, int]:
    """Child's report (seconds, RSS peak before validation) and its peak RSS [bytes]."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, "-c", CHILD, src, dst, json.dumps(params)],
                          check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # RUSAGE_CHILDREN is the max over all waited-for children: run the big one last
    return json.loads(proc.stdout), max(after, before) * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="cells per side")
    ap.add_argument("--block", type=int, default=64, help="meshblock cells per side")
    ap.add_argument("--ranks", type=int, default=1, help="rank files to split the output into")
    ap.add_argument("--memory-budget-mb", type=float, default=64.0, help="reader tile memory [MiB]")
    ap.add_argument("--tmp", default=None, help="scratch folder (default: system temp)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        src = tmp / "bin" / "Bench.mhd_w_bcc.00000.bin"
        n, b = args.n, args.block
        t0 = time.perf_counter()
        files = write_bin(src, uniform_blocks((n, n, n), (b, b, b)),
                          lambda s: block_data(s, b), VARS, (n, n, n), (b, b, b),
                          ((-50.0, 50.0),) * 3, extra_params=ISM_UNITS, ranks=args.ranks)
        t_write = time.perf_counter() - t0
        in_bytes = sum(f.stat().st_size for f in files)

        _, base_rss = run_child("-", "-", {})
        dst = tmp / "snapshot.h5"
        report, peak_rss = run_child(str(files[0]), str(dst),
                                   {"memory_budget_mb": args.memory_budget_mb})
        secs = report["seconds"]
        out_fields = 8 * n**3 * 4
        out_bytes = dst.stat().st_size
    mib = 1024**2
    print(f"grid {n}^3, meshblocks {b}^3, {args.ranks} rank file(s), tile budget "
          f"{args.memory_budget_mb:g} MiB")
    print(f"input .bin          {in_bytes / mib:9.1f} MiB (written in {t_write:.1f} s)")
    print(f"output snapshot     {out_bytes / mib:9.1f} MiB ({out_fields / mib:.1f} MiB of fields)")
    print(f"ingest time         {secs:9.2f} s  -> {in_bytes / mib / secs:.0f} MB/s read, "
          f"{out_fields / mib / secs:.0f} MB/s written")
    print(f"peak RSS            {peak_rss / mib:9.1f} MiB = {peak_rss / out_fields:.2f} x output "
          f"fields (interpreter + imports alone: {base_rss / mib:.1f} MiB; "
          f"above that {(peak_rss - base_rss) / out_fields:.2f} x)")
    if "before_validation" in report:
        pre = report["before_validation"]
        print(f"  of which streaming (before the writer's closing validation, which memory-maps "
              f"the finished file): {pre / mib:.1f} MiB = {pre / out_fields:.2f} x")
    print("target: peak <= ~1.5 x output size ->",
          "OK" if peak_rss <= 1.5 * out_fields else "ABOVE TARGET")


if __name__ == "__main__":
    main()
