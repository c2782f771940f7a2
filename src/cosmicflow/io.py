"""Small I/O helpers shared by every stage: atomic outputs and provenance attributes."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """Bad input data: the message names the file and what is wrong with it."""


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only on success.

    A crash or an exception inside the block removes the temporary file, so a failed stage
    never leaves a half-written output that a later run could mistake for a finished one.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


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
