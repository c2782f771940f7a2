"""The factor-of-two traps of this kind of code, each against an exact case.

Covered elsewhere: 2t vs 4t (test_transport.test_denominators_2t_and_4t_exact), unwrapped
displacements (test_integrate.test_periodic_crossing_keeps_displacement_continuous),
cell-centred samples (test_integrate.test_trilinear_matches_reference_with_wrap_and_cell_centres,
test_snapshot, test_fieldlines), code units (test_athenak, test_transport.test_one_pc_in_one_second).
Here: μ against the local field, and Ω from the mean field |<B>|.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from cosmicflow.constants import C_CM_S, PC_CM, larmor_radius_pc
from cosmicflow.integrate import IntegrateSettings, inject, integrate_batch
from cosmicflow.snapshot import read_snapshot, write_snapshot

B0, B1 = 3.0, 4.0  # uG


@pytest.fixture(scope="module")
def tilted_snapshot(tmp_path_factory):
    """B = B0 z + B1 sin(2 pi x / L) x: the local field tilts by up to 53 degrees from <B> = B0 z."""
    n, box = 32, 100.0
    x = (np.arange(n) + 0.5) * box / n
    shape = (n, n, n)
    f = {c: np.zeros(shape, np.float32) for c in ("by", "vx", "vy", "vz")}
    f["bx"] = np.broadcast_to((B1 * np.sin(2 * np.pi * x / box))[:, None, None], shape).astype(np.float32)
    f["bz"] = np.full(shape, B0, np.float32)
    f["density"] = np.ones(shape, np.float32)
    f["temperature"] = np.full(shape, 8000.0, np.float32)
    return write_snapshot(tmp_path_factory.mktemp("conv") / "tilted.h5", f, box)


def test_pitch_angle_is_measured_against_the_local_field(tilted_snapshot, tmp_path):
    snap = read_snapshot(tilted_snapshot)
    rng = np.random.default_rng(5)
    pos, d, mu = inject(snap.fields, snap.origin_pc, snap.box_pc, 300, rng, mu0=[0.5])
    # the injected direction makes mu = 0.5 with the LOCAL (interpolated) field...
    x = (pos[:, 0] - snap.origin_pc[0]) / snap.box_pc[0]
    # trilinear interpolation of a sine on 32 cells: |B| error ~ (k dx)^2/8 ~ 5e-3 of B1
    bloc = np.stack([B1 * np.sin(2 * np.pi * x), np.zeros_like(x), np.full_like(x, B0)], 1)
    mu_local = np.sum(d * bloc, 1) / np.linalg.norm(bloc, axis=1)
    np.testing.assert_allclose(mu_local, 0.5, atol=5e-3)
    # ...which is not the cosine with the mean field z for most particles
    assert np.mean(np.abs(d[:, 2] - 0.5) > 0.05) > 0.5
    # and the integrator records the same local mu at t = 0
    out = integrate_batch(tilted_snapshot, tmp_path / "b.h5", energy_pev=2.5, n_particles=60,
                          injection="mono", mu0=[0.5], progress=False,
                          settings=IntegrateSettings(duration_gyroperiods=1.0, output_times=4))
    ds = xr.load_dataset(out, engine="h5netcdf")
    np.testing.assert_allclose(ds["mu"].values[:, 0], 0.5, atol=1e-12)


def test_gyrofrequency_uses_the_mean_field_not_the_rms(tilted_snapshot, tmp_path):
    out = integrate_batch(tilted_snapshot, tmp_path / "b.h5", energy_pev=5.0, n_particles=8,
                          progress=False, settings=IntegrateSettings(duration_gyroperiods=1.0,
                                                                     output_times=4))
    ds = xr.load_dataset(out, engine="h5netcdf")
    b_ref = float(np.squeeze(ds.attrs["b_ref_uG"]))
    assert b_ref == pytest.approx(B0, rel=1e-6)  # |<B>| = B0, while B_rms = sqrt(B0^2 + B1^2/2)
    r_l = larmor_radius_pc(5.0, B0)
    assert float(np.squeeze(ds.attrs["larmor_radius_pc"])) == pytest.approx(r_l, rel=1e-6)
    assert float(np.squeeze(ds.attrs["omega_ref_rad_s"])) == pytest.approx(C_CM_S / (r_l * PC_CM), rel=1e-6)
    # output times are in units of that Omega: t * Omega = t_omega
    np.testing.assert_allclose(ds["time"].values * C_CM_S / (r_l * PC_CM), ds["t_omega"].values,
                               rtol=1e-9)
    np.testing.assert_allclose(np.squeeze(ds.attrs["mean_field_direction"]), [0, 0, 1], atol=1e-7)


def test_phase_rule_is_the_same_for_maps_and_particles():
    """T exactly at a threshold: 200 K and 5000 K are UNM everywhere (paper: WNM T > 5000 K)."""
    from cosmicflow.integrate import _phase_of, phase_grid
    from cosmicflow.phases import phase_index
    from cosmicflow.synthetic import phase_fractions

    t = np.array([50.0, 199.999, 200.0, 1000.0, 5000.0, 5000.001, 1e4], dtype=np.float32)
    expected = [0, 0, 1, 1, 1, 2, 2]
    np.testing.assert_array_equal(phase_index(t, (200.0, 5000.0)), expected)
    np.testing.assert_array_equal(phase_grid(t.reshape(1, 1, -1), (200.0, 5000.0)).ravel(), expected)
    assert [_phase_of(np.float64(x), 200.0, 5000.0) for x in t] == expected
    vol, _ = phase_fractions(np.ones((1, 1, t.size)), t.reshape(1, 1, -1))
    np.testing.assert_allclose(vol, np.bincount(expected, minlength=3) / t.size)


def test_integrate_refuses_a_run_bigger_than_the_machine(tilted_snapshot, tmp_path, monkeypatch):
    """The memory check happens before any work and names what it needs (issue: scale-out)."""
    import cosmicflow.resources as res

    monkeypatch.setattr(res, "available_memory_mb", lambda: 100)
    out = tmp_path / "b.h5"
    with pytest.raises(MemoryError, match=r"integrate of 10 particles through .*tilted.h5 .*needs about \d+ MB but only 100 MB"):
        integrate_batch(tilted_snapshot, out, energy_pev=2.5, n_particles=10, progress=False,
                        settings=IntegrateSettings(duration_gyroperiods=1.0, output_times=4))
    assert not out.exists()
