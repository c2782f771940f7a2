"""The convergence report (cosmicflow.convergence): variants, verdicts, table and figure."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from particle_batches import log_times, make_batch, random_walk

from cosmicflow import convergence as cv
from cosmicflow import transport as tr
from cosmicflow.constants import PC_CM
from cosmicflow.integrate import IntegrateSettings

PARAMS = cv.ConvergenceParams()


def test_variant_settings_change_one_thing_each():
    base = IntegrateSettings(max_rotation_rad=0.1, max_step_cells=0.5, duration_gyroperiods=100.0)
    s, n = cv.variant_settings(base, "half_step", 50)
    assert (s.max_rotation_rad, s.max_step_cells, s.duration_gyroperiods, n) == (0.05, 0.25, 100.0, 50)
    s, n = cv.variant_settings(base, "double_duration", 50)
    assert (s.max_rotation_rad, s.duration_gyroperiods, n) == (0.1, 200.0, 50)
    s, n = cv.variant_settings(base, "double_particles", 50)
    assert s == base and n == 100
    assert cv.variant_settings(base, "downsample", 50) == (base, 50)
    assert base.max_rotation_rad == 0.1  # the baseline is not modified
    with pytest.raises(ValueError, match="unknown convergence variant"):
        cv.variant_settings(base, "quarter_step", 50)


@pytest.mark.parametrize(
    "base, test, verdict",
    [
        ((1.0, 0.05, "diffusive"), (1.05, 0.05, "diffusive"), "converged"),
        ((1.0, 0.02, "diffusive"), (1.3, 0.02, "diffusive"), "not converged"),
        ((1.0, 0.3, "diffusive"), (1.3, 0.3, "diffusive"), "inconclusive"),
        ((math.nan, math.nan, "superdiffusive"), (1.0, 0.1, "diffusive"), "no plateau"),
    ],
)
def test_verdicts(base, test, verdict):
    out = cv.compare({"D_par": base}, {"D_par": test}, PARAMS)["D_par"]
    assert out["verdict"] == verdict
    if verdict == "no plateau":
        assert "baseline" in out["reason"] and "superdiffusive" in out["reason"]
        assert math.isnan(out["change"])
    else:
        assert out["change"] == pytest.approx(test[0] / base[0] - 1)
        assert out["change_sigma"] == pytest.approx(math.hypot(base[1], test[1]) / base[0])


def _result(tmp_path, name, d_par, seed, n=1000):
    rng = np.random.default_rng(seed)
    t = log_times(30, 1e8, 1e11)
    disp, _, _ = random_walk(rng, n, t, d_par / PC_CM**2, 0.3 * d_par / PC_CM**2, (0, 0, 1))
    out = tmp_path / "toy" / f"{name}.nc"
    out.parent.mkdir(exist_ok=True)
    path = tmp_path / f"{name}_b0.h5"
    make_batch(t, disp, medium="toy").to_netcdf(path, engine="h5netcdf")
    tr.write_transport([path], out, {"bootstrap_samples": 100})
    return out


def test_report_from_results(tmp_path):
    """Same statistics → converged; D∥ three times larger → not converged; table and figure."""
    runs = {
        ("toy", 1.5, "baseline"): _result(tmp_path, "E1.5_baseline", 1e29, 1),
        ("toy", 1.5, "half_step"): _result(tmp_path, "E1.5_half_step", 1e29, 2),
        ("toy", 1.5, "double_particles"): _result(tmp_path, "E1.5_double_particles", 3e29, 3, n=2000),
    }
    assert cv.runs_from_paths([str(p) for p in runs.values()]) == {k: str(v) for k, v in runs.items()}
    csv, png, pdf = tmp_path / "convergence.csv", tmp_path / "c.png", tmp_path / "c.pdf"
    cv.write_report(runs, csv, png, pdf, PARAMS)
    table = pd.read_csv(csv)
    assert len(table) == 2 * len(cv.QUANTITIES)
    assert set(table.columns) >= {"medium", "energy_PeV", "test", "quantity", "baseline", "test_value",
                                  "rel_change", "rel_change_sigma", "verdict", "reason"}
    row = lambda test, q: table[(table["test"] == test) & (table["quantity"] == q)].iloc[0]  # noqa: E731
    par_half = row("half_step", "D_par")
    if par_half["verdict"] != "no plateau":  # a true plateau is refused in ~5 % of runs
        assert par_half["verdict"] in ("converged", "inconclusive")
        assert abs(par_half["rel_change"]) < 0.15
    par_double = row("double_particles", "D_par")
    if par_double["verdict"] != "no plateau":
        assert par_double["verdict"] == "not converged"
        assert par_double["rel_change"] == pytest.approx(2.0, rel=0.15)
    assert png.stat().st_size > 0 and pdf.stat().st_size > 0
    with pytest.raises(tr.InputError, match="no baseline"):
        cv.convergence_table({("toy", 1.5, "half_step"): runs[("toy", 1.5, "half_step")]}, PARAMS)


def test_params_match_the_schema():
    from pathlib import Path

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    props = schema["properties"]["convergence"]["properties"]
    defaults = cv.ConvergenceParams()
    assert set(props) == {f for f in defaults.__dataclass_fields__}
    for key, spec in props.items():
        want = getattr(defaults, key)
        assert (list(want) if isinstance(want, tuple) else want) == spec["default"], key
    assert props["tests"]["items"]["enum"] == list(cv.TESTS)
    with pytest.raises(ValueError, match="unknown test"):
        cv.ConvergenceParams(tests=("half_step", "tiny_step"))
    with pytest.raises(ValueError, match="unknown key"):
        cv.ConvergenceParams.from_config({"energies": [1.0]})
