"""Build one medium's canonical snapshot from its config entry (the `snapshot` stage)."""

from __future__ import annotations

import inspect
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cosmicflow.downsample import downsample_snapshot
from cosmicflow.io import InputError, atomic_output, provenance_attrs
from cosmicflow.snapshot import read_snapshot, write_snapshot

log = logging.getLogger(__name__)

SYNTHETIC_SOURCES = ("multiphase", "kolmogorov", "slab")


def _call_with_params(func, name: str, params: Mapping[str, Any], **fixed):
    """Call a generator, turning unknown or mistyped parameters into a readable error."""
    sig = inspect.signature(func)
    accepted = [p for p in sig.parameters if p not in fixed]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"medium {name!r}: unknown parameter(s) {unknown} for source "
            f"{func.__name__!r}; accepted: {accepted}"
        )
    return func(**fixed, **params)


def build_medium(name: str, medium: Mapping[str, Any], output: str | Path) -> Path:
    """Write ``output`` (a canonical snapshot) for the medium described by ``medium``.

    ``medium`` is one entry of ``config["media"]`` after schema validation: ``source`` plus
    ``grid``, ``box_pc``, ``seed``, ``params`` (synthetic), or ``path``, ``units``,
    ``variables`` (files); ``downsample`` > 1 block-averages the result
    (:mod:`cosmicflow.downsample`) through a temporary full-resolution file.
    """
    factor = int(medium.get("downsample", 1))
    if factor == 1:
        return _build_full(name, medium, output)
    output = Path(output)
    full = output.with_name(f".{output.name}.full-resolution.h5")
    try:
        _build_full(name, medium, full)
        log.info("downsampling %r by %d per axis", name, factor)
        return downsample_snapshot(full, output, factor)
    finally:
        full.unlink(missing_ok=True)


def _build_full(name: str, medium: Mapping[str, Any], output: str | Path) -> Path:
    source = medium["source"]
    config = {"medium": name, **dict(medium)}
    if source in SYNTHETIC_SOURCES:
        from cosmicflow import synthetic

        generator = getattr(synthetic, source)
        log.info("generating %s medium %r: %s^3 cells over %s pc", source, name,
                 medium.get("grid", 128), medium.get("box_pc", 100.0))
        fields, attrs = _call_with_params(
            generator,
            name,
            medium.get("params", {}),
            grid=int(medium.get("grid", 128)),
            box_pc=float(medium.get("box_pc", 100.0)),
            seed=int(medium.get("seed", 0)),
        )
        attrs = {**attrs, **provenance_attrs(f"cosmicflow.synthetic.{source}", config)}
        return write_snapshot(output, fields, float(medium.get("box_pc", 100.0)), attrs=attrs)
    if source == "athenak":
        from cosmicflow.athenak import athenak_to_snapshot

        return athenak_to_snapshot(
            medium["path"],
            output,
            units=medium.get("units", {}),
            variables=medium.get("variables", {}),
            config=config,
        )
    if source == "snapshot":
        src = Path(medium["path"])
        read_snapshot(src, validate=True)  # refuses a bad file with a message naming it
        with atomic_output(output) as tmp:
            shutil.copyfile(src, tmp)
        return Path(output)
    raise InputError(f"medium {name!r}: unknown source {source!r}")
