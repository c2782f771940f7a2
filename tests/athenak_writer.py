"""A writer of AthenaK's binary output format (version 1.1), for reader tests and benchmarks.

It follows AthenaK ``src/outputs/binary.cpp``: an ASCII pre-header, the parameter dump, then
one record per meshblock (int32[6] output index ranges in the ghost-padded block, int32[4]
logical location and level, 6 location reals, float32[nvar][n3][n2][n1]). It can produce the
layouts a reader must survive: non-cubic meshes and blocks, float32 or float64 locations,
ghost zones in the records, several rank files (``bin/rank_XXXXXXXX/``), two refinement levels.

Data come from a "truth" grid at the finest level, indexed ``[ix, iy, iz]`` like the canonical
snapshot; a coarser block holds the volume average of the truth over its cells (velocities
density-weighted), the same restriction the reader applies, so tests can predict every value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

BlockSpec = tuple[int, int, int, int]  # lx1, lx2, lx3, level


def uniform_blocks(root_cells: Sequence[int], block_cells: Sequence[int]) -> list[BlockSpec]:
    """All root-level blocks in AthenaK's gid order (lx1 fastest)."""
    n = [r // b for r, b in zip(root_cells, block_cells)]
    return [(i, j, k, 0) for k in range(n[2]) for j in range(n[1]) for i in range(n[0])]


def two_level_blocks(root_cells, block_cells, refined: set[tuple[int, int, int]]) -> list[BlockSpec]:
    """Root blocks, with those in ``refined`` replaced by their 8 level-1 children (in place)."""
    out: list[BlockSpec] = []
    for i, j, k, _ in uniform_blocks(root_cells, block_cells):
        if (i, j, k) in refined:
            out += [(2 * i + a, 2 * j + b, 2 * k + c, 1)
                    for c in (0, 1) for b in (0, 1) for a in (0, 1)]
        else:
            out.append((i, j, k, 0))
    return out


def restrict(truth: Mapping[str, np.ndarray], spec: BlockSpec, block_cells, finest: int):
    """A block's data ``{name: float32 (n3, n2, n1)}`` from the finest-level truth."""
    lx1, lx2, lx3, level = spec
    f = 2 ** (finest - level)
    n1, n2, n3 = block_cells
    sl = (slice(lx1 * n1 * f, (lx1 + 1) * n1 * f), slice(lx2 * n2 * f, (lx2 + 1) * n2 * f),
          slice(lx3 * n3 * f, (lx3 + 1) * n3 * f))

    def avg(a):
        a = np.asarray(a, dtype=np.float64)
        return a.reshape(n1, f, n2, f, n3, f).mean(axis=(1, 3, 5))

    dens = truth["dens"][sl]
    out = {}
    for name, arr in truth.items():
        part = arr[sl]
        if f == 1:
            v = part
        elif name in ("velx", "vely", "velz"):
            v = avg(dens.astype(np.float64) * part) / avg(dens)
        else:
            v = avg(part)
        out[name] = np.ascontiguousarray(np.asarray(v, dtype=np.float32).T)
    return out


def parameter_dump(root_cells, block_cells, bounds, nghost=2, extra: str = "") -> str:
    """A parameter dump like AthenaK's ``ParameterDump`` with <mesh>, <meshblock> and ``extra``."""
    lines = ["#------------------------- PAR_DUMP -------------------------",
             "<comment>", "problem = cosmicflow reader fixture   # written by tests/athenak_writer.py",
             "<mesh>", f"nghost = {nghost}"]
    for a in range(3):
        lines += [f"nx{a + 1}    = {root_cells[a]}", f"x{a + 1}min  = {bounds[a][0]!r}",
                  f"x{a + 1}max  = {bounds[a][1]!r}", f"ix{a + 1}_bc = periodic",
                  f"ox{a + 1}_bc = periodic"]
    lines += ["<meshblock>"] + [f"nx{a + 1} = {block_cells[a]}" for a in range(3)]
    text = "\n".join(lines) + "\n" + extra.strip("\n") + ("\n" if extra.strip() else "")
    return text + "<par_end>\n"


def write_bin(
    path: str | Path,
    blocks: Sequence[BlockSpec],
    data: Callable[[BlockSpec], Mapping[str, np.ndarray]],
    variables: Sequence[str],
    root_cells: Sequence[int],
    block_cells: Sequence[int],
    bounds: Sequence[tuple[float, float]],
    *,
    time: float = 0.0,
    cycle: int = 0,
    loc_size: int = 8,
    nghost: int = 2,
    ghost_zones: bool = False,
    ghost_value: float = np.nan,
    ranks: int = 1,
    extra_params: str = "",
    version: str = "1.1",
    nvar_in_header: int | None = None,
) -> list[Path]:
    """Write one AthenaK binary output; returns the files written.

    ``ranks > 1`` writes ``path.parent/rank_XXXXXXXX/path.name`` files, each with the full
    header and a contiguous share of the blocks (AthenaK's ``single_file_per_rank``).
    ``ghost_zones`` writes ghost-padded records with ghosts set to ``ghost_value``.
    ``nvar_in_header`` lets a test make the header lie about the variable count.
    """
    path = Path(path)
    dump = parameter_dump(root_cells, block_cells, bounds, nghost, extra_params)
    nvar = len(variables) if nvar_in_header is None else nvar_in_header
    pre = (f"Athena binary output version={version}\n  size of preheader=5\n"
           f"  time={time:.16e}\n  cycle={cycle}\n  size of location={loc_size}\n"
           f"  size of variable=4\n  number of variables={nvar}\n"
           f"  variables:  {'  '.join(variables)}  \n  header offset={len(dump)}\n")
    header = (pre + dump).encode()
    loc_dtype = np.dtype(f"<f{loc_size}")
    n1, n2, n3 = block_cells
    g = [nghost if n > 1 else 0 for n in block_cells]
    if ghost_zones:
        ranges = [0, n1 + 2 * g[0] - 1, 0, n2 + 2 * g[1] - 1, 0, n3 + 2 * g[2] - 1]
    else:
        ranges = [g[0], g[0] + n1 - 1, g[1], g[1] + n2 - 1, g[2], g[2] + n3 - 1]
    nroot = [r // b for r, b in zip(root_cells, block_cells)]

    def record(spec: BlockSpec) -> bytes:
        lx1, lx2, lx3, level = spec
        loc = []
        for a, lx in enumerate((lx1, lx2, lx3)):
            lo, hi = bounds[a]
            w = (hi - lo) / (nroot[a] * 2**level)
            loc += [lo + lx * w, lo + (lx + 1) * w]
        fields = data(spec)
        parts = [np.asarray(ranges + [lx1, lx2, lx3, level], "<i4").tobytes(),
                 np.asarray(loc, loc_dtype).tobytes()]
        for name in variables:
            active = np.asarray(fields[name], "<f4")
            if ghost_zones:
                padded = np.full((n3 + 2 * g[2], n2 + 2 * g[1], n1 + 2 * g[0]), ghost_value, "<f4")
                padded[g[2]:g[2] + n3, g[1]:g[1] + n2, g[0]:g[0] + n1] = active
                active = padded
            parts.append(active.tobytes())
        return b"".join(parts)

    if ranks == 1:
        targets = [(path, list(blocks))]
    else:
        share = np.array_split(np.arange(len(blocks)), ranks)
        targets = [(path.parent / f"rank_{r:08d}" / path.name, [blocks[i] for i in idx])
                   for r, idx in enumerate(share)]
    written = []
    for fpath, mine in targets:
        fpath.parent.mkdir(parents=True, exist_ok=True)
        with open(fpath, "wb") as f:
            f.write(header)
            for spec in mine:
                f.write(record(spec))
        written.append(fpath)
    return written


ISM_UNITS = """<units>
length_cgs = 3.0856775809623245e18 # 1 pc
time_cgs   = 3.15576e13            # 1 Myr
mass_cgs   = 6.8301262362768545e31 # 1.4 m_u pc^3
mu         = 1.4
<mhd>
eos   = ideal
gamma = 1.6666666666666667
"""


def random_truth(shape_xyz, variables=("dens", "velx", "vely", "velz", "eint", "bcc1", "bcc2",
                                       "bcc3"), seed=0) -> dict[str, np.ndarray]:
    """Random but physical code-unit fields on the finest grid, float32, ``[ix, iy, iz]``."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in variables:
        a = rng.normal(size=shape_xyz)
        if name in ("dens", "eint"):
            a = np.exp(0.5 * a) * (1.0 if name == "dens" else 40.0)
        elif name == "bcc3":
            a = a + 5.0
        out[name] = a.astype(np.float32)
    return out
