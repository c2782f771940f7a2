"""Shared fixtures: paths to the real AthenaK outputs and small canonical snapshots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cosmicflow.snapshot import FIELDS

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "athenak"


@pytest.fixture(scope="session")
def athenak_data() -> Path:
    """Folder of real AthenaK outputs (../shared/data/athenak); skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real AthenaK test data not found at {SHARED_DATA} (CI always has it)")
    return SHARED_DATA


def make_fields(shape=(8, 6, 4), seed=0, b0=(0.0, 0.0, 3.0)) -> dict[str, np.ndarray]:
    """Random but valid canonical fields (float32, positive density/temperature)."""
    rng = np.random.default_rng(seed)
    f = {k: rng.normal(size=shape).astype(np.float32) for k in FIELDS}
    f["density"] = np.exp(f["density"]).astype(np.float32)
    f["temperature"] = (1000.0 * np.exp(f["temperature"])).astype(np.float32)
    for c, b in zip(("bx", "by", "bz"), b0):
        f[c] = (f[c] + b).astype(np.float32)
    return f
