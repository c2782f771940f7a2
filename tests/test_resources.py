"""Cost model used by profiles and run-time memory checks."""

from __future__ import annotations

import math

import pytest

from cosmicflow import resources
from cosmicflow.constants import larmor_radius_pc


def test_snapshot_and_integrate_memory_scale_with_cells():
    assert resources.snapshot_bytes((2048, 2048, 2048)) == 2048**3 * 32
    small = resources.integrate_memory_mb(128**3, 100, 60)
    big = resources.integrate_memory_mb(2048**3, 100, 60)
    # 2048^3 x 16 bytes = 128 GiB of mapped field cache
    assert big - small == pytest.approx((2048**3 - 128**3) * 16 / 1024**2, abs=1)
    # particle records: 100 particles x 60 outputs x 16 float64 without class accounting,
    # 16 + 3 x 3 (class displacement) + 3 (class time) + 3 x 3 (phase x class time) with it
    plain = resources.integrate_memory_mb(128**3, 100, 60, class_accounting=False)
    assert resources.integrate_memory_mb(128**3, 10100, 60, class_accounting=False) - plain == (
        pytest.approx(10000 * 60 * 16 * 8 / 1024**2, abs=1))
    assert resources.integrate_memory_mb(128**3, 10100, 60) - small == pytest.approx(
        10000 * 60 * 37 * 8 / 1024**2, abs=1)
    # the compact field layout maps 8 bytes per cell instead of 16
    compact = resources.integrate_memory_mb(2048**3, 100, 60, field_layout="compact")
    assert big - compact == pytest.approx(2048**3 * 8 / 1024**2, abs=1)
    with pytest.raises(ValueError, match="field_layout"):
        resources.integrate_memory_mb(128**3, 100, 60, field_layout="half")


def test_steps_per_gyroperiod_follows_step_rule():
    # r_L = 10 cells, 0.5-cell steps: the path limit wins, 2 pi r_L / (0.5 dx) steps per orbit
    assert resources.steps_per_gyroperiod(10.0, 0.1, 0.5, 1.0) == pytest.approx(2 * math.pi * 20)
    # r_L = 1 cell: the rotation limit wins, 2 pi B_max/B_ref / 0.1
    assert resources.steps_per_gyroperiod(1.0, 0.1, 0.5, 3.0) == pytest.approx(2 * math.pi * 30)


def test_runtime_scales_with_particles_duration_threads():
    cell = 100.0 / 128
    t1 = resources.integrate_runtime_min(100, 100, 5.0, 3.0, cell)
    assert resources.integrate_runtime_min(200, 100, 5.0, 3.0, cell) == pytest.approx(2 * t1)
    assert resources.integrate_runtime_min(100, 200, 5.0, 3.0, cell) == pytest.approx(2 * t1)
    assert resources.integrate_runtime_min(100, 100, 5.0, 3.0, cell, threads=2) == pytest.approx(t1 / 2)
    r_cells = larmor_radius_pc(5.0, 3.0) / cell
    steps = 100 * resources.steps_per_gyroperiod(r_cells)
    assert t1 == pytest.approx(100 * steps * resources.ns_per_particle_step(128**3) * 1e-9 / 60)


def test_cost_per_step_interpolates_measurements_and_grows_beyond():
    ns = resources.ns_per_particle_step
    table = resources.NS_PER_PARTICLE_STEP_MEASURED
    assert ns(128**3) == pytest.approx(table[("full", True)][128**3])  # default: full, classes on
    assert ns(32**3, "full", False) < ns(64**3, "full", False) < ns(128**3, "full", False)
    assert ns(128**3, "full", False) < ns(512**3, "full", False) < ns(2048**3, "full", False)
    assert ns(8**3) == pytest.approx(ns(32**3))  # below the smallest measurement: flat
    # the layout and the class recorder enter the runtime model, by their measured ratio
    cell = 100.0 / 128
    base = resources.integrate_runtime_min(100, 100, 5.0, 3.0, cell, class_accounting=False)
    for layout, classes in table:
        t = resources.integrate_runtime_min(100, 100, 5.0, 3.0, cell, field_layout=layout,
                                            class_accounting=classes)
        assert t / base == pytest.approx(ns(128**3, layout, classes) / ns(128**3, "full", False))
    with pytest.raises(ValueError, match="field_layout"):
        ns(128**3, "half")


def test_require_memory_refuses_impossible_request():
    with pytest.raises(MemoryError, match="needs about .* MB but only"):
        resources.require_memory(10**12, "integrate of a 1e12 MB test")
    resources.require_memory(1, "a tiny job")
