"""cosmicflow.io.load_netcdf: the fast reader returns what xarray's h5netcdf engine returns."""

import numpy as np
import pytest
import xarray as xr

from cosmicflow.io import InputError, load_netcdf


def _dataset() -> xr.Dataset:
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 1.0, 7)
    ds = xr.Dataset(
        {
            "d": (("time", "phase"), rng.normal(size=(7, 3)), {"units": "cm^2 s^-1", "long_name": "x"}),
            "interval": (("phase", "bound"), rng.normal(size=(3, 2))),
            "with_nan": ("time", np.where(t > 0.5, np.nan, t)),
            "flag": ((), np.int64(1)),
            "counts": (("eps_bin",), np.arange(5, dtype=np.int64)),  # dim without coordinate
            "labels": ("phase", np.array(["CNM", "UNM", "WNM"], dtype=object)),
        },
        coords={"time": ("time", t, {"units": "s"}), "phase": ["CNM", "UNM", "WNM"],
                "bound": ["lower", "upper"],
                "t_gyro": ("time", 3 * t, {"long_name": "non-dimension coordinate"})},
        attrs={"medium": "multiphase", "energy_PeV": 2.5, "sources": ["seed=11", "seed=12"],
               "one": ["only"], "vec": np.array([0.0, 0.0, 1.0]), "n": 3, "scalar_array": np.array([1.5])},
    )
    return ds


def test_load_netcdf_is_identical_to_h5netcdf(tmp_path):
    p = tmp_path / "r.nc"
    _dataset().to_netcdf(p, engine="h5netcdf")
    want = xr.load_dataset(p, engine="h5netcdf")
    got = load_netcdf(p)
    xr.testing.assert_identical(got, want)
    assert got["labels"].values.tolist() == ["CNM", "UNM", "WNM"]
    assert "t_gyro" in got.coords and np.isnan(got["with_nan"].values[-1])


def test_load_netcdf_names_a_bad_file(tmp_path):
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="bad.nc"):
        load_netcdf(bad)
