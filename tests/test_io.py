"""atomic_output: a full disk or an unwritable folder fails with one line naming the path and
the cause and leaves nothing behind; stale temporaries of an output are cleaned up."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from cosmicflow.io import OutputError, atomic_output
from cosmicflow.snapshot import write_snapshot
from conftest import make_fields

REPO = Path(__file__).resolve().parents[1]


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MiB file system (tmpfs), or skip where the machine does not allow mounting."""
    where = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    if not _mount_tmpfs(where, "size=2m"):
        pytest.skip("cannot mount a tmpfs here (needs root); test_patched_writer covers the logic")
    yield where
    subprocess.run(["umount", str(where)], check=False)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_snapshot_into_a_full_file_system_fails_before_writing(small_fs):
    with pytest.raises(OutputError) as err:
        write_snapshot(small_fs / "snap.h5", make_fields((64, 64, 64)), 100.0)  # 8 MiB of fields
    msg = str(err.value)
    assert "\n" not in msg and str(small_fs / "snap.h5") in msg and "MB free" in msg
    assert _leftovers(small_fs) == []


def test_netcdf_write_that_fills_the_disk_fails_with_one_line(small_fs, capfd):
    ds = xr.Dataset({"a": (("x",), np.random.default_rng(0).random(1_000_000))})  # 8 MB
    with pytest.raises(OutputError) as err:
        with atomic_output(small_fs / "big.nc") as tmp:
            ds.to_netcdf(tmp, engine="h5netcdf")
    msg = str(err.value)
    assert msg.startswith(str(small_fs / "big.nc")) and "no space left on device" in msg
    assert "\n" not in msg
    assert _leftovers(small_fs) == []  # no hidden .big.nc.<pid>.tmp
    assert "Exception ignored" not in capfd.readouterr().err


def test_read_only_folder_fails_with_one_line(tmp_path):
    where = tmp_path / "ro"
    if not _mount_tmpfs(where, "size=1m,ro"):
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        with pytest.raises(OutputError) as err:
            with atomic_output(where / "out" / "x.csv") as tmp:
                tmp.write_text("1\n")
        assert "read-only file system" in str(err.value) and str(where / "out") in str(err.value)
        with pytest.raises(OutputError, match="read-only file system"):
            with atomic_output(where / "x.csv") as tmp:
                tmp.write_text("1\n")
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_patched_writer_out_of_space(tmp_path):
    """The same one-line error without a small file system: a writer that hits ENOSPC."""
    with pytest.raises(OutputError, match="no space left on device") as err:
        with atomic_output(tmp_path / "r.nc") as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert "\n" not in str(err.value)
    assert _leftovers(tmp_path) == []
    # HDF5 reports the errno inside its message only
    with pytest.raises(OutputError, match="no space left on device"):
        with atomic_output(tmp_path / "r.nc") as tmp:
            tmp.write_bytes(b"partial")
            raise OSError("Can't write data (file write failed: errno = 28, error message = "
                          "'No space left on device')")
    assert _leftovers(tmp_path) == []


def test_other_errors_pass_through_and_clean_up(tmp_path):
    with pytest.raises(KeyError):
        with atomic_output(tmp_path / "r.nc") as tmp:
            tmp.write_bytes(b"x")
            raise KeyError("bug")
    assert _leftovers(tmp_path) == []


def test_free_space_checked_before_a_large_write(tmp_path):
    with pytest.raises(OutputError, match="needs about"):
        with atomic_output(tmp_path / "huge.h5", expected_bytes=1 << 60):
            pytest.fail("the block must not run")
    assert _leftovers(tmp_path) == []


def test_stale_temporaries_of_the_same_output_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".r.nc.{dead}.tmp"
    alive = tmp_path / f".r.nc.{os.getppid()}.tmp"  # a running writer: left alone
    other = tmp_path / f".q.nc.{dead}.tmp"  # another output: not ours to clean
    for f in (stale, alive, other):
        f.write_bytes(b"half")
    with atomic_output(tmp_path / "r.nc") as tmp:
        tmp.write_bytes(b"done")
    assert _leftovers(tmp_path) == sorted([alive.name, other.name, "r.nc"])


def test_script_errors_are_one_line(tmp_path):
    code = ("from cosmicflow.io import OutputError, one_line_errors\n"
            "one_line_errors()\n"
            "raise OutputError('/x/y.h5: cannot write (no space left on device; 0 MB free)')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "OutputError: /x/y.h5: cannot write (no space left on device; 0 MB free)"]
