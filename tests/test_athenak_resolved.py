"""Ingest of the resolved 25 pc AthenaK runs (issue 16) reproduces the data README's table.

``../shared/data/athenak/README.md``, sections ``ism-25pc-64`` (thermally bistable ISM,
outputs 2-4) and ``turb-25pc-64`` (isothermal control, outputs 2-3): both 64^3 over a periodic
25 pc cube, B0 = 3 uG along z, the file's ``<units>`` block (1 pc, 1 Myr, 1.4 m_u pc^3).

Each README number is checked to the precision it is printed with: a value printed as
``0.1610`` must lie within 0.00005 of what cosmicflow ingests, ``47.5`` within 0.05, ``5623``
within 0.5. The table's definitions: phase fractions are mass / volume for T < 200 K,
200-5000 K, > 5000 K (the project's phase rule, :mod:`cosmicflow.phase_rule`); |B| ranges and
rms over cells; sigma_v,3D the mass-weighted dispersion
:math:`\\sigma^2 = \\sum_c \\rho (v - \\bar v_\\rho)^2 / \\sum_c \\rho`; M_s = sigma_v / c_s;
M_A = sigma_v / v_A(B0, n = 1) with v_A = B0 / sqrt(4 pi mu m_u n), mu = 1.4.
"""

from __future__ import annotations

import copy
import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import yaml
from snakemake.utils import validate

from cosmicflow.athenak import athenak_to_snapshot
from cosmicflow.constants import larmor_radius_pc
from cosmicflow.phases import phase_statistics
from cosmicflow.snapshot import read_snapshot
from cosmicflow.units import ATHENAK_K_B, ATHENAK_M_U

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")

ISM = "ism-25pc-64/ISM25c.mhd_w_bcc.{:05d}.bin"
ISO = "turb-25pc-64/ISO25w.mhd_w_bcc.{:05d}.bin"

#: the README's tables, verbatim (strings keep the printed precision). fractions: per phase
#: (CNM, UNM, WNM) "mass/volume"; ranges "min-max"; the isothermal files are all WNM.
README = {
    ISM.format(2): dict(t_Myr="5.000", cycle=549, n_mean="2", bz="3.000",
                        frac=("0.1610/0.0195", "0.836/0.973", "0.003/0.007"),
                        n=("0.453", "47.5"), T=("59", "5623"), B=("1.18", "6.67"), B_rms="3.26",
                        sigma="3.01"),
    ISM.format(3): dict(t_Myr="7.506", cycle=927, n_mean="2", bz="3.000",
                        frac=("0.3022/0.0310", "0.656/0.839", "0.042/0.130"),
                        n=("0.247", "113"), T=("42", "6697"), B=("0.846", "8.12"), B_rms="3.40",
                        sigma="2.80"),
    ISM.format(4): dict(t_Myr="10.000", cycle=1342, n_mean="2", bz="3.000",
                        frac=("0.3299/0.0372", "0.572/0.636", "0.098/0.327"),
                        n=("0.297", "95.6"), T=("45", "7039"), B=("0.904", "7.06"), B_rms="3.25",
                        sigma="2.74"),
    ISO.format(2): dict(t_Myr="5.005", cycle=760, n_mean="1", bz="3.0000",
                        frac=("0/0", "0/0", "1/1"),
                        n=("0.491", "1.82"), B=("0.793", "6.48"), B_rms="3.56", sigma="3.95",
                        M_s="0.48", M_A="0.71"),
    ISO.format(3): dict(t_Myr="7.500", cycle=1226, n_mean="1", bz="3.0000",
                        frac=("0/0", "0/0", "1/1"),
                        n=("0.543", "2.00"), B=("1.103", "6.24"), B_rms="3.47", sigma="4.00",
                        M_s="0.48", M_A="0.72"),
}
#: README: isothermal c_s = 8.4885 code = 8.30 km/s; header value of <mhd>/iso_sound_speed
ISO_SOUND_SPEED_CODE = 8.488510971334634
KMS_PER_VELOCITY = 0.9777922215  # README: v [km/s] = vel * 0.9777922215
MU = 1.4


def printed(text: str) -> tuple[float, float]:
    """(value, half a unit in the last printed digit) of a number as the README prints it."""
    d = Decimal(text)
    return float(d), 0.5 * 10.0 ** d.as_tuple().exponent


def assert_printed(got: float, text: str, what: str) -> None:
    value, half = printed(text)
    # float32 fields: allow the last printed digit's rounding plus 1e-6 relative round-off
    assert abs(got - value) <= half + 1e-6 * abs(value), f"{what}: got {got!r}, README {text}"


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory, athenak_data):
    """Every new output ingested once with the file's own units (no config overrides)."""
    out = {}
    tmp = tmp_path_factory.mktemp("resolved")
    for rel in README:
        path = athenak_data / rel
        out[rel] = read_snapshot(athenak_to_snapshot(path, tmp / (path.name + ".h5"), {}, {},
                                                     {"medium": path.stem}))
    return out


def _stats(s) -> dict:
    n = np.asarray(s["density"], dtype=np.float64)
    t = np.asarray(s["temperature"], dtype=np.float64)
    b2 = sum(np.asarray(s[c], dtype=np.float64) ** 2 for c in ("bx", "by", "bz"))
    b = np.sqrt(b2)
    w = n / n.sum()
    v = [np.asarray(s[c], dtype=np.float64) for c in ("vx", "vy", "vz")]
    sigma = math.sqrt(sum((w * c * c).sum() - (w * c).sum() ** 2 for c in v))
    return dict(n=(n.min(), n.max()), T=(t.min(), t.max()), B=(b.min(), b.max()),
                B_rms=math.sqrt(b2.mean()), sigma=sigma, n_mean=n.mean(),
                bmean=[float(np.mean(s[c], dtype=np.float64)) for c in ("bx", "by", "bz")])


@pytest.mark.parametrize("rel", list(README))
def test_ingest_reproduces_readme_table(snapshots, rel):
    s, ref = snapshots[rel], README[rel]
    got = _stats(s)
    assert s.shape == (64, 64, 64)
    # AthenaK's pc (3.0856775809623245e18 cm in <units>) differs from IAU's by 1.7e-10
    np.testing.assert_allclose(s.box_pc, 25.0, rtol=1e-9)
    np.testing.assert_allclose(s.origin_pc, -12.5, rtol=1e-9)
    np.testing.assert_allclose(s.cell_pc, 0.390625, rtol=1e-9)
    assert_printed(float(s.attrs["athenak_time_Myr"]), ref["t_Myr"], f"{rel} t [Myr]")
    assert int(s.attrs["athenak_cycle"]) == ref["cycle"]
    # mass conservation: mean n_H stays at its initial 2 (multiphase) or 1 (isothermal) cm^-3
    assert got["n_mean"] == pytest.approx(float(ref["n_mean"]), rel=1e-6)
    # flux conservation: <B> = (0, 0, 3) uG, as the README prints it and as the writer stored it
    assert_printed(got["bmean"][2], ref["bz"], f"{rel} <B_z> [uG]")
    assert abs(got["bmean"][0]) < 1e-5 and abs(got["bmean"][1]) < 1e-5
    np.testing.assert_allclose(s.mean_field_ug(), got["bmean"], atol=1e-6)
    for key, unit in (("n", "cm^-3"), ("T", "K"), ("B", "uG")):
        if key in ref:
            assert_printed(got[key][0], ref[key][0], f"{rel} {key} min [{unit}]")
            assert_printed(got[key][1], ref[key][1], f"{rel} {key} max [{unit}]")
    assert_printed(got["B_rms"], ref["B_rms"], f"{rel} |B| rms [uG]")
    assert_printed(got["sigma"], ref["sigma"], f"{rel} sigma_v,3D [km/s]")


@pytest.mark.parametrize("rel", list(README))
def test_phase_table_reproduces_readme_fractions(snapshots, rel):
    """The pipeline's own phase stage (results/{medium}/phases.csv) gives the README fractions."""
    s = snapshots[rel]
    table = phase_statistics(s.path, chunk_cells=None).table.set_index("phase")
    for phase, text in zip(("CNM", "UNM", "WNM"), README[rel]["frac"]):
        mass, volume = text.split("/")
        assert_printed(float(table.loc[phase, "mass_fraction"]), mass, f"{rel} {phase} mass fraction")
        assert_printed(float(table.loc[phase, "volume_fraction"]), volume,
                       f"{rel} {phase} volume fraction")
    # the per-phase extremes in the table are the README's ranges too
    assert_printed(float(table.loc["all", "n_max_cm^-3"]), README[rel]["n"][1], f"{rel} n max")
    assert_printed(float(table.loc["all", "B_min_uG"]), README[rel]["B"][0], f"{rel} |B| min")


@pytest.mark.parametrize("rel", [r for r in README if r.startswith("turb")])
def test_isothermal_control_temperature_from_sound_speed(snapshots, rel):
    """No eint: T = mu m_u c_s^2 / k_B from the header's iso_sound_speed (README: ~11,600 K),
    and the README's Mach numbers M_s = sigma_v / c_s, M_A = sigma_v / v_A(B0 = 3 uG, n = 1)."""
    s = snapshots[rel]
    c_s_cgs = ISO_SOUND_SPEED_CODE * KMS_PER_VELOCITY * 1e5
    assert_printed(c_s_cgs / 1e5, "8.30", "c_s [km/s]")
    t_iso = MU * ATHENAK_M_U * c_s_cgs**2 / ATHENAK_K_B
    assert round(t_iso, -2) == 11600.0
    np.testing.assert_allclose(s["temperature"], t_iso, rtol=1e-6)
    assert s.attrs["temperature_method"].startswith("isothermal")
    assert float(s.attrs["adiabatic_index"]) == 1.0  # c_s of the phases stage is isothermal
    assert float(s.attrs["mean_molecular_weight"]) == MU
    sigma = _stats(s)["sigma"]
    assert_printed(sigma / (c_s_cgs / 1e5), README[rel]["M_s"], f"{rel} M_s")
    v_a_kms = 3.0e-6 / math.sqrt(4 * math.pi * MU * ATHENAK_M_U * 1.0) / 1e5
    assert_printed(sigma / v_a_kms, README[rel]["M_A"], f"{rel} M_A(B0, n = 1)")
    # the phases stage derives the same sound speed from the snapshot: M_s rms of all cells
    table = phase_statistics(s.path, chunk_cells=None).table.set_index("phase")
    v = [np.asarray(s[c], dtype=np.float64) for c in ("vx", "vy", "vz")]
    vmean = [float(np.mean(c)) for c in v]
    v_rms = math.sqrt(np.mean(sum((c - m) ** 2 for c, m in zip(v, vmean))))
    assert float(table.loc["all", "M_s_rms"]) == pytest.approx(v_rms / (c_s_cgs / 1e5), rel=1e-4)


@pytest.mark.parametrize("rel", [r for r in README if r.startswith("ism")])
def test_multiphase_temperature_from_eint(snapshots, athenak_data, rel):
    """T = 107.3237335 eint/dens [K] (README: AthenaK's own cooling formula), cell by cell."""
    from cosmicflow.athenak import read_grid

    s = snapshots[rel]
    grid, _ = read_grid(athenak_data / rel)
    expect = 107.3237335 * grid["eint"].astype(np.float64) / grid["dens"]
    np.testing.assert_allclose(s["temperature"], expect, rtol=2e-6)
    np.testing.assert_allclose(s["density"], grid["dens"], rtol=1e-6)  # n_H = dens
    np.testing.assert_allclose(s["bz"], grid["bcc3"] * 0.5284939957, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(s["vx"], grid["velx"] * KMS_PER_VELOCITY, rtol=1e-6, atol=1e-7)


def test_larmor_radius_in_cells_matches_readme():
    """README: at 3 uG r_L = 0.54 pc (1.4 cells) at 1.5 PeV, 5.4 pc (14 cells) at 15 PeV."""
    cell = 25.0 / 64
    for e, pc, cells in ((1.5, "0.54", "1.4"), (15.0, "5.4", "14")):
        r = larmor_radius_pc(e, 3.0)
        assert_printed(r, pc, f"r_L({e} PeV) [pc]")
        assert_printed(r / cell, cells, f"r_L({e} PeV) [cells]")


# ---------------------------------------------------------------------------------------
# config/resolved.yaml
# ---------------------------------------------------------------------------------------
def _resolved_config():
    return yaml.safe_load((REPO / "config" / "resolved.yaml").read_text())


def _schema_takes_path_lists() -> bool:
    schema = yaml.safe_load(Path(SCHEMA).read_text())
    path = schema["$defs"]["medium"]["properties"]["path"]
    return "array" in str(path.get("type", "")) or any(
        "array" in str(alt.get("type", "")) for alt in path.get("oneOf", path.get("anyOf", [])))


def test_resolved_config_paper_scale_and_realisations(athenak_data):
    cfg = _resolved_config()
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    assert cfg["particles"]["energies_PeV"] == paper["particles"]["energies_PeV"]
    assert cfg["integrate"]["particles_per_energy"] == 1000
    assert cfg["integrate"]["duration_gyroperiods"] == 1000.0
    assert cfg["integrate"]["mono"] == paper["integrate"]["mono"]
    assert cfg["phases"]["thresholds_K"] == [200.0, 5000.0]
    # latest output first: the phases/gradients stages and Figs. 1-3 use the first realisation
    expect = {"ism25": [ISM.format(i) for i in (4, 3, 2)], "turb25": [ISO.format(i) for i in (3, 2)]}
    for name, rels in expect.items():
        paths = cfg["media"][name]["path"]
        assert [Path(p).name for p in paths] == [Path(r).name for r in rels]
        for p, rel in zip(paths, rels):  # relative to the repository root, next to ../shared
            assert (REPO / p).resolve() == (athenak_data / rel).resolve()
        # batch b uses output b % n: every output gets the same number of batches
        assert cfg["integrate"]["batches"] % len(paths) == 0


def test_resolved_config_validates(athenak_data):
    cfg = _resolved_config()
    single = copy.deepcopy(cfg)
    for m in single["media"].values():  # the form documented in the file for a one-path schema
        m["path"] = m["path"][0]
    validate(single, SCHEMA)
    if not _schema_takes_path_lists():
        pytest.skip("workflow schema does not accept a list of paths yet (issue 11 realisations)")
    validate(cfg, SCHEMA)
