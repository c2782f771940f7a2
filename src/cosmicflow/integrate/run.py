r"""A run: injection, the kernel parameters, the segment loop with checkpoints, the batch file.

:func:`integrate_particles` pushes given particles through given fields and returns plain
arrays; :func:`integrate_batch` is one workflow job: it injects a seeded batch, runs it (with
a checkpoint it resumes from after a kill) and writes the particle batch file
(``docs/data-contracts.md``, "Particle batch"). Reference values: Ω_ref = c / r_L(B_ref), with
B_ref = |⟨B⟩| unless configured; "gyro-periods" are 2π/Ω_ref.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time as _time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from cosmicflow.constants import LARMOR_PC_PER_PEV_UG
from cosmicflow.integrate import push
from cosmicflow.integrate.field import (
    GRID_VALUES,
    LAYOUTS,
    build_field,
    cell_coordinates,
    field_view,
    interpolate,
    phase_volume_fraction,
    read_field_cache,
)
from cosmicflow.integrate.push import Params, Particles
from cosmicflow.integrate.recorders import RECORDERS, Records, RunContext, record_params
from cosmicflow.integrate.settings import IntegrateSettings, output_t_omega
from cosmicflow.integrate.step import C_PC_S, ScatterRates, StepParams
from cosmicflow.io import InputError, atomic_output, provenance_attrs
from cosmicflow.resources import integrate_memory_mb, require_memory
from cosmicflow.snapshot import read_snapshot

log = logging.getLogger(__name__)

INJECTIONS = ("isotropic", "mono")
#: particles sharing one set of histograms inside the parallel loop (results do not depend on it)
MAX_CHUNKS = 64
_PARTICLE_KEYS = Particles._fields


def batch_seed(seed: int, medium: str, energy_pev: float, injection: str, batch: int):
    """SeedSequence for one (medium, energy, injection, batch): stable across runs and machines."""
    return np.random.SeedSequence([
        int(seed), zlib.crc32(medium.encode()), int(round(energy_pev * 1e6)),
        INJECTIONS.index(injection), int(batch),
    ])


def _unit_perp(b):
    """Two unit vectors e1, e2 with (b̂, e1, e2) right-handed, per row of b (n, 3)."""
    bh = b / np.linalg.norm(b, axis=1, keepdims=True)
    helper = np.where(np.abs(bh[:, [0]]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    e1 = np.cross(bh, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    return bh, e1, np.cross(bh, e1)


def inject(snap_fields: Mapping[str, np.ndarray], origin_pc, box_pc, n: int,
           rng: np.random.Generator, mu0: Sequence[float] | None = None):
    """Injection positions uniform over the box and directions with a given local μ.

    Isotropic (``mu0=None``): μ uniform in [−1, 1] with respect to the local field, gyrophase
    uniform — the same as isotropic in space. Mono: the ``n`` particles are split in equal
    consecutive blocks over the ``mu0`` values, each with a random gyrophase.
    Returns ``(position0 [pc] (n, 3), direction0 (n, 3), mu0 (n,))``.
    """
    origin = np.broadcast_to(np.asarray(origin_pc, dtype=np.float64), (3,))
    box = np.broadcast_to(np.asarray(box_pc, dtype=np.float64), (3,))
    pos = origin + rng.random((n, 3)) * box
    if mu0 is None:
        mu = rng.uniform(-1.0, 1.0, n)
    else:
        vals = np.asarray(mu0, dtype=np.float64)
        if vals.size == 0 or np.any(np.abs(vals) > 1):
            raise ValueError(f"mu0 must be a non-empty list of values in [-1, 1], got {mu0}")
        counts = [len(a) for a in np.array_split(np.arange(n), vals.size)]
        mu = np.repeat(vals, counts)
    phi = rng.uniform(0.0, 2.0 * math.pi, n)
    shape = snap_fields["bx"].shape
    cell = box / np.asarray(shape)
    b = np.stack([interpolate(snap_fields[c], pos, origin, cell) for c in ("bx", "by", "bz")], 1)
    bh, e1, e2 = _unit_perp(b)
    sperp = np.sqrt(1.0 - mu**2)[:, None]
    d = mu[:, None] * bh + sperp * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return pos, d, mu


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------


def _save_checkpoint(path: Path, key: str, k_done: int, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, key=np.array(key), k_done=np.array(k_done), **state)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, key: str, keys: Sequence[str]):
    """(outputs done, state) from a checkpoint of the same run holding every name in keys."""
    try:
        with np.load(path) as z:
            if str(z["key"]) != key:
                log.warning("%s belongs to a different run; starting over", path)
                return None
            missing = set(keys) - set(z.files)
            if missing:
                raise KeyError(f"no {sorted(missing)}")
            return int(z["k_done"]), {k: z[k].copy() for k in z.files if k not in ("key", "k_done")}
    except (OSError, ValueError, KeyError) as err:
        log.warning("unreadable checkpoint %s (%s); starting over", path, err)
        return None


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------


def scatter_rates(settings: IntegrateSettings, energy_pev: float, rl_ref: float) -> ScatterRates:
    """The scattering slot's rates ν/c [pc^-1] at energy E [PeV] for r_L(B_ref) = rl_ref [pc]:
    ν/Ω_ref from the rate model (:meth:`ScatteringSettings.rates_over_omega`) divided by
    r_L,ref = c/Ω_ref."""
    nu, b_mm, nu_mm = settings.scattering_model().rates_over_omega(energy_pev)
    return ScatterRates(nu / rl_ref, float(b_mm), nu_mm / rl_ref,
                        bool(np.any(nu > 0) or nu_mm > 0))


def integrate_particles(
    fields: Mapping[str, np.ndarray],
    origin_pc,
    box_pc,
    position0: np.ndarray,
    direction0: np.ndarray,
    *,
    energy_pev: float,
    settings: IntegrateSettings,
    rng_seeds: np.ndarray | None = None,
    trajectories: int | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_key: str = "",
    progress: bool = False,
    grid: np.ndarray | None = None,
    grid_scales: tuple[float, float] = (1.0, 1.0),
    mean_field_ug: Sequence[float] | None = None,
    kernel: str = "grouped",
) -> dict[str, Any]:
    """Integrate particles from given initial positions [pc] and unit directions.

    ``fields`` holds float32 ``bx, by, bz`` [µG] and ``temperature`` [K] on the cell-centred
    periodic grid (memory maps are used as they are, without a copy). Returns a dict of plain
    arrays and scalars (see :func:`integrate_batch` for the file written from it).
    ``checkpoint``: path of an ``.npz`` saved at output times (at most every
    ``settings.checkpoint_interval_s`` seconds) and resumed from when its key matches.
    ``grid``: the padded field in ``settings.field_layout`` (:func:`~.field.padded_field` or
    :func:`~.field.compact_field`, e.g. memory-mapped from a field cache,
    :func:`~.field.read_field_cache`), with its ``grid_scales`` (scale_b [µG], scale_t [K]) if
    compact; built in memory from ``fields`` if omitted.
    ``mean_field_ug``: ⟨B⟩ [µG] when already known (:meth:`Snapshot.mean_field_ug`), so a job
    need not scan the whole field; computed from ``fields`` if omitted.
    ``kernel``: ``"grouped"`` (lanes and prefetching, the default) or ``"reference"`` (one
    particle at a time; same results, for the benchmark).
    """
    settings.check()
    bx, by, bz, temp = (np.asarray(fields[k]) for k in ("bx", "by", "bz", "temperature"))
    for name, a in (("bx", bx), ("by", by), ("bz", bz), ("temperature", temp)):
        if a.dtype != np.float32 or a.ndim != 3 or a.shape != bx.shape:
            raise ValueError(f"field {name} must be 3-D float32 of one shape, got {a.dtype} {a.shape}")
    shape = bx.shape
    origin = np.broadcast_to(np.asarray(origin_pc, dtype=np.float64), (3,)).copy()
    box = np.broadcast_to(np.asarray(box_pc, dtype=np.float64), (3,)).copy()
    cell_pc = box / np.asarray(shape)
    pos0 = np.ascontiguousarray(position0, dtype=np.float64)
    dir0 = np.ascontiguousarray(direction0, dtype=np.float64)
    n = len(pos0)
    if pos0.shape != (n, 3) or dir0.shape != (n, 3) or n == 0:
        raise ValueError(f"position0 and direction0 must be (n, 3) with n > 0, got "
                         f"{pos0.shape}, {dir0.shape}")
    if not (np.all(np.isfinite(pos0)) and np.all(np.isfinite(dir0))):
        raise ValueError("position0 and direction0 must be finite")
    if np.max(np.abs(np.linalg.norm(dir0, axis=1) - 1.0)) > 1e-12:
        raise ValueError("direction0 rows must be unit vectors")
    if energy_pev <= 0:
        raise ValueError(f"energy must be > 0 PeV, got {energy_pev}")
    advance = {"grouped": push._advance, "reference": push._advance_reference}.get(kernel)
    if advance is None:
        raise ValueError(f"kernel must be 'grouped' or 'reference', got {kernel!r}")

    mean_b = (np.array([float(np.mean(a, dtype=np.float64)) for a in (bx, by, bz)])
              if mean_field_ug is None else np.asarray(mean_field_ug, dtype=np.float64))
    b_ref = settings.b_ref_uG if settings.b_ref_uG is not None else float(np.linalg.norm(mean_b))
    if not b_ref > 0:
        raise ValueError("the mean field |<B>| is zero; set particles.b_ref_uG")
    r1 = LARMOR_PC_PER_PEV_UG * energy_pev / settings.charge  # r_L at 1 uG [pc]
    rl_ref = r1 / b_ref
    two_pi = 2.0 * math.pi
    t_omega = output_t_omega(settings.duration_gyroperiods, settings.output_times,
                             settings.first_output_gyroperiods)
    s_out = t_omega * rl_ref  # path length c t [pc] at the output times
    n_traj = min(n, settings.trajectories if trajectories is None else trajectories)
    n_samp = int(math.floor(settings.duration_gyroperiods
                            * settings.trajectory_samples_per_gyroperiod)) + 1
    geom = 1.0 / cell_pc
    par = Params(
        step=StepParams(r1=r1, max_rot=float(settings.max_rotation_rad),
                        max_len=settings.max_step_cells * cell_pc.min(),
                        t1=float(settings.phase_thresholds_K[0]),
                        t2=float(settings.phase_thresholds_K[1]),
                        inv_dx=geom[0], inv_dy=geom[1], inv_dz=geom[2],
                        nx=float(shape[0]), ny=float(shape[1]), nz=float(shape[2]), rl_ref=rl_ref),
        scatter=scatter_rates(settings, energy_pev, rl_ref),
        record=record_params(settings, rl_ref),
    )
    if grid is None:
        grid, *grid_scales = build_field(fields, settings.field_layout, settings.phase_thresholds_K)
    gshape = tuple(m + 2 for m in shape) + (GRID_VALUES,)
    want = LAYOUTS[settings.field_layout][1]
    if grid.shape != gshape or grid.dtype != want or not grid.flags.c_contiguous:
        raise ValueError(f"padded field grid of layout {settings.field_layout} must be "
                         f"C-contiguous {want} {gshape} for fields of shape {shape}, got "
                         f"{grid.dtype} {grid.shape}")
    field = field_view(grid, *grid_scales)
    nt = len(s_out)
    nchunks = min(n, MAX_CHUNKS)

    keys = _PARTICLE_KEYS + Records._fields
    resumed = (_load_checkpoint(Path(checkpoint), checkpoint_key, keys + ("rec_disp", "rec_mu"))
               if checkpoint and Path(checkpoint).exists() else None)
    if resumed is not None:
        k_done, st = resumed
        log.info("resuming from %s at output %d/%d", checkpoint, k_done, nt - 1)
    else:
        k_done = 0
        b0 = np.stack([interpolate(a, pos0, origin, cell_pc) for a in (bx, by, bz)], 1)
        bm0 = np.linalg.norm(b0, axis=1)
        mu0 = np.einsum("ij,ij->i", dir0, b0) / bm0
        t0 = interpolate(temp, pos0, origin, cell_pc)
        seeds = (np.asarray(rng_seeds, dtype=np.uint64).ravel() if rng_seeds is not None
                 else np.random.SeedSequence(settings.seed).generate_state(n, np.uint64))
        if len(seeds) < n:
            raise ValueError(f"need one RNG seed per particle ({n}), got {len(seeds)}")
        st = {
            "pos": pos0.copy(), "dirn": dir0.copy(), "bprev": bm0,
            "cell": np.ascontiguousarray(cell_coordinates(pos0, origin, cell_pc, shape)),
            "rng": np.array(seeds[:n], dtype=np.uint64),  # a copy: the kernel advances it
            "steps": np.zeros(n, np.int64),
            "rec_disp": np.zeros((n, nt, 3)), "rec_mu": np.zeros((n, nt)),
        }
        st["rec_mu"][:, 0] = mu0
        ctx = RunContext(n=n, nt=nt, nchunks=nchunks, n_traj=n_traj, n_samp=n_samp,
                         settings=settings, params=par.record, mu0=mu0, bmag0=bm0, t0=t0,
                         pos0=pos0)
        for rec in RECORDERS:
            st.update(rec.state(ctx))
    parts = Particles(*(st[k] for k in _PARTICLE_KEYS))
    records = Records(*(st[k] for k in Records._fields))
    mu_out = np.empty(n)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=float(settings.duration_gyroperiods), initial=t_omega[k_done] / two_pi,
                   unit="gyro", desc=f"E={energy_pev:g} PeV, {n} particles",
                   bar_format="{l_bar}{bar}| {n:.3g}/{total:.3g} gyro-periods [{elapsed}<{remaining}]")
    last_save = _time.monotonic()
    try:
        for k in range(k_done + 1, nt):
            advance(s_out[k - 1], s_out[k], nchunks, field, *par, parts, records, mu_out)
            st["rec_disp"][:, k] = st["pos"] - pos0
            st["rec_mu"][:, k] = mu_out
            for rec in RECORDERS:
                rec.at_output(st, k)
            if bar is not None:
                bar.update((t_omega[k] - t_omega[k - 1]) / two_pi)
            now = _time.monotonic()
            if checkpoint and k < nt - 1 and now - last_save >= settings.checkpoint_interval_s:
                _save_checkpoint(Path(checkpoint), checkpoint_key, k, st)
                last_save = now
    finally:
        if bar is not None:
            bar.close()
    omega_ref = C_PC_S / rl_ref
    res = {
        "time_s": t_omega / omega_ref,
        "t_omega": t_omega,
        "displacement": st["rec_disp"],
        "mu": st["rec_mu"],
        "position0": pos0,
        "n_steps": st["steps"],
        "final_direction": st["dirn"],
        "phase_volume_fraction": phase_volume_fraction(temp, settings.phase_thresholds_K),
        "b_ref_uG": b_ref,
        "mean_field_uG": mean_b,
        "larmor_radius_pc": rl_ref,
        "omega_ref_rad_s": omega_ref,
    }
    for rec in RECORDERS:
        res.update(rec.results(st))
    return res


def _scattering_attrs(settings: IntegrateSettings, energy_pev: float) -> dict[str, Any]:
    """The rate model in force and its rates at this job's energy (units of its Ω_ref)."""
    sc = settings.scattering_model()
    nu, b_mm, nu_mm = sc.rates_over_omega(energy_pev)
    return {"scattering_model": sc.model, "scattering_nu_over_omega_phase": nu,
            "scattering_micromirror_b_threshold_uG": float(b_mm),
            "scattering_micromirror_nu_over_omega": float(nu_mm),
            "scattering_energy_law": np.array([sc.e0_PeV, sc.q], dtype=np.float64)}


def _micromirror_attrs(settings: IntegrateSettings, snap) -> dict[str, Any]:
    """f_mm, the volume fraction of cells with |B| above the micromirror threshold (seed 004
    §3.8), for model micromirror: the two-phase law ν_eff = ν + f_mm ν_mm of the transport
    summary needs it (cosmicflow.twophase; issue 14)."""
    sc = settings.scattering_model()
    if sc.model != "micromirror":
        return {}
    from cosmicflow.twophase import micromirror_fraction

    f = snap.fields
    return {"micromirror_volume_fraction": micromirror_fraction(
        f["bx"], f["by"], f["bz"], float(sc.micromirror_b_threshold_uG))}


def _dataset(res: dict, attrs: dict, mu0: np.ndarray, settings: IntegrateSettings):
    import xarray as xr

    n, nt = res["mu"].shape
    data = {
        "t_omega": ("time", res["t_omega"], {"units": "1", "long_name": "time x Omega_ref"}),
        "displacement": (("particle", "time", "component"), res["displacement"],
                         {"units": "pc", "long_name": "r(t) - r(0), unwrapped"}),
        "mu": (("particle", "time"), res["mu"],
               {"units": "1", "long_name": "pitch-angle cosine w.r.t. the local field"}),
        "mu0_injected": ("particle", mu0, {"units": "1", "long_name": "injection mu"}),
        "position0": (("particle", "component"), res["position0"],
                      {"units": "pc", "long_name": "injection position"}),
        "n_steps": ("particle", res["n_steps"], {"units": "1", "long_name": "Boris steps taken"}),
        "phase_volume_fraction": ("phase", res["phase_volume_fraction"], {"units": "1"}),
    }
    coords = {
        "time": ("time", res["time_s"], {"units": "s"}),
        "particle": np.arange(n),
        "component": ["x", "y", "z"],
        "phase": list(settings.phase_names),
    }
    attrs = dict(attrs)
    for rec in RECORDERS:
        v, c, a = rec.variables(res, settings)
        data.update(v)
        coords.update(c)
        attrs.update(a)
    return xr.Dataset(data, coords=coords, attrs=attrs)


def integrate_batch(
    snapshot_path: str | Path,
    output_path: str | Path,
    *,
    energy_pev: float,
    n_particles: int,
    injection: str = "isotropic",
    batch: int = 0,
    medium: str | None = None,
    mu0: Sequence[float] | None = None,
    settings: IntegrateSettings | None = None,
    config: Mapping[str, Any] | None = None,
    progress: bool = True,
    field_cache: str | Path | None = None,
) -> Path:
    """Integrate one particle batch through a canonical snapshot and write its HDF5 file.

    Parameters
    ----------
    snapshot_path : canonical snapshot (``results/{medium}/snapshot.h5``); B is memory-mapped.
    output_path : batch file (layout: ``docs/data-contracts.md``, "Particle batch").
    energy_pev : particle energy E [PeV] (ultra-relativistic, E = pc).
    n_particles : particles in this batch (mono: split evenly over ``mu0``).
    injection : ``"isotropic"`` or ``"mono"`` (then ``mu0`` is required).
    batch : batch number; with ``medium``, E, ``injection`` and ``settings.seed`` it fixes
        the seed, so a rerun is bit-identical. Trajectories are stored from batch 0 only.
    medium : medium name (default: the snapshot's parent folder name).
    settings : :class:`IntegrateSettings`; default from ``config`` (the workflow config) if
        given, else the schema defaults.
    config : stored in the ``config`` attribute for provenance.
    progress : show a tqdm bar advancing between output times.
    field_cache : the snapshot's field cache (:func:`~.field.write_field_cache`),
        memory-mapped and shared with other jobs; without it the padded field is built in
        this process's memory.

    A checkpoint ``<output>.ckpt.npz`` is written at output times; a killed run restarted
    with the same arguments resumes from it and gives the same file. It is removed on success.
    """
    if injection not in INJECTIONS:
        raise ValueError(f"injection must be one of {INJECTIONS}, got {injection!r}")
    if injection == "mono" and not mu0:
        raise ValueError("injection 'mono' needs a non-empty mu0 list")
    if int(n_particles) < 1 or int(batch) < 0:
        raise ValueError(f"need n_particles >= 1 and batch >= 0, got {n_particles}, {batch}")
    if not energy_pev > 0:
        raise ValueError(f"energy must be > 0 PeV, got {energy_pev}")
    snapshot_path, output_path = Path(snapshot_path), Path(output_path)
    medium = medium or snapshot_path.parent.name
    if settings is None:
        settings = IntegrateSettings.from_config(config, injection) if config else IntegrateSettings()
    settings.check()
    snap = read_snapshot(snapshot_path, validate=False)
    # stop before any work when the machine cannot hold the field and the particle records
    cells = int(np.prod(snap.shape))
    needed = integrate_memory_mb(cells, int(n_particles), settings.output_times + 1,
                                 field_layout=settings.field_layout,
                                 class_accounting=settings.class_accounting,
                                 n_classes=len(settings.class_eps_edges) + 1)
    if field_cache is None:  # the padded field built in memory
        needed += cells * LAYOUTS[settings.field_layout][0] // 2**20
    require_memory(needed, f"integrate of {n_particles} particles through {snapshot_path} "
                           f"({'x'.join(map(str, snap.shape))} cells)")
    grid, grid_scales = None, (1.0, 1.0)
    if field_cache is not None:
        grid, *grid_scales = read_field_cache(field_cache, snapshot_path,
                                              layout=settings.field_layout,
                                              thresholds_K=settings.phase_thresholds_K,
                                              with_scales=True)
    rng = np.random.default_rng(batch_seed(settings.seed, medium, energy_pev, injection, batch))
    pos0, dir0, mu_inj = inject(snap.fields, snap.origin_pc, snap.box_pc, int(n_particles), rng,
                                mu0 if injection == "mono" else None)
    seeds = rng.integers(0, 2**63, size=int(n_particles), dtype=np.uint64)
    if np.any(~np.isfinite(mu_inj)):
        raise InputError(f"{snapshot_path}: |B| = 0 at an injection point; mu is undefined")
    run = {
        "snapshot": str(snapshot_path), "medium": medium, "energy_PeV": float(energy_pev),
        "n_particles": int(n_particles), "injection": injection, "batch": int(batch),
        "mu0": list(mu0) if mu0 else None, "settings": asdict(settings),
        "snapshot_created": str(snap.attrs.get("created_utc", "")),
        "snapshot_size": snapshot_path.stat().st_size,
    }
    key = json.dumps({k: v for k, v in run.items() if k != "settings"}
                     | {"settings": {k: v for k, v in asdict(settings).items()
                                     if k != "checkpoint_interval_s"}},
                     sort_keys=True, default=str)
    ckpt = output_path.with_name(output_path.name + ".ckpt.npz")
    res = integrate_particles(
        snap.fields, snap.origin_pc, snap.box_pc, pos0, dir0, energy_pev=energy_pev,
        settings=settings, rng_seeds=seeds, trajectories=settings.trajectories if batch == 0 else 0,
        checkpoint=ckpt, checkpoint_key=key, progress=progress, grid=grid,
        grid_scales=tuple(grid_scales), mean_field_ug=snap.mean_field_ug(),
    )
    mu_inj = res["mu"][:, 0]
    attrs = {
        "medium": medium, "energy_PeV": float(energy_pev), "charge": int(settings.charge),
        "injection": injection, "batch": int(batch),
        "seed": int(settings.seed),
        "b_ref_uG": res["b_ref_uG"], "mean_field_uG": res["mean_field_uG"],
        "mean_field_direction": res["mean_field_uG"] / np.linalg.norm(res["mean_field_uG"])
        if np.linalg.norm(res["mean_field_uG"]) > 0 else np.zeros(3),
        "larmor_radius_pc": res["larmor_radius_pc"], "omega_ref_rad_s": res["omega_ref_rad_s"],
        "duration_gyroperiods": float(settings.duration_gyroperiods),
        "max_rotation_rad": float(settings.max_rotation_rad),
        "max_step_cells": float(settings.max_step_cells),
        "subgrid_nu_over_omega": float(settings.subgrid_nu_over_omega),
        **_scattering_attrs(settings, energy_pev),
        **_micromirror_attrs(settings, snap),
        "phase_thresholds_K": np.asarray(settings.phase_thresholds_K, dtype=np.float64),
        "particle_speed_pc_s": C_PC_S,
        "stats_cadence_gyroperiods": float(settings.stats_cadence_gyroperiods),
        "field_layout": settings.field_layout,
        "mu0_values": np.asarray(mu0 if mu0 else [], dtype=np.float64),
        "snapshot": str(snapshot_path),
        **provenance_attrs("cosmicflow.integrate.integrate_batch",
                           {"run": run, "workflow_config": dict(config) if config else None}),
    }
    ds = _dataset(res, attrs, mu_inj, settings)
    with atomic_output(output_path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    ckpt.unlink(missing_ok=True)
    return output_path
