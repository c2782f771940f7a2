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
