"""Time and peak memory of the synthetic generators (prints figures; not a test).

Usage: PYTHONPATH=src python benchmarks/synthetic_media.py [grid] [generator ...]
e.g. ``python benchmarks/synthetic_media.py 512 multiphase`` (target: well under 24 GB; the
eight float32 output cubes alone are 4.3 GB at 512^3). Each generator runs in a fresh process
so its peak resident memory is its own.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def _child(grid: int, name: str) -> None:
    from cosmicflow import synthetic

    t0 = time.perf_counter()
    fields, attrs = getattr(synthetic, name)(grid, 100.0, 11)
    dt = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    out_gb = sum(a.nbytes for a in fields.values()) / 1024**3
    keep = ("volume_fractions", "mass_fractions", "b_abs_min_uG", "b_abs_max_uG",
            "b_abs_rms_uG", "alfven_mach_number", "sonic_mach_number", "db_rms_uG_measured")
    print(json.dumps({"generator": name, "grid": grid, "seconds": round(dt, 2),
                      "peak_rss_GB": round(peak_gb, 2), "output_GB": round(out_gb, 2),
                      **{k: attrs[k] for k in keep if k in attrs}}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(int(sys.argv[2]), sys.argv[3])
        return
    grid = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    names = sys.argv[2:] or ["kolmogorov", "slab", "multiphase"]
    for name in names:
        subprocess.run([sys.executable, __file__, "--child", str(grid), name], check=True)


if __name__ == "__main__":
    main()
