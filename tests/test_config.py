"""The workflow config schema: defaults fill in, bad configs are refused readably."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
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
