"""Fabricated particle batches in the layout of docs/data-contracts.md ("Particle batch").

Lets the transport stage be tested on trajectories with known statistics (random walks with a
known D, free streaming, hard-sphere pitch-angle jumps) without running the integrator.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr

from cosmicflow.constants import C_CM_S, PC_CM, gyrofrequency_rad_s, larmor_radius_pc

PHASES = ["CNM", "UNM", "WNM"]
#: speed of light [pc s^-1]
C_PC_S = C_CM_S / PC_CM


def orthonormal_frame(b0hat) -> np.ndarray:
    """Rows (B̂0, e1, e2): a right-handed orthonormal frame with B̂0 first."""
    b = np.asarray(b0hat, float)
    b = b / np.linalg.norm(b)
    trial = np.array([1.0, 0.0, 0.0]) if abs(b[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = trial - (trial @ b) * b
    e1 /= np.linalg.norm(e1)
    return np.stack([b, e1, np.cross(b, e1)])


def log_times(n_out: int, t_first: float, t_end: float) -> np.ndarray:
    """t = 0 followed by ``n_out`` log-spaced output times from t_first to t_end [s]."""
    return np.concatenate([[0.0], np.geomspace(t_first, t_end, n_out)])


def make_batch(
    time,
    displacement,
    *,
    phase_displacement=None,
    phase_time=None,
    mu=None,
    energy_PeV: float = 2.5,
    b_ref_uG: float = 3.0,
    b0hat=(0.0, 0.0, 1.0),
    injection: str = "isotropic",
    medium: str = "synthetic",
    batch: int = 0,
    seed: int = 0,
    subgrid_nu_over_omega: float = 0.0,
) -> xr.Dataset:
    """A contract-conforming particle batch Dataset from arrays.

    ``displacement`` is (particle, time, 3) [pc]; by default all of it is accumulated in the
    WNM (last phase) and all time spent there; ``mu`` defaults to zeros.
    """
    time = np.asarray(time, float)
    disp = np.asarray(displacement, float)
    n, nt, _ = disp.shape
    if phase_displacement is None:
        phase_displacement = np.zeros((n, nt, 3, 3))
        phase_displacement[:, :, -1, :] = disp
    if phase_time is None:
        phase_time = np.zeros((n, nt, 3))
        phase_time[:, :, -1] = time
    if mu is None:
        mu = np.zeros((n, nt))
    mu = np.asarray(mu, float)
    b0hat = np.asarray(b0hat, float) / np.linalg.norm(b0hat)
    omega = gyrofrequency_rad_s(energy_PeV, b_ref_uG)
    rl = larmor_radius_pc(energy_PeV, b_ref_uG)
    edges = np.geomspace(1e-4, 10.0, 9)
    ds = xr.Dataset(
        {
            "t_omega": ("time", time * omega, {"units": "1"}),
            "displacement": (("particle", "time", "component"), disp, {"units": "pc"}),
            "phase_displacement": (
                ("particle", "time", "phase", "component"),
                np.asarray(phase_displacement, float),
                {"units": "pc"},
            ),
            "phase_time": (("particle", "time", "phase"), np.asarray(phase_time, float), {"units": "s"}),
            "mu": (("particle", "time"), mu, {"units": "1"}),
            "mu0_injected": ("particle", mu[:, 0].copy(), {"units": "1"}),
            "position0": (("particle", "component"), np.zeros((n, 3)), {"units": "pc"}),
            "hist_dmu_dB": (("dmu_bin", "dB_bin"), np.zeros((8, 8), np.int64), {"units": "count"}),
            "hist_dmu_dT": (("dmu_bin", "dT_bin"), np.zeros((8, 8), np.int64), {"units": "count"}),
            "hist_epsilon": (("phase", "eps_bin"), np.zeros((3, 8), np.int64), {"units": "count"}),
            "dmu_edges": ("dmu_edge", edges, {"units": "1"}),
            "dB_edges": ("dB_edge", edges, {"units": "uG"}),
            "dT_edges": ("dT_edge", edges, {"units": "K"}),
            "eps_edges": ("eps_edge", edges, {"units": "1"}),
            "traj_position": (("traj", "sample", "component"), disp[:1, :, :], {"units": "pc"}),
            "traj_t_omega": (("traj", "sample"), (time * omega)[None, :], {"units": "1"}),
            "traj_mu": (("traj", "sample"), mu[:1], {"units": "1"}),
            "traj_B": (("traj", "sample"), np.full((1, nt), b_ref_uG), {"units": "uG"}),
            "traj_T": (("traj", "sample"), np.full((1, nt), 8000.0), {"units": "K"}),
        },
        coords={
            "time": ("time", time, {"units": "s"}),
            "component": ["x", "y", "z"],
            "phase": PHASES,
        },
        attrs={
            "medium": medium,
            "energy_PeV": float(energy_PeV),
            "charge": 1,
            "injection": injection,
            "batch": int(batch),
            "seed": int(seed),
            "b_ref_uG": float(b_ref_uG),
            "mean_field_uG": (b_ref_uG * b0hat).tolist(),
            "mean_field_direction": b0hat.tolist(),
            "larmor_radius_pc": rl,
            "omega_ref_rad_s": omega,
            "duration_gyroperiods": float(time[-1] * omega / (2 * math.pi)),
            "max_rotation_rad": 0.1,
            "max_step_cells": 0.5,
            "subgrid_nu_over_omega": float(subgrid_nu_over_omega),
            "phase_thresholds_K": [200.0, 5000.0],
            "particle_speed_pc_s": C_PC_S,
        },
    )
    return ds


def write_batch(ds: xr.Dataset, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def random_walk(
    rng: np.random.Generator,
    n: int,
    time,
    d_par: float,
    d_perp: float,
    b0hat=(0.0, 0.0, 1.0),
    phase_probabilities=None,
):
    """Anisotropic Brownian displacements with diffusion coefficients d_par, d_perp [pc^2 s^-1].

    Exact in distribution at the output times: increments over Δt are Gaussian with variance
    2 D Δt along B̂0 and along each of the two perpendicular axes. If ``phase_probabilities``
    (3,) is given, each (particle, interval) is assigned a random phase and its increment and
    Δt are accumulated into that phase. Returns (displacement, phase_displacement, phase_time).
    """
    time = np.asarray(time, float)
    dt = np.diff(time)
    frame = orthonormal_frame(b0hat)
    sig = np.sqrt(2 * np.array([d_par, d_perp, d_perp])[None, None, :] * dt[None, :, None])
    inc_local = rng.normal(size=(n, dt.size, 3)) * sig
    inc = inc_local @ frame  # rows of frame are the local axes in xyz
    disp = np.concatenate([np.zeros((n, 1, 3)), np.cumsum(inc, axis=1)], axis=1)
    if phase_probabilities is None:
        return disp, None, None
    ph = rng.choice(3, size=(n, dt.size), p=phase_probabilities)
    onehot = np.eye(3)[ph]  # (n, interval, phase)
    pinc = onehot[..., None] * inc[:, :, None, :]
    pdisp = np.concatenate([np.zeros((n, 1, 3, 3)), np.cumsum(pinc, axis=1)], axis=1)
    ptime = np.concatenate([np.zeros((n, 1, 3)), np.cumsum(onehot * dt[None, :, None], axis=1)], axis=1)
    return disp, pdisp, ptime


def hard_sphere_helices(
    rng: np.random.Generator,
    time,
    omega: float,
    nu: float,
    b0hat=(0.0, 0.0, 1.0),
    n: int | None = None,
    mu0=None,
):
    """Exact gyration about a uniform B0 with isotropic hard-sphere scattering at rate ν.

    Particles move at c on helices (rotation by Ω h per step, positions from the exact helix
    arc); at the end of each step the direction is redrawn isotropically with probability
    1 − e^{−νh}. With h ≤ 0.1/max(Ω, ν) the discrete holding times change D by a factor
    1 + (νh)²/12 < 1.001 (Green–Kubo sum of a geometric correlation). Output times are
    rounded to multiples of h. Injection: isotropic (``n`` particles) or given ``mu0``
    (random gyrophase). Returns (time, displacement [pc], mu).
    """
    h = 0.1 / max(omega, nu)
    steps = np.unique(np.maximum(1, np.round(np.asarray(time, float)[1:] / h).astype(np.int64)))
    mu0 = rng.uniform(-1, 1, n) if mu0 is None else np.asarray(mu0, float)
    n = mu0.size
    phi = rng.uniform(0, 2 * np.pi, n)
    s = np.sqrt(1 - mu0**2)
    v = np.stack([s * np.cos(phi), s * np.sin(phi), mu0], axis=1)  # in the B0 frame, |v| = 1
    r = np.zeros((n, 3))
    c, sn = math.cos(omega * h), math.sin(omega * h)
    p_hit = -math.expm1(-nu * h)
    disp = np.zeros((n, steps.size + 1, 3))
    mu = np.empty((n, steps.size + 1))
    mu[:, 0] = mu0
    step = 0
    for k, target in enumerate(steps, start=1):
        while step < target:
            vx, vy = v[:, 0].copy(), v[:, 1].copy()
            r[:, 0] += (vx * sn + vy * (1 - c)) / omega
            r[:, 1] += (vy * sn - vx * (1 - c)) / omega
            r[:, 2] += v[:, 2] * h
            v[:, 0], v[:, 1] = vx * c + vy * sn, vy * c - vx * sn
            hit = rng.random(n) < p_hit
            if hit.any():
                u = rng.normal(size=(int(hit.sum()), 3))
                v[hit] = u / np.linalg.norm(u, axis=1, keepdims=True)
            step += 1
        disp[:, k] = r
        mu[:, k] = v[:, 2]
    frame = orthonormal_frame(b0hat)  # B0-frame (z along B0) -> xyz
    disp = C_PC_S * disp[..., [2, 0, 1]] @ frame  # (along B0, e1, e2) components
    return np.concatenate([[0.0], steps * h]), disp, mu


def labelled_ou_walk(
    rng: np.random.Generator,
    n: int,
    n_steps: int,
    dt: float,
    tau: float,
    sigma_v: float,
    out_steps,
    next_labels,
    n_groups: int,
    speed=None,
):
    """Ornstein–Uhlenbeck velocities with a group label per step, accumulated per group.

    Each velocity component follows the exact AR(1) update v ← a v + σ_v √(1 − a²) ξ with
    a = e^{−dt/τ} (correlation time ``tau`` [s], stationary rms ``sigma_v`` [pc s^-1] per
    component, so D = σ_v² τ per component at t ≫ τ); a step's increment is
    ``speed[label]`` · v dt. ``next_labels(rng, labels)`` returns the (n,) labels of the next
    step from the previous ones (−1 before the first step). Outputs at the step counts
    ``out_steps`` (increasing, > 0), with t = 0 prepended. Returns (time [s], displacement
    (n, nt, 3) [pc], group_displacement (n, nt, G, 3) [pc], group_time (n, nt, G) [s]).
    """
    a = math.exp(-dt / tau)
    b = sigma_v * math.sqrt(1.0 - a * a)
    speed = np.ones(n_groups) if speed is None else np.asarray(speed, float)
    out_steps = np.asarray(out_steps, dtype=np.int64)
    v = rng.normal(size=(n, 3)) * sigma_v
    labels = np.full(n, -1)
    r = np.zeros((n, 3))
    g_r = np.zeros((n, n_groups, 3))
    g_t = np.zeros((n, n_groups))
    nt = out_steps.size + 1
    disp = np.zeros((n, nt, 3))
    gdisp = np.zeros((n, nt, n_groups, 3))
    gtime = np.zeros((n, nt, n_groups))
    k_out = 0
    rows = np.arange(n)
    for step in range(1, int(out_steps[-1]) + 1):
        labels = next_labels(rng, labels)
        inc = speed[labels][:, None] * v * dt
        r += inc
        g_r[rows, labels] += inc
        g_t[rows, labels] += dt
        v = a * v + b * rng.normal(size=(n, 3))
        if step == out_steps[k_out]:
            k_out += 1
            disp[:, k_out], gdisp[:, k_out], gtime[:, k_out] = r, g_r, g_t
    time = np.concatenate([[0.0], out_steps * dt])
    return time, disp, gdisp, gtime


def random_labels(probabilities):
    """``next_labels`` for :func:`labelled_ou_walk`: an independent draw per step."""
    p = np.asarray(probabilities, float)

    def draw(rng, labels):
        return rng.choice(p.size, size=labels.size, p=p)

    return draw


def with_classes(
    ds: xr.Dataset,
    joint_displacement,
    joint_time,
    class_labels=("eps<0.1", "0.1<=eps<1", "eps>=1"),
    scatter_counts=None,
) -> xr.Dataset:
    """Add the adiabaticity-class variables of the batch contract to a batch Dataset.

    ``joint_displacement`` (particle, time, phase, eps_class, 3) [pc] and ``joint_time``
    (particle, time, phase, eps_class) [s] hold the per-(phase, class) accumulators; the phase
    and class variables are their sums, as the pusher's recorder defines them.
    ``scatter_counts`` (phase, eps_bin) fills ``hist_epsilon_scatter`` (zeros by default).
    """
    jd = np.asarray(joint_displacement, float)
    jt = np.asarray(joint_time, float)
    nb = ds.sizes["eps_bin"]
    counts = np.zeros((3, nb), np.int64) if scatter_counts is None else np.asarray(scatter_counts, np.int64)
    out = ds.assign(
        phase_displacement=(("particle", "time", "phase", "component"), jd.sum(axis=3), {"units": "pc"}),
        phase_time=(("particle", "time", "phase"), jt.sum(axis=3), {"units": "s"}),
        class_displacement=(("particle", "time", "eps_class", "component"), jd.sum(axis=2), {"units": "pc"}),
        class_time=(("particle", "time", "eps_class"), jt.sum(axis=2), {"units": "s"}),
        phase_class_time=(("particle", "time", "phase", "eps_class"), jt, {"units": "s"}),
        hist_epsilon_scatter=(("phase", "eps_bin"), counts, {"units": "count"}),
    )
    out = out.assign_coords(eps_class=list(class_labels))
    out.attrs.update({"eps_class_edges": [0.1, 1.0], "scatter_dmu_threshold": 0.1})
    return out
