"""The workflow config schema: defaults fill in, bad configs are refused readably."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


def default_config():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_default_config_is_valid_and_gets_defaults():
    cfg = default_config()
    validate(cfg, SCHEMA)
    assert cfg["phases"]["thresholds_K"] == [200.0, 5000.0]
    assert set(cfg["media"]) == {"multiphase", "isothermal"}


def test_minimal_config_filled_with_defaults():
    cfg = {"media": {"m": {"source": "kolmogorov"}}}
    validate(cfg, SCHEMA)
    m = cfg["media"]["m"]
    assert (m["grid"], m["box_pc"], m["params"]) == (128, 100.0, {})
    assert cfg["phases"]["names"] == ["CNM", "UNM", "WNM"]


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda c: c["media"]["isothermal"].__setitem__("source", "enzo"), "'enzo' is not one of"),
        (lambda c: c["media"]["multiphase"].__setitem__("box_pc", -5), "-5 is less than or equal"),
        (lambda c: c["media"]["multiphase"].__setitem__("grid", 4), "4 is less than the minimum"),
        (lambda c: c["media"].__setitem__("run", {"source": "athenak"}), "'path' is a required"),
        (lambda c: c["phases"].__setitem__("thresholds_K", [200.0]), "is too short"),
        (lambda c: c.__setitem__("medias", {}), "Additional properties"),
    ],
)
def test_bad_config_refused_with_readable_message(edit, fragment):
    cfg = default_config()
    edit(cfg)
    with pytest.raises(Exception) as err:
        validate(copy.deepcopy(cfg), SCHEMA)
    assert fragment in str(err.value)


def test_paper_config_is_valid_and_paper_scale():
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    validate(cfg, SCHEMA)
    assert cfg["integrate"]["particles_per_energy"] == 1000
    assert cfg["integrate"]["duration_gyroperiods"] == 1000.0
    assert cfg["particles"]["energies_PeV"] == [1.5, 2.5, 5.0, 7.5, 10.0, 15.0]
    assert cfg["integrate"]["mono"]["energies_PeV"] == [2.5]


# ---- per-source params schema and cross-key checks (cosmicflow.config) ----

def _filled(edit=None):
    cfg = default_config()
    if edit:
        edit(cfg)
    validate(cfg, SCHEMA)
    return cfg


@pytest.mark.parametrize("source", ["multiphase", "kolmogorov", "slab"])
def test_synthetic_params_schema_matches_the_generator(source):
    """The schema names exactly the generator's keyword parameters, each with a unit or [1]."""
    import inspect

    from cosmicflow import synthetic

    schema = yaml.safe_load(Path(SCHEMA).read_text())
    props = schema["$defs"][f"{source}_params"]["properties"]
    sig = inspect.signature(getattr(synthetic, source))
    kw = {k for k, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(props) == kw
    for name, spec in props.items():
        spec = schema["$defs"][spec["$ref"].split("/")[-1]] if "$ref" in spec else spec
        assert "[" in spec["description"], name  # a unit in brackets
        default = sig.parameters[name].default
        if default is not None and "default" in spec["description"]:
            assert f"{float(default)}" in spec["description"] or f"{default}" in spec["description"], name


@pytest.mark.parametrize("params, fragment", [
    ({"l_min": 3.0}, "Additional properties"),
    ({"b0_uG": "strong"}, "is not of type 'number'"),
    ({"cnm_mass_fraction": 1.5}, "1.5 is greater than or equal to the maximum"),
    ({"phase_density_jump": 0.5}, "0.5 is less than or equal to the minimum"),
])
def test_synthetic_params_refused_by_the_schema(params, fragment):
    cfg = default_config()
    cfg["media"]["multiphase"]["params"] = params
    with pytest.raises(Exception) as err:
        validate(cfg, SCHEMA)
    assert fragment in str(err.value)


@pytest.mark.parametrize("edit, key", [
    (lambda c: c["phases"].__setitem__("thresholds_K", [5000.0, 200.0]), "phases.thresholds_K"),
    (lambda c: c["phases"].__setitem__("names", ["a", "b", "a"]), "phases.names"),
    (lambda c: c["media"]["multiphase"]["params"].__setitem__("l_min_pc", 1.0),
     "media.multiphase.params.l_min_pc"),
    (lambda c: c["media"]["multiphase"]["params"].__setitem__("l_max_pc", 500.0),
     "media.multiphase.params.l_max_pc"),
    (lambda c: c["media"]["multiphase"]["params"].update(cnm_mass_fraction=0.6, wnm_mass_fraction=0.5),
     "media.multiphase.params.cnm_mass_fraction"),
    (lambda c: c["media"]["multiphase"]["params"].update(t_cnm_K=6000.0),
     "media.multiphase.params.t_cnm_K"),
    (lambda c: c["particles"].__setitem__("energies_PeV", [1.3104194, 1.31042]), "particles.energies_PeV"),
    (lambda c: c["integrate"].__setitem__("batches", 5000), "integrate.batches"),
    (lambda c: c["integrate"].__setitem__("first_output_gyroperiods", 5000.0),
     "integrate.first_output_gyroperiods"),
    (lambda c: c["transport"].__setitem__("dmumu_window_gyroperiods", [10.0, 1.0]),
     "transport.dmumu_window_gyroperiods"),
    (lambda c: c.__setitem__("figures", {"trajectory_medium": "nope"}), "figures.trajectory_medium"),
    (lambda c: c["media"]["multiphase"].__setitem__("seeds", [1, 1]), "media.multiphase.seeds"),
    (lambda c: c["media"].__setitem__("f", {"source": "snapshot", "path": "a.h5", "seeds": [1]}),
     "media.f.seeds"),
])
def test_cross_key_constraints_name_the_key(edit, key):
    from cosmicflow.config import ConfigError, check_config

    cfg = _filled(edit)
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert str(err.value).startswith(f"config key {key}:") and "\n" not in str(err.value)


def test_default_paper_and_test_configs_pass_the_cross_key_checks():
    from cosmicflow.config import check_config

    for path in ("config/config.yaml", "config/paper.yaml", ".test/config/config.yaml"):
        cfg = yaml.safe_load((REPO / path).read_text())
        validate(cfg, SCHEMA)
        check_config(cfg)


def test_unknown_key_gives_one_short_line():
    from cosmicflow.config import schema_error_message

    cfg = default_config()
    cfg["integrate"]["particles_per_energi"] = 10
    msg = schema_error_message(cfg, yaml.safe_load(Path(SCHEMA).read_text()))
    assert msg.startswith("config key integrate: unknown key(s) ['particles_per_energi']")
    assert "\n" not in msg and len(msg) < 1000


def test_realisations_from_path_list_and_seeds():
    from cosmicflow.config import realisation_source, realisations

    files = {"source": "athenak", "path": ["a.00001.bin", "a.00002.bin"], "units": {}}
    assert [realisation_source(r) for r in realisations(files)] == ["a.00001.bin", "a.00002.bin"]
    seeds = {"source": "multiphase", "grid": 32, "seed": 0, "seeds": [7, 9]}
    assert [realisation_source(r) for r in realisations(seeds)] == ["seed=7", "seed=9"]
    assert all("seeds" not in r for r in realisations(seeds))
    single = {"source": "kolmogorov", "grid": 32, "seed": 4}
    assert realisations(single) == [single]  # unchanged: same params, no rerun


def test_plan_geometry_reads_the_athenak_header_only(athenak_data):
    from cosmicflow.config import plan_geometry

    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    m = dict(cfg["media"]["multiphase"], path=str(athenak_data / "ism-48" / "ISM48.mhd_w_bcc.00002.bin"))
    cells, cell_pc = plan_geometry(m)
    assert cells == 48**3 and cell_pc > 0
    m2 = dict(m, downsample=2)
    assert plan_geometry(m2) == (cells // 8, cell_pc * 2)
