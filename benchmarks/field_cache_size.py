"""Size of a field cache on disk and in memory, both layouts (prints figures; not a test).

Usage: PYTHONPATH=src python benchmarks/field_cache_size.py [grid] [folder]
e.g. ``python benchmarks/field_cache_size.py 1024 /tmp`` writes a 1024^3 cache in each layout
(16 GiB full, 8 GiB compact: the folder needs 25 GiB free), then, in a fresh process per file,
memory-maps it as integrate jobs do and touches every page, reporting the file size, the
mapped size, the resident file-backed memory (RssFile, less the libraries) after the sweep and the process's own
anonymous memory (RssAnon: what the job adds beyond the shared page cache). The field is a
128^3 random field tiled to the grid (written slab by slab, never whole in memory), so the
numbers are those of the layout, not of a particular medium; the files are removed at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

BASE = 128


class TiledField:
    """A cube of ``n`` cells per side that repeats a 128^3 block; slabs along axis 0 on demand."""

    def __init__(self, block: np.ndarray, n: int):
        self.block, self.shape, self.dtype = block, (n, n, n), block.dtype
        self.reps = n // block.shape[0]

    def __getitem__(self, key):
        if not isinstance(key, slice):
            raise TypeError("TiledField supports slabs along axis 0 only")
        rows = np.arange(*key.indices(self.shape[0])) % self.block.shape[0]
        return np.tile(self.block[rows], (1, self.reps, self.reps))


def _fields(n: int) -> dict:
    rng = np.random.default_rng(0)
    b = {c: rng.normal(0.0, 3.0, (BASE,) * 3).astype(np.float32) for c in ("bx", "by", "bz")}
    b["bz"] += np.float32(3.0)
    b["temperature"] = np.exp(rng.uniform(np.log(30.0), np.log(1e4), (BASE,) * 3)).astype(np.float32)
    return {k: TiledField(v, n) for k, v in b.items()}


def write(n: int, folder: str, layout: str) -> str:
    import h5py

    from cosmicflow.integrate.field import GRID_VALUES, LAYOUTS, compact_field, padded_field

    path = os.path.join(folder, f"field_cache_{n}_{layout}.h5")
    gshape = (n + 2,) * 3 + (GRID_VALUES,)
    t0 = time.perf_counter()
    with h5py.File(path, "w") as h5:
        dset = h5.create_dataset("field", shape=gshape, dtype=LAYOUTS[layout][1])
        if layout == "full":
            padded_field(_fields(n), out=dset, slab_cells=1 << 22)
        else:
            compact_field(_fields(n), (200.0, 5000.0), out=dset, slab_cells=1 << 22)
    print(f"  wrote {path} in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def _status(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return -1


def touch(path: str) -> dict:
    """In this process: map the field as read_field_cache does and read every page."""
    import h5py

    with h5py.File(path, "r") as h5:
        d = h5["field"]
        shape, dtype, offset = d.shape, d.dtype, d.id.get_offset()
    grid = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    libraries = _status("RssFile")  # shared libraries mapped before the sweep
    t0 = time.perf_counter()
    for i in range(shape[0]):  # one plane at a time: every page is read once
        np.asarray(grid[i]).max()
    return {"file_GiB": os.path.getsize(path) / 2**30, "mapped_GiB": grid.nbytes / 2**30,
            "rss_file_GiB": (_status("RssFile") - libraries) / 2**30, "rss_anon_MiB": _status("RssAnon") / 2**20,
            "sweep_s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    folder = sys.argv[2] if len(sys.argv) > 2 else "."
    if len(sys.argv) > 3 and sys.argv[3] == "--touch":
        print(json.dumps(touch(folder)))
        return
    for layout in ("compact", "full"):
        path = write(n, folder, layout)
        try:
            out = subprocess.run([sys.executable, __file__, str(n), path, "--touch"],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out)
            cells = (n + 2) ** 3
            print(f"{n}^3 {layout}: file {r['file_GiB']:.2f} GiB ({r['file_GiB'] * 2**30 / cells:.2f} "
                  f"B per padded cell), mapped {r['mapped_GiB']:.2f} GiB, resident after touching "
                  f"every page {r['rss_file_GiB']:.2f} GiB (page cache, shared by every job on the "
                  f"node), process's own memory {r['rss_anon_MiB']:.0f} MiB; sweep {r['sweep_s']} s")
        finally:
            os.remove(path)


if __name__ == "__main__":
    main()
