"""Read AthenaK outputs (``.bin`` and ``.athdf``) and stream them into a canonical snapshot.

Formats
-------
``.bin`` (AthenaK ``src/outputs/binary.cpp``, version 1.1): ASCII pre-header lines (version,
time, cycle, size of location, size of variable, variables), ``header offset=L``, then L bytes
of the run's parameter dump (``<block>`` / ``key = value # comment`` lines up to
``<par_end>``), then one record per meshblock, native little-endian, no padding::

    int32[6]   ois oie ojs oje oks oke   output index ranges in the ghost-padded block
    int32[4]   lx1 lx2 lx3 level         logical location (level 0 = root)
    loc[6]     x1min x1max x2min x2max x3min x3max of the block (loc = float64 or float32)
    var[nvar][n3][n2][n1]                cell data, x1 fastest (var = float32)

With ``single_file_per_rank`` every rank writes its own file (same header, its blocks) under
``bin/rank_XXXXXXXX/``; point the reader at any one of them (or at ``bin/<name>`` when that
file does not exist) and it reads them all.

``.athdf`` (Athena++ and AthenaK's ``bin_convert.py``): HDF5 with attributes
``RootGridSize``, ``RootGridX1..3``, ``MeshBlockSize``, ``NumMeshBlocks``, ``DatasetNames``,
``NumVariables``, ``VariableNames`` (and ``Header``, the parameter dump, when converted from
AthenaK) and datasets shaped (nvar, nblock, nx3, nx2, nx1) plus ``Levels`` and
``LogicalLocations``.

Assembly and memory
-------------------
The uniform output grid is filled tile by tile: a tile spans whole meshblocks in x and y and
the full z range, so each field of a tile is written to the snapshot as a few long contiguous
runs (the canonical order is ``[ix, iy, iz]``, z fastest; AthenaK's blocks are
``[k][j][i]``, x fastest, so every block is transposed on the way). Only one tile of code-unit
arrays (at most ``memory_budget_bytes``) and one meshblock record are held at a time; the
output itself lives on disk. Every cell of every tile must be covered by exactly one block.

Mesh refinement
---------------
Multi-level outputs are put on the uniform grid of one chosen level :math:`\\ell` (medium
``params.level``; default: the finest level in the file, which loses nothing). Blocks finer
than :math:`\\ell` are volume-averaged over their :math:`2^{3(L-\\ell)}` children, which keeps
mass, internal energy and magnetic flux; velocities are averaged with density weight,
:math:`v = \\langle\\rho v\\rangle / \\langle\\rho\\rangle`, which keeps momentum. Blocks coarser
than :math:`\\ell` are repeated (piecewise-constant prolongation). A level whose cells would
be larger than a fine meshblock is refused with a message.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cosmicflow.io import InputError, provenance_attrs
from cosmicflow.snapshot import snapshot_writer
from cosmicflow.units import CodeUnits, resolve_units

log = logging.getLogger(__name__)

__all__ = [
    "AthenakOutput",
    "open_athenak",
    "parse_parameter_dump",
    "grid_shape",
    "iter_tiles",
    "read_grid",
    "athenak_to_snapshot",
    "export_athdf",
]

BIN_MAGIC = b"Athena binary output version="
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
SUPPORTED_BIN_VERSIONS = ("1.1",)
#: names cosmicflow works with; other names in a file reach them through ``variables``
CANONICAL_VARIABLES = ("dens", "velx", "vely", "velz", "eint", "press", "bcc1", "bcc2", "bcc3")
#: Athena++ names, understood without a ``variables`` map
DEFAULT_ALIASES = {
    "rho": "dens",
    "vel1": "velx",
    "vel2": "vely",
    "vel3": "velz",
    "Bcc1": "bcc1",
    "Bcc2": "bcc2",
    "Bcc3": "bcc3",
}
REQUIRED_VARIABLES = ("dens", "velx", "vely", "velz", "bcc1", "bcc2", "bcc3")
#: tile memory the assembly may hold by default [bytes]
DEFAULT_MEMORY_BUDGET = 64 * 1024**2
#: longest pre-header line accepted; a binary file read as text stops here
_MAX_LINE = 4096


# ---------------------------------------------------------------------------------------
# parameter dump
# ---------------------------------------------------------------------------------------
def parse_parameter_dump(text: str) -> dict[str, dict[str, str]]:
    """Parse an Athena parameter dump into ``{block: {key: value}}`` (values as strings).

    Blocks are ``<name>`` lines; entries are ``key = value  # comment``; parsing stops at
    ``<par_end>``. Block names are returned without the angle brackets.
    """
    params: dict[str, dict[str, str]] = {}
    block = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("<") and line.endswith(">"):
            block = line[1:-1].strip()
            if block == "par_end":
                break
            params.setdefault(block, {})
            continue
        if block is None or "=" not in line:
            continue
        key, value = line.split("=", 1)
        params[block][key.strip()] = value.strip()
    return params


def _param(params: Mapping[str, Mapping[str, str]], block: str, key: str, kind=str, where=""):
    try:
        value = params[block][key]
    except KeyError:
        return None
    try:
        return kind(value)
    except ValueError:
        raise InputError(f"{where}: <{block}>/{key} = {value!r} is not a {kind.__name__}") from None


# ---------------------------------------------------------------------------------------
# a parsed output: metadata, block index, block reads
# ---------------------------------------------------------------------------------------
@dataclass
class Block:
    """One meshblock: where its data is and where it sits in the mesh."""

    gid: int
    lx: tuple[int, int, int]
    level: int
    file: int = 0  # index into AthenakOutput.files
    offset: int = 0  # byte offset of the data section (bin) / block index (athdf)
    bounds: tuple[float, ...] | None = None  # x1min x1max x2min x2max x3min x3max (code)


@dataclass
class AthenakOutput:
    """An AthenaK output opened for streaming reads (see :func:`open_athenak`).

    Attributes
    ----------
    path : the path the user gave; files : every file read (several for per-rank output)
    format : ``"bin"`` or ``"athdf"``
    time, cycle : simulation time (code units) and cycle
    variables : variable names in file order
    header : pre-header plus parameter dump, verbatim (bin) or the ``Header`` attribute
    params : the parsed parameter dump, ``{block: {key: value}}``
    root_cells : (N1, N2, N3) cells of the root grid
    mesh_bounds : ((x1min, x1max), (x2min, x2max), (x3min, x3max)) in code units
    block_cells : (n1, n2, n3) active cells per meshblock
    blocks : every meshblock
    """

    path: Path
    files: list[Path]
    format: str
    time: float
    cycle: int
    variables: list[str]
    header: str
    params: dict[str, dict[str, str]]
    root_cells: tuple[int, int, int]
    mesh_bounds: tuple[tuple[float, float], ...]
    block_cells: tuple[int, int, int]
    blocks: list[Block]
    # bin layout
    record_cells: tuple[int, int, int] = (0, 0, 0)  # n1, n2, n3 in a record (ghosts incl.)
    ghost_offset: tuple[int, int, int] = (0, 0, 0)  # first active cell in a record, per axis
    var_dtype: np.dtype = field(default_factory=lambda: np.dtype("<f4"))
    _h5: h5py.File | None = None
    _datasets: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def levels(self) -> list[int]:
        return sorted({b.level for b in self.blocks})

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __enter__(self) -> AthenakOutput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def where(self, block: Block | None = None) -> str:
        return str(self.files[block.file] if block is not None else self.path)

    def read_block(self, block: Block, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Active cells of the variables ``names`` (file names) of one block, each (n3, n2, n1)."""
        n1, n2, n3 = self.block_cells
        if self.format == "athdf":
            assert self._h5 is not None
            out = {}
            for name in names:
                dset, index = self._datasets[name]
                out[name] = np.asarray(self._h5[dset][index, block.offset], dtype=np.float32)
            return out
        r1, r2, r3 = self.record_cells
        g1, g2, g3 = self.ghost_offset
        count = len(self.variables) * r1 * r2 * r3
        data = np.fromfile(self.files[block.file], dtype=self.var_dtype, count=count,
                           offset=block.offset)
        if data.size != count:  # the file changed under us or was cut after indexing
            raise InputError(f"{self.where(block)}: truncated record of meshblock {block.gid}")
        data = data.reshape(len(self.variables), r3, r2, r1)
        return {
            name: data[self.variables.index(name), g3:g3 + n3, g2:g2 + n2, g1:g1 + n1]
            .astype(np.float32, copy=False)
            for name in names
        }


def _read_line(f, path: Path) -> str:
    line = f.readline(_MAX_LINE)
    if not line.endswith(b"\n"):
        raise InputError(f"{path}: truncated or malformed AthenaK pre-header (line {line[:60]!r})")
    return line.decode("ascii", errors="replace").rstrip("\n")


def _parse_bin_header(path: Path) -> tuple[dict[str, Any], int]:
    """Pre-header and parameter dump of one ``.bin`` file; returns (header, data offset)."""
    with open(path, "rb") as f:
        first = f.readline(_MAX_LINE)
        if not first.startswith(BIN_MAGIC):
            raise InputError(
                f"{path}: not an AthenaK binary output (bad magic: starts with {first[:32]!r}, "
                f"expected {BIN_MAGIC.decode()}1.1)"
            )
        version = first[len(BIN_MAGIC):].strip().decode("ascii", errors="replace")
        if version not in SUPPORTED_BIN_VERSIONS:
            raise InputError(
                f"{path}: unsupported AthenaK binary format version {version!r} "
                f"(this reader knows {', '.join(SUPPORTED_BIN_VERSIONS)})"
            )
        lines = [first.decode().rstrip("\n")]
        info: dict[str, str] = {}
        variables: list[str] | None = None
        while True:
            line = _read_line(f, path)
            lines.append(line)
            text = line.strip()
            if text.startswith("variables:"):
                variables = text[len("variables:"):].split()
            elif "=" in text:
                key, value = text.split("=", 1)
                info[key.strip()] = value.strip()
            if text.startswith("header offset="):
                break
            if len(lines) > 32:
                raise InputError(f"{path}: AthenaK pre-header has no 'header offset=' line")
        try:
            time = float(info["time"])
            cycle = int(info["cycle"])
            loc_size = int(info["size of location"])
            var_size = int(info["size of variable"])
            nvar = int(info["number of variables"])
            dump_size = int(info["header offset"])
        except (KeyError, ValueError) as err:
            raise InputError(f"{path}: AthenaK pre-header lacks or garbles {err}") from None
        if variables is None:
            raise InputError(f"{path}: AthenaK pre-header has no 'variables:' line")
        if len(variables) != nvar:
            raise InputError(
                f"{path}: header disagrees with itself: number of variables={nvar} but the "
                f"variables line lists {len(variables)} ({' '.join(variables)})"
            )
        if loc_size not in (4, 8) or var_size not in (4, 8):
            raise InputError(
                f"{path}: unsupported size of location={loc_size} / variable={var_size} "
                "(expected 4 or 8 bytes)"
            )
        dump = f.read(dump_size)
        if len(dump) != dump_size:
            raise InputError(
                f"{path}: truncated header: parameter dump of {dump_size} bytes announced, "
                f"{len(dump)} present"
            )
        data_offset = f.tell()
    dump_text = dump.decode("utf-8", errors="replace")
    header = {
        "version": version,
        "time": time,
        "cycle": cycle,
        "loc_size": loc_size,
        "var_size": var_size,
        "variables": variables,
        "text": "\n".join(lines) + "\n" + dump_text,
        "dump": dump_text,
    }
    return header, data_offset


def _rank_files(path: Path) -> list[Path]:
    """The files of one output: ``path`` itself or every ``rank_XXXXXXXX/<name>`` sibling."""
    rank_dir = re.compile(r"rank_\d{8}")
    if path.is_file() and rank_dir.fullmatch(path.parent.name):
        return sorted(path.parent.parent.glob(f"rank_*/{path.name}"))
    if not path.exists():
        ranks = sorted(path.parent.glob(f"rank_*/{path.name}"))
        if ranks:
            return ranks
        raise InputError(f"{path}: AthenaK output not found (neither the file nor rank_*/ copies)")
    return [path]


def _mesh_from_params(params, where) -> tuple[tuple[int, int, int], tuple, tuple[int, int, int]]:
    root, bounds, block = [], [], []
    for a in (1, 2, 3):
        n = _param(params, "mesh", f"nx{a}", int, where)
        if n is None:
            raise InputError(f"{where}: parameter dump has no <mesh>/nx{a}")
        lo = _param(params, "mesh", f"x{a}min", float, where)
        hi = _param(params, "mesh", f"x{a}max", float, where)
        if lo is None or hi is None or not hi > lo:
            raise InputError(f"{where}: <mesh> bounds x{a}min/x{a}max missing or empty")
        b = _param(params, "meshblock", f"nx{a}", int, where)
        root.append(n)
        bounds.append((lo, hi))
        block.append(n if b is None else b)
    return tuple(root), tuple(bounds), tuple(block)  # type: ignore[return-value]


def _open_bin(path: Path) -> AthenakOutput:
    files = _rank_files(path)
    header, data_offset = _parse_bin_header(files[0])
    params = parse_parameter_dump(header["dump"])
    where = str(files[0])
    root, mesh_bounds, block_cells = _mesh_from_params(params, where)
    nghost = _param(params, "mesh", "nghost", int, where)
    if nghost is None:
        nghost = 2  # AthenaK's default when <mesh> does not say
    loc = np.dtype(f"<f{header['loc_size']}")
    var = np.dtype(f"<f{header['var_size']}")
    nvar = len(header["variables"])
    meta = np.dtype([("idx", "<i4", (10,)), ("bounds", loc, (6,))])

    blocks: list[Block] = []
    record_cells = None
    for ifile, fpath in enumerate(files):
        if ifile > 0:
            h, data_offset = _parse_bin_header(fpath)
            if h["text"] != header["text"]:
                raise InputError(
                    f"{fpath}: header differs from {files[0]}: rank files of different outputs?"
                )
        size = fpath.stat().st_size
        if size < data_offset + meta.itemsize:
            raise InputError(
                f"{fpath}: truncated record: no complete meshblock record after the header"
            )
        first = np.fromfile(fpath, dtype=meta, count=1, offset=data_offset)[0]
        ois, oie, ojs, oje, oks, oke = (int(v) for v in first["idx"][:6])
        cells = (oie - ois + 1, oje - ojs + 1, oke - oks + 1)
        if record_cells is None:
            record_cells = cells
            ghost = []
            for a in range(3):
                n, r = block_cells[a], cells[a]
                g = nghost if n > 1 else 0
                if r == n:
                    ghost.append(0)
                elif r == n + 2 * g:
                    ghost.append(g)
                else:
                    raise InputError(
                        f"{fpath}: header disagrees with data: the first meshblock record spans "
                        f"{cells} cells (index ranges {ois}-{oie}, {ojs}-{oje}, {oks}-{oke}) but "
                        f"<meshblock> is {block_cells} with nghost={nghost}"
                    )
        record_size = meta.itemsize + nvar * int(np.prod(record_cells)) * var.itemsize
        nrec, rest = divmod(size - data_offset, record_size)
        if nrec >= 2:
            second = np.fromfile(fpath, dtype=meta, count=1, offset=data_offset + record_size)[0]
            if not np.array_equal(second["idx"][:6], first["idx"][:6]):
                raise InputError(
                    f"{fpath}: header disagrees with data size: records of {nvar} variables x "
                    f"{record_cells} cells ({record_size} bytes, from the header) do not line up "
                    f"with the data: the second record would start with index ranges "
                    f"{second['idx'][:6].tolist()}, the first has {first['idx'][:6].tolist()}"
                )
        if rest:
            raise InputError(
                f"{fpath}: truncated record: the file ends {rest} bytes into meshblock record "
                f"{nrec} (records are {record_size} bytes: {nvar} variables x {record_cells} "
                f"cells + {meta.itemsize} bytes of indices and location)"
            )
        index = np.memmap(fpath, dtype=np.dtype({"names": ["m"], "formats": [meta],
                                                 "itemsize": record_size}),
                          mode="r", offset=data_offset, shape=(nrec,))["m"]
        idx = np.array(index["idx"])
        bnds = np.array(index["bounds"], dtype=np.float64)
        del index
        counts = idx[:, 1:6:2] - idx[:, 0:6:2] + 1
        bad = np.flatnonzero(np.any(counts != np.asarray(record_cells), axis=1))
        if bad.size:
            k = int(bad[0])
            raise InputError(
                f"{fpath}: header disagrees with data size: meshblock record {k} at byte "
                f"{data_offset + k * record_size} has index ranges {idx[k, :6].tolist()} unlike "
                f"record 0 {record_cells}; the header's number of variables ({nvar}), sizes of "
                f"location ({loc.itemsize}) and variable ({var.itemsize}) do not match the data"
            )
        for k in range(nrec):
            blocks.append(Block(
                gid=len(blocks),
                lx=(int(idx[k, 6]), int(idx[k, 7]), int(idx[k, 8])),
                level=int(idx[k, 9]),
                file=ifile,
                offset=data_offset + k * record_size + meta.itemsize,
                bounds=tuple(float(v) for v in bnds[k]),
            ))
    assert record_cells is not None
    out = AthenakOutput(
        path=path, files=files, format="bin", time=header["time"], cycle=header["cycle"],
        variables=list(header["variables"]), header=header["text"], params=params,
        root_cells=root, mesh_bounds=mesh_bounds, block_cells=block_cells, blocks=blocks,
        record_cells=record_cells, ghost_offset=tuple(ghost),  # type: ignore[arg-type]
        var_dtype=var,
    )
    _check_block_geometry(out)
    return out


def _attr(h5: h5py.File, name: str, path: Path):
    if name not in h5.attrs:
        raise InputError(f"{path}: not an Athena .athdf file (attribute {name!r} missing)")
    return h5.attrs[name]


def _open_athdf(path: Path) -> AthenakOutput:
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not a readable HDF5 file ({err})") from None
    try:
        root = tuple(int(v) for v in _attr(h5, "RootGridSize", path))
        block_cells = tuple(int(v) for v in _attr(h5, "MeshBlockSize", path))
        nblock = int(_attr(h5, "NumMeshBlocks", path))
        bounds = []
        for a in (1, 2, 3):
            lo, hi, ratio = (float(v) for v in _attr(h5, f"RootGridX{a}", path))
            if ratio != 1.0:
                raise InputError(f"{path}: non-uniform root grid (RootGridX{a} ratio {ratio})")
            bounds.append((lo, hi))
        dnames = [_decode(v) for v in _attr(h5, "DatasetNames", path)]
        nvars = [int(v) for v in np.atleast_1d(_attr(h5, "NumVariables", path))]
        vnames = [_decode(v) for v in _attr(h5, "VariableNames", path)]
        if len(dnames) != len(nvars) or sum(nvars) != len(vnames):
            raise InputError(
                f"{path}: header disagrees with itself: DatasetNames {dnames}, NumVariables "
                f"{nvars}, VariableNames {vnames}"
            )
        datasets: dict[str, tuple[str, int]] = {}
        i = 0
        for dname, nv in zip(dnames, nvars):
            if dname not in h5:
                raise InputError(f"{path}: dataset {dname!r} named in DatasetNames is missing")
            want = (nv, nblock, block_cells[2], block_cells[1], block_cells[0])
            if h5[dname].shape != want:
                raise InputError(
                    f"{path}: header disagrees with data size: dataset {dname!r} has shape "
                    f"{h5[dname].shape}, attributes say {want}"
                )
            for j in range(nv):
                datasets[vnames[i]] = (dname, j)
                i += 1
        for name in ("Levels", "LogicalLocations"):
            if name not in h5:
                raise InputError(f"{path}: not an Athena .athdf file (dataset {name!r} missing)")
        levels = np.asarray(h5["Levels"][...], dtype=np.int64)
        lloc = np.asarray(h5["LogicalLocations"][...], dtype=np.int64)
        if levels.shape != (nblock,) or lloc.shape != (nblock, 3):
            raise InputError(
                f"{path}: header disagrees with data size: Levels {levels.shape} / "
                f"LogicalLocations {lloc.shape} for NumMeshBlocks={nblock}"
            )
        header = _decode(h5.attrs["Header"]) if "Header" in h5.attrs else ""
        if isinstance(header, (list, np.ndarray)):
            header = "\n".join(_decode(v) for v in header)
        blocks = [Block(gid=b, lx=(int(lloc[b, 0]), int(lloc[b, 1]), int(lloc[b, 2])),
                        level=int(levels[b]), offset=b) for b in range(nblock)]
        out = AthenakOutput(
            path=path, files=[path], format="athdf", time=float(h5.attrs.get("Time", np.nan)),
            cycle=int(h5.attrs.get("NumCycles", -1)), variables=vnames, header=str(header),
            params=parse_parameter_dump(str(header)), root_cells=root,  # type: ignore[arg-type]
            mesh_bounds=tuple(bounds), block_cells=block_cells,  # type: ignore[arg-type]
            blocks=blocks,
            _h5=h5, _datasets=datasets,
        )
    except BaseException:
        h5.close()
        raise
    return out


def _decode(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.dtype.kind in "SO":
        return [_decode(x) for x in v.tolist()]
    return v


def _check_block_geometry(out: AthenakOutput) -> None:
    """Levels and logical locations inside the mesh; stored bounds agree with them."""
    where = out.where()
    nroot = [out.root_cells[a] // out.block_cells[a] for a in range(3)]
    for a in range(3):
        if out.root_cells[a] % out.block_cells[a]:
            raise InputError(
                f"{where}: <mesh>/nx{a + 1}={out.root_cells[a]} is not a multiple of "
                f"<meshblock>/nx{a + 1}={out.block_cells[a]}"
            )
    for b in out.blocks:
        if not 0 <= b.level <= 30:
            raise InputError(
                f"{out.where(b)}: header disagrees with data: meshblock {b.gid} has level "
                f"{b.level}; the record layout does not match the header"
            )
        for a in range(3):
            refine = 2**b.level if out.root_cells[a] > 1 else 1
            if not 0 <= b.lx[a] < nroot[a] * refine:
                raise InputError(
                    f"{out.where(b)}: header disagrees with data: meshblock {b.gid} has logical "
                    f"location {b.lx} at level {b.level}, outside the mesh of {nroot} root blocks"
                )
            if b.bounds is not None:
                lo, hi = out.mesh_bounds[a]
                width = (hi - lo) / (nroot[a] * refine)
                expect = lo + b.lx[a] * width
                if abs(b.bounds[2 * a] - expect) > 1e-5 * (hi - lo):
                    raise InputError(
                        f"{out.where(b)}: meshblock {b.gid} at logical location {b.lx}, level "
                        f"{b.level} claims x{a + 1}min={b.bounds[2 * a]}, the mesh says {expect}"
                    )


def open_athenak(path: str | Path) -> AthenakOutput:
    """Open an AthenaK ``.bin`` (one file or all rank files of one output) or ``.athdf``.

    Only metadata is read here (headers, one small index entry per meshblock); cell data
    is read block by block later. Raises :class:`InputError` naming the file for anything
    that is not a complete, self-consistent AthenaK output.
    """
    path = Path(path)
    probe = path if path.exists() else None
    if probe is None:
        files = _rank_files(path)  # raises when nothing is there
        probe = files[0]
    if probe.is_dir():
        raise InputError(f"{path}: is a directory; give the output file (or a rank file) instead")
    with open(probe, "rb") as f:
        magic = f.read(len(BIN_MAGIC))
    if magic.startswith(HDF5_MAGIC):
        return _open_athdf(path)
    if magic.startswith(BIN_MAGIC[:len(magic)]) and len(magic) == len(BIN_MAGIC):
        return _open_bin(path)
    raise InputError(
        f"{path}: not an AthenaK output (bad magic: starts with {magic[:24]!r}; expected "
        f"'{BIN_MAGIC.decode()}1.1' or an HDF5 .athdf file)"
    )


# ---------------------------------------------------------------------------------------
# assembly onto a uniform grid
# ---------------------------------------------------------------------------------------
def _resolve_names(out: AthenakOutput, variables: Mapping[str, str] | None) -> dict[str, str]:
    """Canonical name -> file name, from the defaults and the medium's ``variables`` map."""
    mapping = dict(DEFAULT_ALIASES)
    for file_name, canon in (variables or {}).items():
        if canon not in CANONICAL_VARIABLES:
            raise InputError(
                f"{out.where()}: variables map {file_name!r} -> {canon!r}: target must be one of "
                f"{', '.join(CANONICAL_VARIABLES)}"
            )
        mapping[file_name] = canon
    found: dict[str, str] = {}
    for name in out.variables:
        canon = mapping.get(name, name)
        if canon in CANONICAL_VARIABLES and canon not in found:
            found[canon] = name
    missing = [v for v in REQUIRED_VARIABLES if v not in found]
    if missing:
        raise InputError(
            f"{out.where()}: missing variable(s) {', '.join(missing)}: the file holds "
            f"{' '.join(out.variables)}; cosmicflow needs dens, velx, vely, velz and bcc1-3 "
            "(write mhd_w_bcc, or map other names with the medium's `variables`)"
        )
    return found


def _target_level(out: AthenakOutput, level: int | None) -> int:
    levels = out.levels
    target = levels[-1] if level is None else int(level)
    if target < 0:
        raise InputError(f"{out.where()}: grid level must be >= 0, got {target}")
    for a in range(3):
        if out.root_cells[a] == 1:
            continue
        finest = levels[-1]
        if finest > target and out.block_cells[a] % 2 ** (finest - target):
            # coarsest level whose cells still fit in a fine block: 2^(finest - l) | n
            lowest = finest - int(np.log2(out.block_cells[a] & -out.block_cells[a]))
            raise InputError(
                f"{out.where()}: cannot put level-{finest} meshblocks of {out.block_cells} cells "
                f"on the level-{target} grid (a level-{target} cell is larger than the block); "
                f"choose params.level >= {lowest}"
            )
    return target


def _placement(out: AthenakOutput, b: Block, target: int) -> tuple[list[int], list[int], list[int]]:
    """Offset and extent of a block on the target grid, and its refinement factor per axis.

    factor > 0: repeat each cell ``factor`` times; factor < 0: average ``-factor`` cells.
    """
    off, ext, fac = [], [], []
    for a in range(3):
        n = out.block_cells[a]
        if out.root_cells[a] == 1:
            off.append(0), ext.append(1), fac.append(1)
            continue
        d = target - b.level
        if d >= 0:
            e = n * 2**d
            fac.append(2**d)
        else:
            e = n // 2 ** (-d)
            fac.append(-(2 ** (-d)))
        off.append(b.lx[a] * e)
        ext.append(e)
    return off, ext, fac


def _resample(data: dict[str, np.ndarray], fac: list[int]) -> dict[str, np.ndarray]:
    """Put one block's (n3, n2, n1) arrays on the target resolution, see module docstring."""
    if all(f == 1 for f in fac):
        return data
    f1, f2, f3 = fac
    if all(f >= 1 for f in fac):
        return {k: np.repeat(np.repeat(np.repeat(v, f3, 0), f2, 1), f1, 2) for k, v in data.items()}
    if any(f > 1 for f in fac):  # mixed signs cannot occur: one level per block
        raise AssertionError("mixed refinement factors")
    c1, c2, c3 = (-f if f < 0 else 1 for f in fac)

    def mean(a: np.ndarray) -> np.ndarray:
        n3, n2, n1 = a.shape
        return a.reshape(n3 // c3, c3, n2 // c2, c2, n1 // c1, c1).mean(axis=(1, 3, 5),
                                                                       dtype=np.float64)

    dens = data["dens"].astype(np.float64)
    mean_dens = mean(dens)
    out = {}
    for k, v in data.items():
        if k in ("velx", "vely", "velz"):
            out[k] = (mean(dens * v) / mean_dens).astype(np.float32)
        else:
            out[k] = mean(v).astype(np.float32)
    return out


def _check_block_values(out: AthenakOutput, b: Block, data: Mapping[str, np.ndarray],
                        names: Mapping[str, str]) -> None:
    for canon, arr in data.items():
        finite = np.isfinite(arr)
        if not finite.all():
            k, j, i = np.argwhere(~finite)[0]
            raise InputError(
                f"{out.where(b)}: variable {names[canon]!r} has non-finite value "
                f"{arr[k, j, i]} in meshblock {b.gid} (logical location {b.lx}, level "
                f"{b.level}) at cell (i, j, k) = ({i}, {j}, {k})"
            )
        if canon in ("dens", "eint", "press") and np.any(arr <= 0):
            k, j, i = np.argwhere(arr <= 0)[0]
            raise InputError(
                f"{out.where(b)}: variable {names[canon]!r} must be > 0 but is {arr[k, j, i]} "
                f"in meshblock {b.gid} (logical location {b.lx}, level {b.level}) at cell "
                f"(i, j, k) = ({i}, {j}, {k})"
            )


@dataclass
class Tile:
    """A box ``[x0:x1, y0:y1, :]`` of the target grid with code-unit arrays ``[ix, iy, iz]``."""

    x: slice
    y: slice
    data: dict[str, np.ndarray]


def grid_shape(out: AthenakOutput, level: int | None = None) -> tuple[int, int, int]:
    """Cells of the uniform grid at ``level`` (default: finest level in the file)."""
    target = _target_level(out, level)
    n1, n2, n3 = (n * 2**target if n > 1 else 1 for n in out.root_cells)
    return n1, n2, n3


def iter_tiles(
    out: AthenakOutput,
    variables: Mapping[str, str] | None = None,
    level: int | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> Iterator[Tile]:
    """Assemble the output on the uniform grid of ``level``, one tile at a time.

    Yields :class:`Tile` objects whose ``data`` maps canonical names (``dens``, ``velx``...,
    ``eint`` or ``press`` when present) to float32 code-unit arrays indexed ``[ix, iy, iz]``.
    Raises InputError for missing variables, bad values or incomplete coverage.
    """
    names = _resolve_names(out, variables)
    target = _target_level(out, level)
    shape = grid_shape(out, target)
    lmin = out.levels[0]
    unit = []
    for a in range(3):
        if out.root_cells[a] == 1:
            unit.append(1)
        else:
            d = target - lmin
            unit.append(out.block_cells[a] * 2**d if d >= 0 else out.block_cells[a] // 2 ** (-d))
    per_cell = 4 * len(names) + 1
    plane = unit[0] * unit[1] * shape[2] * per_cell
    ky = max(1, min(shape[1] // unit[1], memory_budget_bytes // max(plane, 1)))
    kx = 1
    if ky * unit[1] >= shape[1]:
        kx = max(1, min(shape[0] // unit[0], memory_budget_bytes // max(plane * ky, 1)))
    tx, ty = kx * unit[0], ky * unit[1]

    groups: dict[tuple[int, int], list[tuple[Block, list[int], ...]]] = defaultdict(list)
    for b in out.blocks:
        off, ext, fac = _placement(out, b, target)
        groups[(off[0] // tx, off[1] // ty)].append((b, off, ext, fac))
    for key in groups:
        groups[key].sort(key=lambda t: (t[0].file, t[0].offset))

    for ix0 in range(0, shape[0], tx):
        for iy0 in range(0, shape[1], ty):
            xs = slice(ix0, min(shape[0], ix0 + tx))
            ys = slice(iy0, min(shape[1], iy0 + ty))
            tshape = (xs.stop - xs.start, ys.stop - ys.start, shape[2])
            data = {c: np.empty(tshape, np.float32) for c in names}
            cover = np.zeros(tshape, np.uint8)
            for b, off, ext, fac in groups.get((ix0 // tx, iy0 // ty), []):
                raw = out.read_block(b, [names[c] for c in names])
                block = {c: raw[names[c]] for c in names}
                _check_block_values(out, b, block, names)
                block = _resample(block, fac)
                region = (slice(off[0] - ix0, off[0] - ix0 + ext[0]),
                          slice(off[1] - iy0, off[1] - iy0 + ext[1]),
                          slice(off[2], off[2] + ext[2]))
                for c in names:
                    data[c][region] = block[c].T
                np.add(cover[region], 1, out=cover[region], casting="unsafe")
            if not np.all(cover == 1):
                bad = np.argwhere(cover != 1)[0]
                n = int(cover[tuple(bad)])
                cell = (int(bad[0]) + ix0, int(bad[1]) + iy0, int(bad[2]))
                what = ("covered by no meshblock: blocks or rank files are missing, or the file "
                        "was cut at a record boundary" if n == 0 else
                        f"covered by {n} meshblocks (overlapping blocks)")
                raise InputError(
                    f"{out.where()}: header disagrees with data size: cell {cell} of the "
                    f"level-{target} grid {shape} is {what} ({len(out.blocks)} blocks read "
                    f"from {len(out.files)} file(s))"
                )
            yield Tile(xs, ys, data)


def read_grid(path: str | Path, variables: Mapping[str, str] | None = None,
              level: int | None = None) -> tuple[dict[str, np.ndarray], AthenakOutput]:
    """Whole code-unit grid of a (small) output in memory: ``{name: array [ix, iy, iz]}``.

    For tests and quick looks; the pipeline streams with :func:`athenak_to_snapshot`.
    """
    with open_athenak(path) as out:
        shape = grid_shape(out, level)
        grid: dict[str, np.ndarray] = {}
        for tile in iter_tiles(out, variables, level):
            for k, v in tile.data.items():
                grid.setdefault(k, np.empty(shape, np.float32))[tile.x, tile.y] = v
    return grid, out


# ---------------------------------------------------------------------------------------
# to the canonical snapshot
# ---------------------------------------------------------------------------------------
def _eos(out: AthenakOutput) -> dict[str, Any]:
    for block in ("mhd", "hydro"):
        if block in out.params:
            p = out.params[block]
            return {"eos": p.get("eos"), "gamma": p.get("gamma"),
                    "iso_sound_speed": p.get("iso_sound_speed")}
    return {}


def _physical(tile: Tile, units: CodeUnits, temperature: str) -> Iterator[tuple[str, np.ndarray]]:
    """Code-unit tile -> canonical fields, one at a time (formulas in :mod:`cosmicflow.units`).

    A generator, so that only one converted field of the tile exists at any moment.
    """
    d = tile.data
    scale = {
        "density": ("dens", units.number_density_per_dens),
        "bx": ("bcc1", units.uG_per_field),
        "by": ("bcc2", units.uG_per_field),
        "bz": ("bcc3", units.uG_per_field),
        "vx": ("velx", units.kms_per_velocity),
        "vy": ("vely", units.kms_per_velocity),
        "vz": ("velz", units.kms_per_velocity),
    }
    for name, (code, factor) in scale.items():
        yield name, d[code] * np.float32(factor)
    if temperature == "eint":
        t = np.divide(d["eint"], d["dens"])
        t *= np.float32(units.kelvin_per_eint_over_dens)
    elif temperature == "press":
        t = np.divide(d["press"], d["dens"])
        t *= np.float32(units.temperature_unit_K)
    else:
        t = np.full_like(d["dens"], units.isothermal_temperature_K())
    yield "temperature", t


#: largest attribute text stored whole; HDF5's compact attribute storage ends at 64 KiB
_MAX_ATTR_CHARS = 60000


def athenak_to_snapshot(
    path: str | Path,
    output: str | Path,
    units: Mapping[str, Any],
    variables: Mapping[str, str],
    config: Mapping[str, Any],
) -> Path:
    """Convert an AthenaK output into the canonical snapshot ``output`` (streaming, atomic).

    Parameters
    ----------
    path : ``.bin`` (a file, or any rank file of a ``single_file_per_rank`` output) or
        ``.athdf``.
    output : snapshot path (``results/{medium}/snapshot.h5``).
    units : the medium's ``units`` config: overrides of the file's ``<units>`` block, see
        :func:`cosmicflow.units.resolve_units` (required when the file has none).
    variables : file name -> canonical name (``dens velx vely velz eint press bcc1-3``).
    config : the medium's config entry, recorded in the provenance; ``params.level`` picks
        the grid level of a refined output, ``params.memory_budget_mb`` the tile memory.

    Temperature: a configured ``units.temperature_K`` wins; else from ``eint`` (ideal EOS,
    :math:`T = (\\gamma-1)\\,e/\\rho\\;T_u`) or ``press``; else from the isothermal sound speed.
    The snapshot carries the source files, time, cycle, the full AthenaK header and parameter
    dump, the units used and how each was obtained.
    """
    params = dict(config.get("params", {}) or {})
    unknown = sorted(set(params) - {"level", "memory_budget_mb"})
    if unknown:
        raise ValueError(
            f"medium {config.get('medium', '?')!r}: unknown parameter(s) {unknown} for source "
            "'athenak'; accepted: ['level', 'memory_budget_mb']"
        )
    level = params.get("level")
    budget = int(float(params.get("memory_budget_mb", DEFAULT_MEMORY_BUDGET / 1024**2)) * 1024**2)
    with open_athenak(path) as out:
        where = out.where()
        names = _resolve_names(out, variables)
        file_units = out.params.get("units")
        code_units = resolve_units(file_units, _eos(out), units, where)
        eos = _eos(out)
        eos_kind = str(eos.get("eos") or "").lower()
        if code_units.temperature_K is not None:
            temperature = "config"
        elif "eint" in names:
            temperature = "eint"
        elif "press" in names:
            temperature = "press"
        elif eos_kind == "ideal":
            raise InputError(f"{where}: ideal EOS but no eint (or press) among {out.variables}")
        else:
            temperature = "isothermal"
        if temperature in ("eint", "press") and code_units.gamma is None:
            raise InputError(
                f"{where}: temperature from {temperature} needs the adiabatic index: the file's "
                "<mhd> block has no gamma; set units.gamma in the medium's config"
            )
        if temperature == "isothermal" and code_units.iso_sound_speed is None:
            raise InputError(
                f"{where}: isothermal output without a sound speed (no iso_sound_speed in "
                "<mhd>/<hydro>) and no units.temperature_K in the medium's config: set one"
            )
        shape = grid_shape(out, level)
        target = _target_level(out, level)
        lo = np.array([b[0] for b in out.mesh_bounds])
        hi = np.array([b[1] for b in out.mesh_bounds])
        box_pc = tuple((hi - lo) * code_units.pc_per_length)
        origin_pc = tuple(lo * code_units.pc_per_length)
        header = out.header
        if len(header) > _MAX_ATTR_CHARS:
            header = header[:_MAX_ATTR_CHARS] + f"\n... [truncated; full header in {where}]"
        if temperature == "eint":
            t_note = "T = (gamma - 1) eint/dens * mu m_u v_u^2 / k_B"
        elif temperature == "press":
            t_note = "T = press/dens * mu m_u v_u^2 / k_B"
        elif temperature == "isothermal":
            t_note = ("isothermal: T = mu m_u (c_s v_u)^2 / k_B with c_s = "
                      f"{code_units.iso_sound_speed}")
        else:
            t_note = "uniform, from the medium's units.temperature_K"
        attrs = {
            **provenance_attrs(where, config),
            "source_files": [str(p) for p in out.files],
            "source_format": "AthenaK binary v1.1" if out.format == "bin" else "athdf",
            "athenak_time": out.time,
            "athenak_time_Myr": out.time * code_units.myr_per_time,
            "athenak_cycle": out.cycle,
            "athenak_variables": " ".join(out.variables),
            "athenak_variable_map": {c: n for c, n in names.items()},
            "athenak_header": header,
            "athenak_units": code_units.as_attrs(),
            "temperature_method": t_note,
            "refinement": {
                "levels_in_file": out.levels,
                "grid_level": target,
                "method": "finer blocks volume-averaged (velocity density-weighted), coarser "
                          "blocks repeated",
            },
            "mean_molecular_weight": code_units.mu,
            "adiabatic_index": code_units.gamma if code_units.gamma is not None else 1.0,
        }
        log.info("ingesting %s: %d blocks at levels %s -> %s grid (level %d), T from %s",
                 where, len(out.blocks), out.levels, shape, target, temperature)
        with snapshot_writer(output, shape, box_pc, origin_pc, attrs) as w:
            for tile in iter_tiles(out, variables, level, budget):
                for name, arr in _physical(tile, code_units, temperature):
                    w[name][tile.x, tile.y, :] = arr
                    del arr
                del tile
    return Path(output)


# ---------------------------------------------------------------------------------------
# export: canonical snapshot -> .athdf + .xdmf (yt, ParaView, VisIt)
# ---------------------------------------------------------------------------------------
def export_athdf(snapshot: str | Path, athdf: str | Path) -> tuple[Path, Path]:
    """Write a canonical snapshot as an Athena++-style ``.athdf`` plus its ``.xdmf``.

    One meshblock covers the whole grid; coordinates in pc, fields in the snapshot's units
    (``prim`` = density [cm^-3], temperature [K], vx vy vz [km/s]; ``B`` = bx by bz [uG]),
    stored as (nvar, 1, nz, ny, nx). Written z-slab by z-slab, atomically.
    """
    from cosmicflow.io import atomic_output
    from cosmicflow.snapshot import read_snapshot

    snap = read_snapshot(snapshot, validate=False)
    athdf = Path(athdf)
    xdmf = athdf.with_name(athdf.name + ".xdmf")
    nx, ny, nz = snap.shape
    # netCDF keeps scalar attributes as 1-element arrays
    time = float(np.squeeze(snap.attrs.get("athenak_time", 0.0)))
    prim = ["density", "temperature", "vx", "vy", "vz"]
    bvars = ["bx", "by", "bz"]
    edges = [snap.origin_pc[a] + np.arange(n + 1) * snap.box_pc[a] / n
             for a, n in enumerate(snap.shape)]
    with atomic_output(athdf) as tmp:
        with h5py.File(tmp, "w") as h5:
            for a, e in enumerate(edges):
                h5[f"x{a + 1}f"] = e[None, :]
                h5[f"x{a + 1}v"] = (0.5 * (e[1:] + e[:-1]))[None, :]
            h5["Levels"] = np.zeros(1, ">i4")
            h5["LogicalLocations"] = np.zeros((1, 3), ">i8")
            for dname, names in (("prim", prim), ("B", bvars)):
                d = h5.create_dataset(dname, (len(names), 1, nz, ny, nx), "<f4")
                step = max(1, (1 << 24) // max(nx * ny, 1))
                for i, name in enumerate(names):
                    for z0 in range(0, nz, step):
                        z1 = min(nz, z0 + step)
                        d[i, 0, z0:z1] = np.asarray(snap[name][:, :, z0:z1]).transpose(2, 1, 0)
            a = h5.attrs
            a["Coordinates"] = np.bytes_("cartesian")
            a["DatasetNames"] = np.array([b"prim", b"B"])
            a["NumVariables"] = np.array([len(prim), len(bvars)], "<i4")
            a["VariableNames"] = np.array([n.encode() for n in prim + bvars])
            a["MaxLevel"] = np.int32(0)
            a["MeshBlockSize"] = np.array([nx, ny, nz], "<i4")
            a["RootGridSize"] = np.array([nx, ny, nz], "<i4")
            a["NumMeshBlocks"] = np.int32(1)
            for i in range(3):
                a[f"RootGridX{i + 1}"] = np.array([edges[i][0], edges[i][-1], 1.0])
            a["Time"] = time
            a["NumCycles"] = np.int32(int(np.squeeze(snap.attrs.get("athenak_cycle", 0))))
            a["Units"] = np.bytes_(
                "length pc; density cm^-3; temperature K; velocity km/s; B uG")
    item = athdf.name
    lines = [
        '<?xml version="1.0" ?>',
        '<!DOCTYPE Xdmf SYSTEM "Xdmf.dtd" []>',
        '<Xdmf Version="2.0">',
        "<Domain>",
        '<Grid Name="Mesh" GridType="Collection">',
        f' <Time Value="{time}"/>',
        '  <Grid Name="MeshBlock0" GridType="Uniform">',
        f'   <Topology TopologyType="3DRectMesh" NumberOfElements="{nz + 1} {ny + 1} {nx + 1}"/>',
        '   <Geometry GeometryType="VXVYVZ">',
    ]
    for a, n in enumerate((nx, ny, nz)):  # x?f are (nblock, n + 1): take block 0's row
        lines += [
            f'    <DataItem ItemType="HyperSlab" Dimensions="{n + 1}">',
            f'     <DataItem Dimensions="3 2" NumberType="Int"> 0 0 1 1 1 {n + 1} </DataItem>',
            f'     <DataItem Dimensions="1 {n + 1}" Format="HDF"> {item}:/x{a + 1}f </DataItem>',
            "    </DataItem>",
        ]
    lines.append("   </Geometry>")
    for dname, names in (("prim", prim), ("B", bvars)):
        for i, name in enumerate(names):
            lines += [
                f'   <Attribute Name="{name}" Center="Cell">',
                f'    <DataItem ItemType="HyperSlab" Dimensions="{nz} {ny} {nx}">',
                f'     <DataItem Dimensions="3 5" NumberType="Int"> {i} 0 0 0 0 1 1 1 1 1 '
                f'1 1 {nz} {ny} {nx} </DataItem>',
                f'     <DataItem Dimensions="{len(names)} 1 {nz} {ny} {nx}" Format="HDF"> '
                f'{item}:/{dname} </DataItem>',
                "    </DataItem>",
                "   </Attribute>",
            ]
    lines += ["  </Grid>", "</Grid>", "</Domain>", "</Xdmf>", ""]
    with atomic_output(xdmf) as tmp:
        tmp.write_text("\n".join(lines))
    return athdf, xdmf
