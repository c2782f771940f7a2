"""Small I/O helpers shared by every stage: atomic outputs and provenance attributes."""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import gc
import glob
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np


class InputError(ValueError):
    """Bad input data: the message names the file and what is wrong with it."""


class OutputError(OSError):
    """An output cannot be written (full disk, unwritable or read-only folder): the message
    names the path and the cause in one line."""


#: errno values that mean "this output cannot be written here" rather than a bug
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}
#: free space kept in reserve beyond a write's expected size [bytes]
FREE_SPACE_MARGIN_BYTES = 16 * 2**20


def _write_cause(err: BaseException) -> str | None:
    """A short cause if ``err`` is a failed write (HDF5 wraps the OS errno in its message)."""
    text = str(err)
    code = getattr(err, "errno", None)
    if code is None:
        m = re.search(r"errno = (\d+)", text)
        code = int(m.group(1)) if m else None
    if code in _WRITE_ERRNOS:
        return os.strerror(code).lower()
    if "No space left on device" in text:
        return "no space left on device"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_mb(folder: Path) -> str:
    with contextlib.suppress(OSError):
        return f"{shutil.disk_usage(folder).free / 2**20:.0f} MB free"
    return "free space unknown"


def _remove_stale_temporaries(final: Path) -> None:
    """Delete ``.<name>.<pid>.tmp`` files of this output whose writing process is gone (a hard
    kill or a crash skipped their cleanup)."""
    prefix = f".{final.name}."
    for stale in final.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = stale.name[len(prefix):-len(".tmp")]
        if pid.isdigit() and (int(pid) == os.getpid() or not _pid_alive(int(pid))):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, expected_bytes: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only on success.

    A crash or an exception inside the block removes the temporary file, so a failed stage
    never leaves a half-written output that a later run could mistake for a finished one;
    temporaries of the same output left by a killed process are removed first. With
    ``expected_bytes`` the free space of the output's file system is checked before any
    write. A full disk, a read-only or unwritable folder raises :class:`OutputError` with one
    line naming the path and the cause.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{final}: cannot create the output folder {final.parent} "
                          f"({err.strerror.lower() if err.strerror else err})") from None
    _remove_stale_temporaries(final)
    if expected_bytes is not None:
        free = shutil.disk_usage(final.parent).free
        if free < int(expected_bytes) + FREE_SPACE_MARGIN_BYTES:
            raise OutputError(f"{final}: needs about {int(expected_bytes) / 2**20:.0f} MB but "
                              f"the file system has {free / 2**20:.0f} MB free")
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException as err:
        # close what the failed writer left open before deleting its file, without the
        # "Exception ignored" pages that objects finalised on a full disk print
        hook, sys.unraisablehook = sys.unraisablehook, lambda _: None
        try:
            gc.collect()
        finally:
            sys.unraisablehook = hook
        with contextlib.suppress(OSError):  # never created (read-only folder) or already gone
            tmp.unlink()
        cause = None if isinstance(err, OutputError) else _write_cause(err)
        if cause is not None:
            raise OutputError(f"{final}: cannot write ({cause}; {_free_mb(final.parent)})") from None
        raise


def one_line_errors() -> None:
    """Report bad input and unwritable outputs (:class:`InputError`, :class:`OutputError`,
    ``MemoryError`` with a message) as one line on stderr and exit 1; other errors keep their
    traceback. Workflow scripts call this once, after pointing stderr at their log."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        if issubclass(kind, (InputError, OutputError)) or (issubclass(kind, MemoryError) and str(value)):
            print(f"{kind.__name__}: {value}", file=sys.stderr, flush=True)
        else:
            previous(kind, value, tb)

    sys.excepthook = hook


def package_version() -> str:
    from cosmicflow import __version__

    return __version__


def provenance_attrs(source: str, config: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Global attributes every cosmicflow output carries: what made it, from what, when."""
    return {
        "source": str(source),
        "config": json.dumps(config if config is not None else {}, sort_keys=True, default=str),
        "cosmicflow_version": package_version(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


#: HDF5 attributes of the netCDF-4 / dimension-scale machinery, not netCDF attributes
_NETCDF4_INTERNAL_ATTRS = frozenset({"CLASS", "NAME", "REFERENCE_LIST", "DIMENSION_LIST",
                                     "_Netcdf4Dimid", "_Netcdf4Coordinates", "_nc3_strict",
                                     "_NCProperties"})
_PHONY_DIMENSION = b"This is a netCDF dimension but not a netCDF variable"


def _netcdf_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OS":
        value = [v.decode() if isinstance(v, bytes) else v for v in value.ravel()]
        return value[0] if len(value) == 1 else value
    if isinstance(value, np.ndarray) and value.shape == (1,):
        return value[0]  # netCDF has no 1-element array attributes: h5netcdf gives scalars
    return value


def _netcdf_attrs(attrs: Any) -> dict[str, Any]:
    return {k: _netcdf_attr(v) for k, v in attrs.items() if k not in _NETCDF4_INTERNAL_ATTRS}


def load_netcdf(path: str | os.PathLike):
    """A flat netCDF-4 file (as cosmicflow writes with h5netcdf) loaded into memory as an
    :class:`xarray.Dataset`, identical to ``xr.load_dataset(path, engine="h5netcdf")``.

    Reads the HDF5 datasets directly and resolves each variable's dimensions from its
    dimension-scale references, then applies xarray's CF decoding: ~30× faster than h5netcdf,
    which resolves every reference of every variable through several h5py lookups (1 s for a
    113-variable transport result). Files with groups fall back to h5netcdf. Raises
    :class:`InputError` naming the file if it cannot be read.
    """
    import h5py
    import xarray as xr

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not a readable netCDF-4/HDF5 file ({err})") from None
    with f:
        if any(isinstance(obj, h5py.Group) for obj in f.values()):
            return xr.load_dataset(path, engine="h5netcdf")
        sizes: dict[str, int] = {}
        variables: dict[str, Any] = {}
        for name, obj in f.items():
            attrs = obj.attrs
            if attrs.get("CLASS") == b"DIMENSION_SCALE":
                sizes[name] = obj.shape[0]
                if bytes(attrs.get("NAME", b"")).startswith(_PHONY_DIMENSION):
                    continue
                dims = (name,)
            elif "DIMENSION_LIST" in attrs:
                dims = tuple(h5py.h5r.get_name(refs[0], f.id).decode().lstrip("/")
                             for refs in attrs["DIMENSION_LIST"])
            else:
                dims = ()
            data = obj.asstr()[()] if h5py.check_string_dtype(obj.dtype) else obj[()]
            variables[name] = xr.Variable(dims, data, _netcdf_attrs(attrs))
        raw = xr.Dataset(variables, attrs=_netcdf_attrs(f.attrs))
    ds = xr.decode_cf(raw)
    return ds.set_coords([n for n in ds.data_vars if n in sizes])
