"""The canonical snapshot: one static MHD state in physical units, on a uniform periodic grid.

Every medium (synthetic or AthenaK) becomes one of these before any analysis. The file is
HDF5 laid out as netCDF-4, so ``xarray.open_dataset(path, engine="h5netcdf")`` opens it:

===============  ==========  ============================================================
variable         units       meaning
===============  ==========  ============================================================
``density``      cm^-3       gas number density n (hydrogen nuclei for AthenaK media)
``temperature``  K           gas temperature, P = n k_B T
``bx by bz``     uG          cell-centred magnetic field
``vx vy vz``     km s^-1     gas velocity
``x y z``        pc          cell-centre coordinates (uniform spacing, periodic box)
===============  ==========  ============================================================

Field datasets are stored contiguous, little-endian float32, unfiltered, so a kernel can
memory-map them (:func:`read_snapshot`) without a copy. Array index order is ``[ix, iy, iz]``
(z fastest). Global attributes carry the box, the unit conventions and provenance.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5netcdf
import h5py
import numpy as np

from cosmicflow.io import InputError, atomic_output

#: name -> (units, long_name) of every field a canonical snapshot must hold
FIELDS: dict[str, tuple[str, str]] = {
    "density": ("cm^-3", "gas number density"),
    "temperature": ("K", "gas temperature"),
    "bx": ("uG", "magnetic field, x component"),
    "by": ("uG", "magnetic field, y component"),
    "bz": ("uG", "magnetic field, z component"),
    "vx": ("km/s", "gas velocity, x component"),
    "vy": ("km/s", "gas velocity, y component"),
    "vz": ("km/s", "gas velocity, z component"),
}
POSITIVE_FIELDS = ("density", "temperature")
DIMS = ("x", "y", "z")
#: elements scanned at once when checking a field, to keep memory bounded on big grids
_SCAN_ELEMENTS = 1 << 24

#: defaults written when a medium does not say otherwise (neutral atomic ISM with He)
DEFAULT_MEAN_MOLECULAR_WEIGHT = 1.4
DEFAULT_ADIABATIC_INDEX = 5.0 / 3.0


@dataclass
class Snapshot:
    """A canonical snapshot opened for reading; field arrays are read-only memory maps.

    Attributes
    ----------
    path : Path
    fields : dict of str -> np.ndarray
        ``density`` [cm^-3], ``temperature`` [K], ``bx, by, bz`` [uG], ``vx, vy, vz`` [km/s],
        each float32 of shape ``shape``, indexed ``[ix, iy, iz]``.
    origin_pc : (3,) float64
        Lower corner of the periodic box [pc].
    box_pc : (3,) float64
        Box edge lengths [pc].
    attrs : dict
        Global attributes (provenance, mean molecular weight, adiabatic index, ...).
    """

    path: Path
    fields: dict[str, np.ndarray]
    origin_pc: np.ndarray
    box_pc: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.fields[name]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.fields["density"].shape)  # type: ignore[return-value]

    @property
    def cell_pc(self) -> np.ndarray:
        """Cell edge lengths [pc]."""
        return self.box_pc / np.asarray(self.shape, dtype=np.float64)

    def coordinate(self, axis: int) -> np.ndarray:
        """Cell-centre coordinates along ``axis`` [pc]."""
        n = self.shape[axis]
        return self.origin_pc[axis] + (np.arange(n) + 0.5) * self.box_pc[axis] / n

    @property
    def mean_molecular_weight(self) -> float:
        return float(self.attrs.get("mean_molecular_weight", DEFAULT_MEAN_MOLECULAR_WEIGHT))

    @property
    def adiabatic_index(self) -> float:
        return float(self.attrs.get("adiabatic_index", DEFAULT_ADIABATIC_INDEX))

    def mean_field_ug(self) -> np.ndarray:
        """Volume-averaged field <B> = (<bx>, <by>, <bz>) [uG], accumulated in float64.

        Taken from the ``mean_field_uG`` attribute the writer computes (the same slab sums, so
        the same bits) when present; snapshots made elsewhere are scanned.
        """
        stored = np.asarray(self.attrs.get("mean_field_uG", np.nan), dtype=np.float64)
        if stored.shape == (3,) and np.all(np.isfinite(stored)):
            return stored
        return np.array([_chunked_mean(self.fields[c]) for c in ("bx", "by", "bz")])


def _slabs(n0: int, plane: int) -> Iterator[slice]:
    step = max(1, _SCAN_ELEMENTS // max(plane, 1))
    for i in range(0, n0, step):
        yield slice(i, min(n0, i + step))


def _chunked_mean(a: np.ndarray) -> float:
    plane = int(np.prod(a.shape[1:]))
    total = 0.0
    for s in _slabs(a.shape[0], plane):
        total += float(np.sum(a[s], dtype=np.float64))
    return total / a.size


def _global_index(idx: np.ndarray, slab: slice) -> tuple[int, ...]:
    return (int(idx[0]) + slab.start, *(int(i) for i in idx[1:]))


def check_fields(fields: Mapping[str, np.ndarray], where: str) -> tuple[int, int, int]:
    """Check a set of snapshot fields; raise :class:`InputError` naming ``where`` and the problem.

    Checks: every variable of :data:`FIELDS` present, all 3-D with one shape, all values
    finite, density and temperature strictly positive. Scans in slabs so a memory-mapped
    2048^3 field is never loaded whole. Returns the common shape.
    """
    missing = [k for k in FIELDS if k not in fields]
    if missing:
        raise InputError(f"{where}: missing variable(s) {', '.join(missing)}")
    shapes = {k: tuple(np.shape(fields[k])) for k in FIELDS}
    shape = shapes["density"]
    if len(shape) != 3:
        raise InputError(f"{where}: fields must be 3-D (x, y, z); density has shape {shape}")
    bad = {k: s for k, s in shapes.items() if s != shape}
    if bad:
        raise InputError(f"{where}: mismatched shapes: density {shape} but {bad}")
    plane = shape[1] * shape[2]
    for name in FIELDS:
        a = fields[name]
        for s in _slabs(shape[0], plane):
            block = np.asarray(a[s])
            if not np.all(np.isfinite(block)):
                idx = np.argwhere(~np.isfinite(block))[0]
                raise InputError(
                    f"{where}: variable {name!r} has non-finite values (first: "
                    f"{block[tuple(idx)]} at index {_global_index(idx, s)})"
                )
            if name in POSITIVE_FIELDS and np.any(block <= 0):
                idx = np.argwhere(block <= 0)[0]
                raise InputError(
                    f"{where}: variable {name!r} must be > 0 but is {block[tuple(idx)]:g} "
                    f"at index {_global_index(idx, s)}"
                )
    return shape  # type: ignore[return-value]


@dataclass
class SnapshotWriter:
    """Open netCDF-4 file with every field created (contiguous float32), for slab-wise filling.

    Use through :func:`snapshot_writer`; assign ``writer["density"][i0:i1] = block``.
    """

    file: h5netcdf.File

    def __getitem__(self, name: str):
        return self.file.variables[name]

    def __setitem__(self, name: str, value: np.ndarray) -> None:
        self.file.variables[name][...] = np.asarray(value, dtype="<f4")


def _attr_value(v: Any) -> Any:
    if isinstance(v, (dict, list, tuple)) and not (
        isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v)
    ):
        return json.dumps(v, sort_keys=True, default=str)
    if v is None:
        return "none"
    return v


@contextlib.contextmanager
def snapshot_writer(
    path: str | Path,
    shape: tuple[int, int, int],
    box_pc: float | tuple[float, float, float],
    origin_pc: float | tuple[float, float, float] = 0.0,
    attrs: Mapping[str, Any] | None = None,
) -> Iterator[SnapshotWriter]:
    """Create a canonical snapshot to be filled slab by slab (for streaming ingest).

    The file appears at ``path`` only when the block exits cleanly and the filled fields
    pass :func:`check_fields`; otherwise nothing is left behind.

    >>> with snapshot_writer("snap.h5", (nx, ny, nz), 100.0, attrs=prov) as w:  # doctest: +SKIP
    ...     w["density"][0:16] = slab
    """
    path = Path(path)
    shape = tuple(int(n) for n in shape)
    box = np.broadcast_to(np.asarray(box_pc, dtype=np.float64), (3,)).copy()
    origin = np.broadcast_to(np.asarray(origin_pc, dtype=np.float64), (3,)).copy()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"snapshot shape must be three positive integers, got {shape}")
    if np.any(box <= 0) or not np.all(np.isfinite(box)):
        raise ValueError(f"box size must be positive and finite [pc], got {box_pc}")
    global_attrs = {
        "conventions": "cosmicflow canonical snapshot v1",
        "box_size_pc": box,
        "origin_pc": origin,
        "cell_size_pc": box / np.asarray(shape),
        "boundary": "periodic",
        "index_order": "[ix, iy, iz], z fastest",
        "units": {k: u for k, (u, _) in FIELDS.items()} | {"x, y, z": "pc"},
        "mean_molecular_weight": DEFAULT_MEAN_MOLECULAR_WEIGHT,
        "adiabatic_index": DEFAULT_ADIABATIC_INDEX,
    }
    global_attrs.update(attrs or {})
    # free space for the fields, checked before the first byte is written
    with atomic_output(path, expected_bytes=math.prod(shape) * 4 * len(FIELDS)) as tmp:
        with h5netcdf.File(tmp, "w") as f:
            f.dimensions = dict(zip(DIMS, shape))
            for axis, dim in enumerate(DIMS):
                v = f.create_variable(dim, (dim,), "f8")
                v[:] = origin[axis] + (np.arange(shape[axis]) + 0.5) * box[axis] / shape[axis]
                v.attrs["units"] = "pc"
                v.attrs["long_name"] = f"cell-centre {dim} coordinate"
            for name, (units, long_name) in FIELDS.items():
                v = f.create_variable(name, DIMS, "<f4")
                v.attrs["units"] = units
                v.attrs["long_name"] = long_name
            for k, v in global_attrs.items():
                f.attrs[k] = _attr_value(v)
            yield SnapshotWriter(f)
        try:
            # read back through h5py slabs, not a memory map: mapped pages would count
            # against the writer's resident memory for the whole file
            with h5py.File(tmp, "r") as h5:
                check_fields({k: h5[k] for k in FIELDS}, where=str(tmp))
                mean_field = [_chunked_mean(h5[c]) for c in ("bx", "by", "bz")]
        except InputError as err:
            # a writer that filled the file badly must not leave it behind either
            raise InputError(str(err).replace(str(tmp), str(path))) from None
        # <B> once, at write time, so a workflow can size jobs without scanning the field
        with h5py.File(tmp, "a") as h5:
            h5.attrs["mean_field_uG"] = np.asarray(mean_field, dtype=np.float64)


def write_snapshot(
    path: str | Path,
    fields: Mapping[str, np.ndarray],
    box_pc: float | tuple[float, float, float],
    origin_pc: float | tuple[float, float, float] = 0.0,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write in-memory fields (see :data:`FIELDS` for names and units) as a canonical snapshot.

    The fields are checked first (:func:`check_fields`); a bad field raises before anything is
    written.
    """
    shape = check_fields(fields, where=f"snapshot for {path}")
    with snapshot_writer(path, shape, box_pc, origin_pc, attrs) as w:
        for name in FIELDS:
            w[name] = fields[name]
    return Path(path)


def _memmap_dataset(path: Path, dset: h5py.Dataset) -> np.ndarray:
    """Memory-map an HDF5 dataset when its layout allows it, else raise InputError."""
    if dset.dtype != np.dtype("<f4"):
        raise InputError(f"{path}: variable {dset.name.lstrip('/')!r} is {dset.dtype}, not float32")
    offset = dset.id.get_offset()
    if dset.chunks is not None or offset is None or dset.compression is not None:
        raise InputError(
            f"{path}: variable {dset.name.lstrip('/')!r} is chunked or compressed; the canonical "
            "snapshot stores fields contiguous so they can be memory-mapped (rewrite it with "
            "cosmicflow.snapshot.write_snapshot)"
        )
    return np.memmap(path, dtype="<f4", mode="r", offset=offset, shape=dset.shape)


def _decode_attr(v: Any) -> Any:
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.item()  # netCDF stores scalar attributes as 1-element arrays
    if isinstance(v, np.generic):
        v = v.item()
    return v


def read_snapshot(path: str | Path, validate: bool = True) -> Snapshot:
    """Open a canonical snapshot; fields come back as read-only memory maps (no copy).

    Parameters
    ----------
    path : path to ``snapshot.h5``
    validate : when True (default) scan every field with :func:`check_fields` (missing
        variables, mismatched shapes, non-finite values, non-positive density/temperature)
        and raise :class:`InputError` naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: snapshot file does not exist")
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not a readable HDF5 file ({err})") from None
    with h5:
        missing = [k for k in FIELDS if k not in h5]
        if missing:
            raise InputError(f"{path}: missing variable(s) {', '.join(missing)}")
        shapes = {k: h5[k].shape for k in FIELDS}
        if len(set(shapes.values())) != 1:
            raise InputError(f"{path}: mismatched shapes {shapes}")
        attrs = {k: _decode_attr(v) for k, v in h5.attrs.items()}
        try:
            fields = {k: _memmap_dataset(path, h5[k]) for k in FIELDS}
        except ValueError as err:  # memmap past the end of a truncated file
            raise InputError(f"{path}: truncated or corrupt file ({err})") from None
    shape = fields["density"].shape
    if len(shape) != 3:
        raise InputError(f"{path}: fields must be 3-D, density has shape {shape}")
    box = np.asarray(attrs.get("box_size_pc", np.nan), dtype=np.float64) * np.ones(3)
    origin = np.asarray(attrs.get("origin_pc", 0.0), dtype=np.float64) * np.ones(3)
    if not np.all(np.isfinite(box)) or np.any(box <= 0):
        raise InputError(f"{path}: attribute box_size_pc missing or not positive ({box})")
    if validate:
        check_fields(fields, where=str(path))
    return Snapshot(path=path, fields=fields, origin_pc=origin, box_pc=box, attrs=attrs)
