"""AthenaK ingest: fixture round trips, the real AthenaK outputs, refused inputs, export."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from athenak_writer import (
    ISM_UNITS,
    random_truth,
    restrict,
    two_level_blocks,
    uniform_blocks,
    write_bin,
)
from cosmicflow.athenak import athenak_to_snapshot, export_athdf, read_grid
from cosmicflow.constants import PC_CM
from cosmicflow.io import InputError
from cosmicflow.snapshot import FIELDS, read_snapshot
from cosmicflow.units import ATHENAK_K_B, ATHENAK_M_U, resolve_units

VARS = ["dens", "velx", "vely", "velz", "eint", "bcc1", "bcc2", "bcc3"]
#: the README's unit mapping for the code-unit isothermal run: 100 pc, 1 m_p cm^-3, 10 km/s
ISO_UNITS = {"length_cgs": 100 * PC_CM, "velocity_cgs": 1.0e6, "density_cgs": 1.6726e-24,
             "mu": 1.0}


# ---------------------------------------------------------------------------------------
# an independent reader of .bin records (plain struct arithmetic, no cosmicflow code)
# ---------------------------------------------------------------------------------------
def raw_blocks(path: Path):
    raw = path.read_bytes()
    head_end = raw.index(b"header offset=")
    line_end = raw.index(b"\n", head_end)
    start = line_end + 1 + int(raw[head_end + 14:line_end])
    pre = raw[:head_end].decode()
    names = re.search(r"variables:\s+(.*)\n", pre).group(1).split()
    loc = int(re.search(r"size of location=(\d+)", pre).group(1))
    pos = start
    while pos < len(raw):
        idx = np.frombuffer(raw, "<i4", 10, pos)
        pos += 40 + 6 * loc
        n1, n2, n3 = idx[1] - idx[0] + 1, idx[3] - idx[2] + 1, idx[5] - idx[4] + 1
        data = np.frombuffer(raw, "<f4", len(names) * n1 * n2 * n3, pos)
        pos += data.nbytes
        yield idx[6:9], idx[9], dict(zip(names, data.reshape(len(names), n3, n2, n1)))


def assert_blocks_match(grid, path, block_cells):
    n1, n2, n3 = block_cells
    count = 0
    for lx, level, data in raw_blocks(path):
        assert level == 0
        sl = (slice(lx[0] * n1, lx[0] * n1 + n1), slice(lx[1] * n2, lx[1] * n2 + n2),
              slice(lx[2] * n3, lx[2] * n3 + n3))
        for name, block in data.items():
            np.testing.assert_array_equal(grid[name][sl], block.T, err_msg=f"{name} {lx}")
        count += 1
    return count


# ---------------------------------------------------------------------------------------
# fixture round trips
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("loc_size, ghost_zones, ranks", [(8, False, 1), (4, True, 3), (8, True, 2)])
def test_uniform_non_cubic_round_trip_exact(tmp_path, loc_size, ghost_zones, ranks):
    root, bc = (24, 16, 8), (8, 4, 2)
    bounds = ((-1.5, 1.5), (0.0, 2.0), (-0.5, 0.5))
    truth = random_truth(root, seed=loc_size + ranks)
    files = write_bin(tmp_path / "bin" / "Fix.mhd_w_bcc.00003.bin", uniform_blocks(root, bc),
                      lambda s: restrict(truth, s, bc, 0), VARS, root, bc, bounds,
                      loc_size=loc_size, ghost_zones=ghost_zones, ranks=ranks,
                      time=1.25, cycle=77)
    assert len(files) == ranks
    # any rank file (or the notional bin/<name> when ranks > 1) names the whole output
    entry = files[-1] if ranks > 1 else files[0]
    grid, out = read_grid(entry)
    assert len(out.blocks) == 3 * 4 * 4 and out.files == files
    assert (out.time, out.cycle) == (1.25, 77)
    for name in VARS:
        np.testing.assert_array_equal(grid[name], truth[name])  # ghosts were NaN: never read
    if ranks > 1:
        grid2, _ = read_grid(tmp_path / "bin" / "Fix.mhd_w_bcc.00003.bin")
        np.testing.assert_array_equal(grid2["bcc2"], truth["bcc2"])


def _expected_two_level(truth, blocks, bc, level):
    """Independent prediction of the grid at ``level`` (0 or 1) of a two-level file."""
    n1, n2, n3 = bc
    if level == 1:
        exp = {k: v.copy() for k, v in truth.items()}
        for spec in blocks:
            if spec[3] == 0:
                coarse = restrict(truth, spec, bc, 1)
                sl = tuple(slice(l * n * 2, (l + 1) * n * 2) for l, n in zip(spec[:3], bc))
                for k in exp:
                    exp[k][sl] = coarse[k].T.repeat(2, 0).repeat(2, 1).repeat(2, 2)
        return exp
    shape = tuple(s // 2 for s in truth["dens"].shape)
    exp = {k: np.empty(shape, np.float32) for k in truth}
    for i in range(shape[0] // n1):
        for j in range(shape[1] // n2):
            for k in range(shape[2] // n3):
                coarse = restrict(truth, (i, j, k, 0), bc, 1)
                for name in exp:
                    exp[name][i * n1:(i + 1) * n1, j * n2:(j + 1) * n2, k * n3:(k + 1) * n3] = \
                        coarse[name].T
    return exp


def test_two_level_file_on_fine_and_coarse_grid(tmp_path):
    root, bc = (16, 8, 8), (8, 4, 2)
    truth = random_truth(tuple(2 * n for n in root), seed=5)
    blocks = two_level_blocks(root, bc, {(0, 0, 0), (1, 1, 3), (1, 0, 2)})
    path = tmp_path / "amr.bin"
    write_bin(path, blocks, lambda s: restrict(truth, s, bc, 1), VARS, root, bc,
              ((0.0, 2.0), (0.0, 1.0), (0.0, 1.0)), ghost_zones=True, ranks=1,
              extra_params=ISM_UNITS)
    fine, out = read_grid(path)  # default: the finest level
    assert out.levels == [0, 1] and fine["dens"].shape == (32, 16, 16)
    exp = _expected_two_level(truth, blocks, bc, 1)
    for name in VARS:
        np.testing.assert_array_equal(fine[name], exp[name])
    coarse, _ = read_grid(path, level=0)
    exp0 = _expected_two_level(truth, blocks, bc, 0)
    for name in VARS:
        np.testing.assert_allclose(coarse[name], exp0[name], rtol=2e-6, atol=1e-7)
    snap = read_snapshot(athenak_to_snapshot(path, tmp_path / "s0.h5", {}, {},
                                             {"params": {"level": 0}}))
    assert snap.shape == (16, 8, 8)
    assert json.loads(snap.attrs["refinement"])["levels_in_file"] == [0, 1]
    np.testing.assert_allclose(snap["bz"], 0.5284939957 * exp0["bcc3"], rtol=2e-6)
    # averaging keeps mass and momentum of the fine blocks
    assert math.isclose(coarse["dens"].astype(float).sum() * 8, truth["dens"].astype(float).sum(),
                        rel_tol=1e-6)
    mom = (coarse["dens"].astype(float) * coarse["velx"]).sum() * 8
    assert math.isclose(mom, (truth["dens"].astype(float) * truth["velx"]).sum(), rel_tol=1e-5)


def test_level_too_coarse_for_fine_blocks_is_refused(tmp_path):
    root, bc = (8, 8, 8), (2, 4, 4)
    truth = random_truth((32, 32, 32), seed=1)
    blocks = []
    for spec in two_level_blocks(root, bc, {(0, 0, 0)}):  # refine once more -> level 2
        if spec[:3] == (0, 0, 0) and spec[3] == 1:
            blocks += [(2 * spec[0] + a, 2 * spec[1] + b, 2 * spec[2] + c, 2)
                       for c in (0, 1) for b in (0, 1) for a in (0, 1)]
        else:
            blocks.append(spec)
    path = tmp_path / "deep.bin"
    write_bin(path, blocks, lambda s: restrict(truth, s, bc, 2), VARS, root, bc,
              ((0.0, 1.0),) * 3)
    with pytest.raises(InputError, match=r"cannot put level-2 meshblocks .* choose params.level >= 1"):
        read_grid(path, level=0)
    grid, _ = read_grid(path, level=1)
    assert grid["dens"].shape == (16, 16, 16)


def test_snapshot_from_fixture_units_coordinates_provenance(tmp_path):
    root, bc = (16, 8, 12), (8, 4, 4)
    bounds = ((-50.0, 50.0), (0.0, 50.0), (-30.0, 45.0))
    truth = random_truth(root, seed=9)
    src = tmp_path / "ism.bin"
    write_bin(src, uniform_blocks(root, bc), lambda s: restrict(truth, s, bc, 0), VARS, root, bc,
              bounds, time=50.0, cycle=2859, extra_params=ISM_UNITS)
    snap_path = athenak_to_snapshot(src, tmp_path / "out" / "snapshot.h5", units={},
                                    variables={}, config={"medium": "fix", "params": {}})
    s = read_snapshot(snap_path)
    pc = 3.0856775809623245e18 / PC_CM  # AthenaK's parsec in IAU parsecs
    np.testing.assert_allclose(s.box_pc, [100 * pc, 50 * pc, 75 * pc], rtol=1e-12)
    np.testing.assert_allclose(s.origin_pc, [-50 * pc, 0.0, -30 * pc], rtol=1e-12)
    np.testing.assert_allclose(s.coordinate(2)[:2], np.array([-30 + 3.125, -30 + 9.375]) * pc)
    # README factors for this unit set
    np.testing.assert_allclose(s["density"], truth["dens"], rtol=1e-6)
    np.testing.assert_allclose(s["temperature"], 107.3237335 * truth["eint"] / truth["dens"],
                               rtol=2e-6)
    np.testing.assert_allclose(s["vy"], 0.9777922215 * truth["vely"], rtol=1e-6)
    np.testing.assert_allclose(s["bz"], 0.5284939957 * truth["bcc3"], rtol=1e-6)
    a = s.attrs
    a = {k: np.squeeze(v).item() if isinstance(v, np.ndarray) and v.size == 1 else v
         for k, v in a.items()}  # netCDF stores scalar attributes as 1-element arrays
    assert a["athenak_cycle"] == 2859 and a["athenak_time"] == 50.0
    assert math.isclose(a["athenak_time_Myr"], 50.0)
    assert "<par_end>" in a["athenak_header"] and "size of location=8" in a["athenak_header"]
    assert a["mean_molecular_weight"] == 1.4 and math.isclose(a["adiabatic_index"], 5 / 3)
    units = json.loads(a["athenak_units"])
    assert units["origin"]["mu"] == "file <units>" and units["mass_cgs"] == 6.8301262362768545e31
    assert json.loads(a["source_files"]) == [str(src)]
    assert json.loads(a["config"])["medium"] == "fix"


def test_config_overrides_file_units(tmp_path):
    root, bc = (8, 8, 8), (8, 8, 8)
    truth = random_truth(root, seed=2)
    src = tmp_path / "o.bin"
    write_bin(src, uniform_blocks(root, bc), lambda s: restrict(truth, s, bc, 0), VARS, root, bc,
              ((0.0, 1.0),) * 3, extra_params=ISM_UNITS)
    s = read_snapshot(athenak_to_snapshot(src, tmp_path / "s.h5", units={"mu": 0.7, "gamma": 1.4},
                                          variables={}, config={}))
    assert s.attrs["mean_molecular_weight"] == 0.7 and s.attrs["adiabatic_index"] == 1.4
    # n scales as 1/mu; T = (gamma - 1) eint/dens mu m_u v_u^2/k_B
    np.testing.assert_allclose(s["density"], truth["dens"] * 2.0, rtol=1e-6)
    t_unit = 0.7 * ATHENAK_M_U * (3.0856775809623245e18 / 3.15576e13) ** 2 / ATHENAK_K_B
    np.testing.assert_allclose(s["temperature"], 0.4 * t_unit * truth["eint"] / truth["dens"],
                               rtol=2e-6)


# ---------------------------------------------------------------------------------------
# real AthenaK outputs (../shared/data/athenak, see its README)
# ---------------------------------------------------------------------------------------
def test_units_reproduce_athenak_factors():
    u = resolve_units({"length_cgs": "3.0856775809623245e18", "time_cgs": "3.15576e13",
                       "mass_cgs": "6.8301262362768545e31", "mu": "1.4"},
                      {"eos": "ideal", "gamma": "1.6666666666666667"}, {}, "test")
    assert math.isclose(u.temperature_unit_K, 160.98560, rel_tol=1e-8)
    assert math.isclose(u.kelvin_per_eint_over_dens, 107.3237335, rel_tol=1e-9)
    assert math.isclose(u.number_density_per_dens, 1.0, rel_tol=1e-12)
    assert math.isclose(u.kms_per_velocity, 0.9777922215, rel_tol=1e-9)
    assert math.isclose(u.uG_per_field, 0.5284939957, rel_tol=1e-9)
    iso = resolve_units(None, {"eos": "isothermal", "iso_sound_speed": "1.0"}, ISO_UNITS, "t")
    assert math.isclose(iso.uG_per_field, 4.5846, rel_tol=1e-4)
    # T = mu m_u c_s^2 / k_B with c_s = 10 km/s
    assert math.isclose(iso.isothermal_temperature_K(), 1.20e4, rel_tol=3e-3)


@pytest.mark.parametrize("rel, bc", [("ism-48/ISM48.mhd_w_bcc.00002.bin", (16, 16, 16)),
                                     ("isothermal-32/Turb.mhd_w_bcc.00001.bin", (16, 16, 16))])
def test_real_bin_assembled_matches_every_block(athenak_data, rel, bc):
    grid, out = read_grid(athenak_data / rel)
    assert out.block_cells == bc
    assert assert_blocks_match(grid, athenak_data / rel, bc) == len(out.blocks)


def test_real_athdf_assembled_matches_every_block(athenak_data):
    path = athenak_data / "isothermal-32" / "Turb.mhd_w_bcc.00002.athdf"
    grid, out = read_grid(path)
    assert out.format == "athdf" and out.time == 0.5 and grid["dens"].shape == (32, 32, 32)
    with h5py.File(path, "r") as h5:
        uov, b, lloc = h5["uov"][...], h5["B"][...], h5["LogicalLocations"][...]
    for m, (i, j, k) in enumerate(lloc):
        sl = (slice(16 * i, 16 * i + 16), slice(16 * j, 16 * j + 16), slice(16 * k, 16 * k + 16))
        np.testing.assert_array_equal(grid["dens"][sl], uov[0, m].T)
        np.testing.assert_array_equal(grid["velz"][sl], uov[3, m].T)
        np.testing.assert_array_equal(grid["bcc3"][sl], b[2, m].T)
    assert "eos             = isothermal" in out.header


def test_real_ism_initial_state(athenak_data, tmp_path):
    """t = 0 of ism-32: Bz = 3 uG, n_H = 1, T = 5006.25 K except z-planes 15 and 31."""
    s = read_snapshot(athenak_to_snapshot(athenak_data / "ism-32" / "ISM.mhd_w_bcc.00000.bin",
                                          tmp_path / "s.h5", {}, {}, {}))
    np.testing.assert_allclose(s["bz"], 3.000, rtol=2e-4)
    np.testing.assert_array_equal(s["bx"], 0.0)
    np.testing.assert_allclose(s["density"], 1.0, rtol=1e-6)
    t = np.asarray(s["temperature"])
    bulk = np.delete(t, [15, 31], axis=2)
    np.testing.assert_allclose(bulk, 5006.25, rtol=1e-5)
    np.testing.assert_allclose(t[:, :, [15, 31]], 6303, rtol=1e-3)
    assert s.attrs["athenak_cycle"] == 0


def _phase_stats(s):
    n = np.asarray(s["density"], dtype=np.float64)
    t = np.asarray(s["temperature"], dtype=np.float64)
    b = np.sqrt(sum(np.asarray(s[c], dtype=np.float64) ** 2 for c in ("bx", "by", "bz")))
    frac = []
    for lo, hi in ((0, 200), (200, 5000), (5000, np.inf)):
        m = (t >= lo) & (t < hi)
        frac.append((n[m].sum() / n.sum(), m.mean()))
    w = n / n.sum()
    v = [np.asarray(s[c], dtype=np.float64) for c in ("vx", "vy", "vz")]
    sigma = math.sqrt(sum((w * c * c).sum() - (w * c).sum() ** 2 for c in v))
    return dict(frac=frac, n=(n.min(), n.max()), n_mean=n.mean(), t=(t.min(), t.max()),
                b=(b.min(), b.max()),
                b_rms=math.sqrt((b * b).mean()), sigma=sigma, bz=s.mean_field_ug()[2])


@pytest.mark.parametrize("rel, readme", [
    ("ism-48/ISM48.mhd_w_bcc.00002.bin",
     dict(frac=[(0.0219, 0.0012), (0.533, 0.347), (0.445, 0.652)], n=(0.0855, 56.2),
          t=(68.3, 8435), b=(0.331, 13.3), b_rms=4.37, sigma=8.64)),
    ("ism-48/ISMweak48.mhd_w_bcc.00001.bin",
     dict(frac=[(0.0373, 0.0029), (0.572, 0.332), (0.391, 0.665)], n=(0.165, 38.5),
          t=(79.6, 7571), b=(0.676, 8.44), b_rms=3.70, sigma=6.51)),
    ("ism-32/ISM.mhd_w_bcc.00005.bin",
     dict(frac=[(0.0031, 0.0002), (0.522, 0.349), (0.475, 0.651)], n=(0.124, 20.8),
          t=(131, 8725), b=(0.107, 13.2), b_rms=4.56, sigma=10.4)),
])
def test_real_ism_physical_values_match_readme(athenak_data, tmp_path, rel, readme):
    s = read_snapshot(athenak_to_snapshot(athenak_data / rel, tmp_path / "s.h5", {}, {}, {}))
    got = _phase_stats(s)
    assert abs(got["bz"] - 3.0) < 5e-5  # flux conservation: <B_z> = 3.0000 uG
    assert got["n_mean"] == pytest.approx(1.0, rel=1e-5)  # mass conservation: started at n_H = 1
    for (gm, gv), (rm, rv) in zip(got["frac"], readme["frac"]):
        assert gm == pytest.approx(rm, abs=6e-4 if rm < 0.1 else 1.5e-3)
        assert gv == pytest.approx(rv, abs=6e-4 if rv < 0.1 else 1.5e-3)
    for key in ("n", "t", "b"):  # README quotes 3 significant figures
        assert got[key][0] == pytest.approx(readme[key][0], rel=6e-3)
        assert got[key][1] == pytest.approx(readme[key][1], rel=6e-3)
    assert got["b_rms"] == pytest.approx(readme["b_rms"], rel=3e-3)
    assert got["sigma"] == pytest.approx(readme["sigma"], rel=6e-3)
    assert s.attrs["source_format"] == "AthenaK binary v1.1"


@pytest.mark.parametrize("rel", ["isothermal-32/Turb.mhd_w_bcc.00001.bin",
                                 "isothermal-32/Turb.mhd_w_bcc.00002.athdf"])
def test_real_isothermal_with_readme_units(athenak_data, tmp_path, rel):
    s = read_snapshot(athenak_to_snapshot(athenak_data / rel, tmp_path / "s.h5", ISO_UNITS, {},
                                          {"medium": "iso"}))
    grid, _ = read_grid(athenak_data / rel)
    b_unit = math.sqrt(4 * math.pi * 1.6726e-24) * 1.0e6 / 1e-6  # uG per code field
    bz = s.mean_field_ug()
    assert bz[2] == pytest.approx(6.4836, rel=1e-4)  # README: <bz> = sqrt(2) code = 6.4836 uG
    assert abs(bz[0]) < 1e-5 and abs(bz[1]) < 1e-5
    assert float(np.mean(grid["dens"], dtype=np.float64)) == pytest.approx(1.0, abs=1e-5)
    n_mean = float(np.mean(s["density"], dtype=np.float64))
    assert n_mean == pytest.approx(1.6726e-24 / (1.0 * ATHENAK_M_U), rel=1e-5)
    t_iso = ATHENAK_M_U * 1.0e12 / ATHENAK_K_B
    np.testing.assert_allclose(s["temperature"], t_iso, rtol=1e-6)
    assert s.attrs["adiabatic_index"] == 1.0
    np.testing.assert_allclose(s["bx"], grid["bcc1"] * b_unit, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.box_pc, 100.0)
    if rel.endswith(".bin"):  # README: dens range 0.10-11.1
        assert 0.09 < s["density"].min() / 1.00726 < 0.11 and 10.9 < s["density"].max() / 1.00726 < 11.3


# ---------------------------------------------------------------------------------------
# refused inputs: clear message naming the file, and no output left behind
# ---------------------------------------------------------------------------------------
def _small(tmp_path, name="in.bin", variables=VARS, extra=ISM_UNITS, **kw):
    root, bc = (8, 8, 4), (4, 4, 4)
    truth = random_truth(root, seed=3)
    for v in variables:
        truth.setdefault(v, np.ones(root, np.float32))
    path = tmp_path / name
    write_bin(path, uniform_blocks(root, bc), lambda s: restrict(truth, s, bc, 0), variables,
              root, bc, ((0.0, 1.0),) * 3, extra_params=extra, **kw)
    return path


def _cut(path: Path, nbytes: int) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - nbytes])
    return path


def _nan_block(tmp_path):
    root, bc = (8, 8, 4), (4, 4, 4)
    truth = random_truth(root, seed=4)
    truth["bcc2"][5, 2, 3] = np.inf
    path = tmp_path / "nan.bin"
    write_bin(path, uniform_blocks(root, bc), lambda s: restrict(truth, s, bc, 0), VARS, root, bc,
              ((0.0, 1.0),) * 3, extra_params=ISM_UNITS)
    return path


RECORD = 40 + 48 + 8 * 4 * 4 * 4 * 4


@pytest.mark.parametrize("make, units, fragment", [
    (lambda p: (p / "junk.bin").write_bytes(b"\x00\x01 not athena at all\n" * 10) and p / "junk.bin",
     {}, r"not an AthenaK output \(bad magic"),
    (lambda p: (p / "txt.bin").write_text("Athena++ something else\n") and p / "txt.bin",
     {}, r"bad magic"),
    (lambda p: _small(p, version="2.0"), {}, r"unsupported AthenaK binary format version '2.0'"),
    (lambda p: _cut(_small(p), 100), {}, r"truncated record: the file ends \d+ bytes into meshblock record 3"),
    (lambda p: _cut(_small(p), RECORD), {}, r"header disagrees with data size: cell .* covered by no meshblock"),
    (lambda p: _small(p), {}, None),
    (lambda p: _nvar_lie(p), {}, r"header disagrees with data size: records of 8 variables"),
    (lambda p: _small(p, variables=[v for v in VARS if v != "bcc2"]), {}, r"missing variable\(s\) bcc2"),
    (lambda p: _small(p, variables=[v for v in VARS if v != "dens"]), {}, r"missing variable\(s\) dens"),
    (lambda p: _nan_block(p), {}, r"variable 'bcc2' has non-finite value inf in meshblock 1 .* \(1, 2, 3\)"),
    (lambda p: _small(p, variables=[v for v in VARS if v != "eint"],
                      extra="<mhd>\neos = isothermal\n"), {"length_cgs": 1e18, "time_cgs": 1e13,
                                                           "mass_cgs": 1e30, "mu": 1.0},
     r"isothermal output without a sound speed .* no units.temperature_K"),
    (lambda p: _small(p, extra="<mhd>\neos = ideal\ngamma = 1.4\n"), {},
     r"no <units> block.*missing \['length_cgs', 'time_cgs', 'mass_cgs', 'mu'\]"),
])
def test_bad_input_refused_and_nothing_written(tmp_path, make, units, fragment):
    src = make(tmp_path)
    out_dir = tmp_path / "results"
    out = out_dir / "snapshot.h5"
    if fragment is None:  # a well-formed control case: the same machinery accepts it
        athenak_to_snapshot(src, out, units, {}, {})
        assert out.exists()
        return
    with pytest.raises(InputError, match=fragment) as err:
        athenak_to_snapshot(src, out, units, {}, {})
    assert str(src) in str(err.value)
    assert not out.exists()
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def _nvar_lie(tmp_path):
    """Header says 8 variables, records hold 7: record sizes and block indices disagree."""
    root, bc = (8, 8, 4), (4, 4, 4)
    truth = random_truth(root, seed=3)
    path = tmp_path / "lie.bin"
    seven = [v for v in VARS if v != "eint"]
    write_bin(path, uniform_blocks(root, bc), lambda s: restrict(truth, s, bc, 0), seven, root,
              bc, ((0.0, 1.0),) * 3, extra_params=ISM_UNITS)
    text = path.read_bytes().replace(b"number of variables=7", b"number of variables=8")
    text = text.replace(b"variables:  dens", b"variables:  eint  dens", 1)
    path.write_bytes(text)
    return path


def test_isothermal_with_configured_temperature(tmp_path):
    src = _small(tmp_path, variables=[v for v in VARS if v != "eint"],
                 extra="<mhd>\neos = isothermal\n")
    s = read_snapshot(athenak_to_snapshot(
        src, tmp_path / "s.h5",
        {"length_cgs": PC_CM, "time_cgs": 3.15576e13, "density_cgs": 2.3247544894e-24,
         "mu": 1.4, "temperature_K": 8000.0}, {}, {}))
    np.testing.assert_array_equal(s["temperature"], np.float32(8000.0))
    assert "temperature_K" in s.attrs["temperature_method"]


def test_variable_map_and_unknown_params(tmp_path):
    names = ["rho", "v1", "v2", "v3", "e", "b1", "b2", "b3"]
    root, bc = (8, 8, 4), (4, 4, 4)
    truth = random_truth(root, seed=8)
    data = {n: truth[v] for n, v in zip(names, VARS)}
    path = tmp_path / "renamed.bin"
    write_bin(path, uniform_blocks(root, bc), lambda s: restrict(
        {**data, "dens": truth["dens"]}, s, bc, 0), names, root, bc, ((0.0, 1.0),) * 3,
        extra_params=ISM_UNITS)
    vmap = {"v1": "velx", "v2": "vely", "v3": "velz", "e": "eint", "b1": "bcc1", "b2": "bcc2",
            "b3": "bcc3"}  # rho is an Athena++ name the reader knows already
    s = read_snapshot(athenak_to_snapshot(path, tmp_path / "s.h5", {}, vmap, {}))
    np.testing.assert_allclose(s["bx"], 0.5284939957 * truth["bcc1"], rtol=1e-6)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['lvl'\]"):
        athenak_to_snapshot(path, tmp_path / "t.h5", {}, vmap, {"params": {"lvl": 0}})
    with pytest.raises(InputError, match=r"unknown unit key\(s\) \['length'\]"):
        athenak_to_snapshot(path, tmp_path / "t.h5", {"length": 1.0}, vmap, {})
    assert not (tmp_path / "t.h5").exists()


# ---------------------------------------------------------------------------------------
# export for yt / ParaView
# ---------------------------------------------------------------------------------------
def test_export_athdf_round_trip(tmp_path):
    root, bc = (16, 8, 12), (8, 4, 4)
    truth = random_truth(root, seed=12)
    src = tmp_path / "e.bin"
    write_bin(src, uniform_blocks(root, bc), lambda s: restrict(truth, s, bc, 0), VARS, root, bc,
              ((-1.0, 1.0), (0.0, 1.0), (0.0, 1.5)), extra_params=ISM_UNITS, time=3.0)
    snap = read_snapshot(athenak_to_snapshot(src, tmp_path / "s.h5", {}, {}, {}))
    athdf, xdmf = export_athdf(snap.path, tmp_path / "s.athdf")
    vmap = {"density": "dens", "vx": "velx", "vy": "vely", "vz": "velz", "bx": "bcc1",
            "by": "bcc2", "bz": "bcc3"}
    back, out = read_grid(athdf, variables=vmap)
    assert out.time == 3.0
    for canon, name in (("dens", "density"), ("velz", "vz"), ("bcc1", "bx")):
        np.testing.assert_array_equal(back[canon], snap[name])
    text = xdmf.read_text()
    import xml.etree.ElementTree as ET

    grid = ET.fromstring(text).find("Domain/Grid/Grid")
    assert grid.find("Topology").get("NumberOfElements") == "13 9 17"  # z y x edges
    assert 's.athdf:/prim' in text and 'Name="temperature"' in text
    assert set(FIELDS) <= set(re.findall(r'Attribute Name="(\w+)"', text))


# ---------------------------------------------------------------------------------------
# config: the commented example media are valid and build; the default run stays synthetic
# ---------------------------------------------------------------------------------------
def test_config_example_media_validate_and_build(athenak_data, tmp_path, monkeypatch):
    import yaml
    from snakemake.utils import validate

    from cosmicflow.media import build_medium

    repo = Path(__file__).resolve().parents[1]
    text = (repo / "config" / "config.yaml").read_text()
    default = yaml.safe_load(text)
    assert all(m["source"] != "athenak" for m in default["media"].values())
    block = re.search(r"# BEGIN athenak example\n(.*?)  # END athenak example", text, re.S).group(1)
    example = yaml.safe_load("\n".join(line.replace("  # ", "  ", 1) for line in block.splitlines()))
    assert set(example) == {"ism48", "turb32"}
    cfg = {"media": example}
    validate(cfg, str(repo / "workflow" / "schemas" / "config.schema.yaml"))
    monkeypatch.chdir(repo)  # paths in the config are relative to the working directory
    for name, medium in cfg["media"].items():
        out = build_medium(name, medium, tmp_path / name / "snapshot.h5")
        s = read_snapshot(out)
        assert s.mean_field_ug()[2] == pytest.approx(3.0 if name == "ism48" else 6.4836, rel=1e-4)
        assert json.loads(s.attrs["config"])["medium"] == name


def test_rank_files_missing_or_mixed_are_refused(tmp_path):
    root, bc = (8, 8, 4), (4, 4, 4)
    truth = random_truth(root, seed=6)
    args = (uniform_blocks(root, bc), lambda s: restrict(truth, s, bc, 0), VARS, root, bc,
            ((0.0, 1.0),) * 3)
    files = write_bin(tmp_path / "a" / "bin" / "X.00001.bin", *args, ranks=3,
                      extra_params=ISM_UNITS)
    files[1].unlink()
    with pytest.raises(InputError, match=r"covered by no meshblock.*from 2 file\(s\)"):
        athenak_to_snapshot(files[0], tmp_path / "s.h5", {}, {}, {})
    files = write_bin(tmp_path / "a" / "bin" / "X.00001.bin", *args, ranks=3,
                      extra_params=ISM_UNITS)  # complete again
    other = write_bin(tmp_path / "b" / "bin" / "X.00001.bin", *args, ranks=3, time=2.0,
                      extra_params=ISM_UNITS)
    other[2].replace(files[2])  # rank 2 now comes from another output time
    with pytest.raises(InputError, match=r"rank_00000002/X.00001.bin: header differs from"):
        athenak_to_snapshot(files[1], tmp_path / "s.h5", {}, {}, {})
    assert not (tmp_path / "s.h5").exists()


def test_hdf5_that_is_not_athdf_is_refused(tmp_path):
    bad = tmp_path / "plain.athdf"
    with h5py.File(bad, "w") as h5:
        h5["x"] = np.arange(3)
    with pytest.raises(InputError, match=r"plain.athdf: not an Athena .athdf file \(attribute 'RootGridSize' missing\)"):
        athenak_to_snapshot(bad, tmp_path / "s.h5", ISO_UNITS, {}, {})
    assert not (tmp_path / "s.h5").exists()
