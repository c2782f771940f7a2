"""One phase rule (cosmicflow.phase_rule) behind every stage, and docs that agree with it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np

from cosmicflow import gradients, phase_rule, phases, synthetic

REPO = Path(__file__).resolve().parents[1]


def test_stages_use_the_one_phase_rule():
    assert phases.phase_index is phase_rule.phase_index
    assert gradients.phase_index is phase_rule.phase_index
    assert synthetic.phase_index is phase_rule.phase_index
    assert not hasattr(phases, "_check_thresholds")


def test_defaults_come_from_phase_rule():
    for func in (phases.phase_statistics, phases.phase_slices, gradients.gradient_statistics,
                 synthetic.phase_fractions):
        default = inspect.signature(func).parameters["thresholds_K"].default
        assert default is phase_rule.DEFAULT_THRESHOLDS_K, func.__name__
    sig = inspect.signature(synthetic.multiphase).parameters
    assert (sig["t_cnm_K"].default, sig["t_wnm_K"].default) == phase_rule.DEFAULT_THRESHOLDS_K


def test_no_stage_repeats_the_defaults_or_the_phase_count():
    """The default thresholds, names and the number 3 of phases are written once, in
    cosmicflow.phase_rule (the integrate package included)."""
    pattern = re.compile(r"\(200\.0, 5000\.0\)|\(\"CNM\", \"UNM\", \"WNM\"\)|minlength=3\b|reshape\(3,")
    offenders = []
    for path in sorted((REPO / "src" / "cosmicflow").rglob("*.py")):
        if path.name == "phase_rule.py":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.name}:{i}: {line.strip()}")
    assert offenders == []


def test_5000_K_is_unm_in_code_and_docs():
    t = np.array([199.9, 200.0, 5000.0, 5000.1])
    assert phases.phase_index(t, phase_rule.DEFAULT_THRESHOLDS_K).tolist() == [0, 1, 1, 2]
    physics = (REPO / "docs" / "physics.md").read_text()
    contracts = (REPO / "docs" / "data-contracts.md").read_text()
    assert "5000 K ≤ WNM" not in physics and "UNM ≤ 5000 K < WNM" in physics
    assert "T₂ ≤ WNM" not in contracts and "UNM ≤ T₂ < WNM" in contracts
