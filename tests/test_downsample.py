"""Downsampling keeps mass, mean field, momentum and thermal energy exactly."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_fields
from cosmicflow.downsample import downsample_fields, downsample_snapshot
from cosmicflow.io import InputError
from cosmicflow.snapshot import read_snapshot, write_snapshot


def test_block_average_conserves_box_totals(tmp_path):
    fields = make_fields((8, 12, 4), seed=3, b0=(0.7, -0.2, 3.0))
    src = write_snapshot(tmp_path / "fine.h5", fields, (80.0, 120.0, 40.0), origin_pc=-10.0)
    out = downsample_snapshot(src, tmp_path / "coarse.h5", 2)
    fine, coarse = read_snapshot(src), read_snapshot(out)
    assert coarse.shape == (4, 6, 2)
    np.testing.assert_allclose(coarse.box_pc, fine.box_pc)
    np.testing.assert_allclose(coarse.cell_pc, 2 * fine.cell_pc)
    np.testing.assert_allclose(coarse.coordinate(0), fine.coordinate(0).reshape(-1, 2).mean(1))
    # mean field exact (to float32 rounding of the stored values)
    np.testing.assert_allclose(coarse.mean_field_ug(), fine.mean_field_ug(), rtol=1e-6)
    n_f = np.asarray(fine["density"], np.float64)
    n_c = np.asarray(coarse["density"], np.float64)
    assert n_c.mean() == pytest.approx(n_f.mean(), rel=1e-6)  # mass
    for c in ("vx", "vy", "vz", "temperature"):  # momentum, n T (pressure)
        assert (n_c * coarse[c]).mean() == pytest.approx((n_f * fine[c]).mean(), rel=1e-5)
    # one explicit block by hand
    blk = (slice(2, 4), slice(4, 6), slice(0, 2))
    assert coarse["bx"][1, 2, 0] == pytest.approx(fields["bx"][blk].astype(np.float64).mean(), rel=1e-6)
    t = (fields["density"][blk] * fields["temperature"][blk]).sum() / fields["density"][blk].sum()
    assert coarse["temperature"][1, 2, 0] == pytest.approx(t, rel=1e-5)
    assert coarse.attrs["downsample_factor"] == 2


def test_factor_one_is_identity():
    fields = make_fields((4, 4, 4))
    out = downsample_fields(fields, 1)
    for k in fields:
        np.testing.assert_allclose(out[k], fields[k], rtol=1e-6)


def test_indivisible_grid_refused(tmp_path):
    src = write_snapshot(tmp_path / "fine.h5", make_fields((6, 6, 6)), 10.0)
    with pytest.raises(InputError, match="not divisible by the downsample factor 4"):
        downsample_snapshot(src, tmp_path / "coarse.h5", 4)
    assert not (tmp_path / "coarse.h5").exists()
