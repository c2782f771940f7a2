"""Canonical snapshot: round trip with units and attrs, memory-mapped reads, refused inputs."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import xarray as xr

from conftest import make_fields
from cosmicflow.io import InputError
from cosmicflow.snapshot import FIELDS, read_snapshot, snapshot_writer, write_snapshot


def test_round_trip_values_units_attrs(tmp_path):
    fields = make_fields((8, 6, 4))
    path = write_snapshot(tmp_path / "s.h5", fields, (100.0, 75.0, 50.0), origin_pc=-50.0,
                          attrs={"source": "unit test", "config": {"seed": 3}})
    snap = read_snapshot(path)
    for k in FIELDS:
        np.testing.assert_array_equal(snap[k], fields[k])
    np.testing.assert_allclose(snap.box_pc, [100.0, 75.0, 50.0])
    np.testing.assert_allclose(snap.cell_pc, [12.5, 12.5, 12.5])
    # cell centres, not corners: first centre half a cell above the origin
    np.testing.assert_allclose(snap.coordinate(0)[:2], [-43.75, -31.25])
    assert snap.attrs["source"] == "unit test"
    assert json.loads(snap.attrs["config"]) == {"seed": 3}

    ds = xr.open_dataset(path, engine="h5netcdf")
    assert ds["density"].attrs["units"] == "cm^-3"
    assert ds["temperature"].attrs["units"] == "K"
    assert ds["bx"].attrs["units"] == "uG"
    assert ds["vz"].attrs["units"] == "km/s"
    assert ds["x"].attrs["units"] == "pc"
    assert ds["density"].dims == ("x", "y", "z")
    np.testing.assert_allclose(ds["y"].values, snap.coordinate(1))
    np.testing.assert_array_equal(ds["bz"].values, fields["bz"])
    ds.close()


def test_mean_field_is_float64_volume_average(tmp_path):
    fields = make_fields((8, 8, 8), b0=(0.5, -1.0, 3.0))
    snap = read_snapshot(write_snapshot(tmp_path / "s.h5", fields, 10.0))
    expected = [fields[c].astype(np.float64).mean() for c in ("bx", "by", "bz")]
    np.testing.assert_allclose(snap.mean_field_ug(), expected, rtol=1e-12)
    # stored by the writer, so jobs can be sized without scanning the field: same bits as a scan
    stored = snap.mean_field_ug()
    del snap.attrs["mean_field_uG"]
    np.testing.assert_array_equal(stored, snap.mean_field_ug())


def test_fields_are_memory_mapped_not_copied(tmp_path):
    path = write_snapshot(tmp_path / "s.h5", make_fields((16, 8, 8)), 10.0)
    snap = read_snapshot(path)
    for k in FIELDS:
        a = snap[k]
        assert isinstance(a, np.memmap), k
        assert a.dtype == np.float32 and a.flags["C_CONTIGUOUS"]
        assert not a.flags["WRITEABLE"]
        assert a.filename is not None and str(a.filename).endswith("s.h5")
    # the mapped bytes are the dataset's bytes in the file
    with h5py.File(path) as h5:
        off = h5["bx"].id.get_offset()
        assert h5["bx"].chunks is None
    raw = np.fromfile(path, dtype="<f4", count=16 * 8 * 8, offset=off).reshape(16, 8, 8)
    np.testing.assert_array_equal(raw, snap["bx"])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda f: f.pop("bz"), "missing variable(s) bz"),
        (lambda f: f.__setitem__("vx", f["vx"][:-1]), "mismatched shapes"),
        (lambda f: f["by"].__setitem__((1, 2, 3), np.nan), "'by' has non-finite values"),
        (lambda f: f["vy"].__setitem__((0, 0, 0), np.inf), "'vy' has non-finite values"),
        (lambda f: f["density"].__setitem__((3, 1, 2), -2.0), "'density' must be > 0"),
        (lambda f: f["temperature"].__setitem__((2, 2, 2), 0.0), "'temperature' must be > 0"),
    ],
)
def test_bad_fields_refused_with_named_problem(tmp_path, mutate, message):
    fields = make_fields()
    mutate(fields)
    out = tmp_path / "bad.h5"
    with pytest.raises(InputError, match=None) as err:
        write_snapshot(out, fields, 10.0)
    assert message in str(err.value)
    assert str(out) in str(err.value)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def _corrupt(path, how):
    if how == "drop_variable":
        with h5py.File(path, "a") as h5:
            del h5["temperature"]
    elif how == "nan":
        with h5py.File(path, "a") as h5:
            h5["bx"][2, 1, 0] = np.nan
    elif how == "negative_temperature":
        with h5py.File(path, "a") as h5:
            h5["temperature"][0, 0, 1] = -5.0
    elif how == "reshape":
        with h5py.File(path, "a") as h5:
            del h5["vz"]
            h5.create_dataset("vz", data=np.ones((8, 6, 3), "f4"))
    elif how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"this is not an HDF5 file" * 100)
    elif how == "chunked":
        with h5py.File(path, "a") as h5:
            d = h5["bx"][...]
            del h5["bx"]
            h5.create_dataset("bx", data=d, chunks=(4, 3, 2), compression="gzip")


@pytest.mark.parametrize(
    "how, message",
    [
        ("drop_variable", "missing variable(s) temperature"),
        ("nan", "'bx' has non-finite values"),
        ("negative_temperature", "'temperature' must be > 0"),
        ("reshape", "mismatched shapes"),
        ("truncate", "s.h5"),
        ("garbage", "not a readable HDF5 file"),
        ("chunked", "chunked or compressed"),
    ],
)
def test_bad_snapshot_files_refused(tmp_path, how, message):
    path = write_snapshot(tmp_path / "s.h5", make_fields(), 10.0)
    _corrupt(path, how)
    with pytest.raises(InputError) as err:
        read_snapshot(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_streaming_writer_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "s.h5"
    fields = make_fields((4, 4, 4))
    with pytest.raises(RuntimeError):
        with snapshot_writer(out, (4, 4, 4), 10.0) as w:
            w["density"][0:2] = fields["density"][0:2]
            raise RuntimeError("ingest died half-way")
    assert list(tmp_path.iterdir()) == []
    # a writer that forgets a field (left at the fill value 0 or NaN) is refused as well
    with pytest.raises(InputError):
        with snapshot_writer(out, (4, 4, 4), 10.0) as w:
            for k in FIELDS:
                if k != "temperature":
                    w[k] = fields[k]
    assert list(tmp_path.iterdir()) == []


def test_streaming_writer_slabs(tmp_path):
    fields = make_fields((8, 4, 4))
    with snapshot_writer(tmp_path / "s.h5", (8, 4, 4), 10.0) as w:
        for k in FIELDS:
            for i in range(0, 8, 3):
                w[k][i : i + 3] = fields[k][i : i + 3]
    snap = read_snapshot(tmp_path / "s.h5")
    for k in FIELDS:
        np.testing.assert_array_equal(snap[k], fields[k])
