"""Integration settings: the config sections ``integrate``, ``particles`` and ``phases``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from cosmicflow.phase_rule import DEFAULT_PHASE_NAMES, DEFAULT_THRESHOLDS_K, N_PHASES, check_thresholds

#: keys of the config's ``integrate`` section that the workflow uses, not the integrator
WORKFLOW_KEYS = frozenset({"particles_per_energy", "batches", "mono", "jobs"})
#: keys of ``integrate.mono``
MONO_KEYS = frozenset({"energies_PeV", "mu0", "particles_per_mu0", "duration_gyroperiods"})


def output_t_omega(duration_gyroperiods: float, n_outputs: int, first_gyroperiods: float):
    """Output times in units of 1/Ω_ref: 0, then ``n_outputs`` log-spaced up to the duration."""
    if not 0 < first_gyroperiods < duration_gyroperiods:
        raise ValueError(
            f"first output ({first_gyroperiods} gyro-periods) must be > 0 and before the end "
            f"({duration_gyroperiods} gyro-periods)"
        )
    if n_outputs < 2:
        raise ValueError(f"need at least 2 output times after t = 0, got {n_outputs}")
    two_pi = 2.0 * math.pi
    t = np.geomspace(two_pi * first_gyroperiods, two_pi * duration_gyroperiods, n_outputs)
    t[-1] = two_pi * duration_gyroperiods
    return np.concatenate([[0.0], t])


def _reject_unknown(section: str, given: Mapping[str, Any], known) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"{section} config: unknown key(s) {unknown}; known: {sorted(known)}")


SCATTERING_MODELS = ("none", "uniform", "phase", "micromirror")


def _nonneg(name: str, v) -> float:
    v = float(v)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {v}")
    return v


@dataclass
class ScatteringSettings:
    r"""Sub-grid scattering rate model (config block ``integrate.scattering``).

    Rates ν are given in units of Ω_ref at the energy ``e0_PeV`` and scale with energy as
    ν(E) = ν_0 (E/E_0)^(−q) [s^-1]; since Ω_ref ∝ 1/E, in units of the job's own Ω_ref

    .. math:: \nu(E)/\Omega_{ref}(E) = \nu_0\,(E/E_0)^{1-q} ,

    so the default q = 1 keeps ν/Ω_ref the same at every energy (the meaning of the old
    ``subgrid_nu_over_omega``), and micromirror scattering (κ_mm ∝ E², seed 004) is q = 2.

    model : ``none``; ``uniform`` (ν = ``nu_over_omega`` everywhere); ``phase`` (ν_α =
        ``phase_nu_over_omega`` [CNM, UNM, WNM] by the phase of the step's midpoint cell);
        ``micromirror`` (``nu_over_omega`` everywhere plus ``micromirror_nu_over_omega``
        where the local |B| at the step's field-evaluation point exceeds
        ``micromirror_b_threshold_uG`` [µG]).
    """

    model: str = "none"
    nu_over_omega: float = 0.0
    phase_nu_over_omega: tuple[float, float, float] = (0.0, 0.0, 0.0)
    micromirror_b_threshold_uG: float = math.inf
    micromirror_nu_over_omega: float = 0.0
    e0_PeV: float = 1.0
    q: float = 1.0

    KEYS = frozenset({"model", "nu_over_omega", "phase_nu_over_omega", "micromirror", "energy_law"})

    @classmethod
    def from_config(cls, block: Mapping[str, Any]) -> ScatteringSettings:
        """From the ``integrate.scattering`` block; unknown keys raise ValueError naming them."""
        block = dict(block or {})
        _reject_unknown("integrate.scattering", block, cls.KEYS)
        mm = dict(block.pop("micromirror", {}) or {})
        law = dict(block.pop("energy_law", {}) or {})
        _reject_unknown("integrate.scattering.micromirror", mm, {"b_threshold_uG", "nu_over_omega"})
        _reject_unknown("integrate.scattering.energy_law", law, {"e0_PeV", "q"})
        kw = dict(block)
        if "phase_nu_over_omega" in kw:
            kw["phase_nu_over_omega"] = tuple(kw["phase_nu_over_omega"])
        if "b_threshold_uG" in mm:
            kw["micromirror_b_threshold_uG"] = mm["b_threshold_uG"]
        if "nu_over_omega" in mm:
            kw["micromirror_nu_over_omega"] = mm["nu_over_omega"]
        kw.update({k: law[k] for k in ("e0_PeV", "q") if k in law})
        out = cls(**kw)
        out.check()
        return out

    def check(self) -> None:
        """Raise ValueError naming the first value out of range."""
        if self.model not in SCATTERING_MODELS:
            raise ValueError(f"integrate.scattering.model must be one of {SCATTERING_MODELS}, "
                             f"got {self.model!r}")
        _nonneg("integrate.scattering.nu_over_omega", self.nu_over_omega)
        if len(self.phase_nu_over_omega) != N_PHASES:
            raise ValueError(f"integrate.scattering.phase_nu_over_omega needs {N_PHASES} rates "
                             f"(one per phase), got {list(self.phase_nu_over_omega)}")
        for v in self.phase_nu_over_omega:
            _nonneg("integrate.scattering.phase_nu_over_omega", v)
        _nonneg("integrate.scattering.micromirror.nu_over_omega", self.micromirror_nu_over_omega)
        if self.model == "micromirror" and not (math.isfinite(self.micromirror_b_threshold_uG)
                                                and self.micromirror_b_threshold_uG >= 0):
            raise ValueError("integrate.scattering.micromirror.b_threshold_uG must be a finite "
                             f"field [uG] >= 0 for model micromirror, got "
                             f"{self.micromirror_b_threshold_uG}")
        if not (math.isfinite(self.e0_PeV) and self.e0_PeV > 0 and math.isfinite(self.q)):
            raise ValueError("integrate.scattering.energy_law needs e0_PeV > 0 and a finite q, "
                             f"got {self.e0_PeV}, {self.q}")

    def rates_over_omega(self, energy_pev: float) -> tuple[np.ndarray, float, float]:
        """(ν_α/Ω_ref per phase, micromirror threshold [µG], ν_mm/Ω_ref) at energy E [PeV],
        in units of the job's own Ω_ref (see the class docstring)."""
        f = (energy_pev / self.e0_PeV) ** (1.0 - self.q)
        zero = np.zeros(N_PHASES)
        if self.model == "none":
            return zero, math.inf, 0.0
        if self.model == "phase":
            return np.array([v * f for v in self.phase_nu_over_omega]), math.inf, 0.0
        uniform = np.full(N_PHASES, self.nu_over_omega * f)
        if self.model == "uniform":
            return uniform, math.inf, 0.0
        return (uniform, float(self.micromirror_b_threshold_uG),
                self.micromirror_nu_over_omega * f)


@dataclass
class IntegrateSettings:
    """Integration parameters (schema sections ``particles``, ``integrate``, ``phases``).

    Defaults are the schema's. ``duration_gyroperiods`` is the run length in 2π/Ω_ref.
    """

    duration_gyroperiods: float = 1000.0
    charge: int = 1
    b_ref_uG: float | None = None
    max_rotation_rad: float = 0.1
    max_step_cells: float = 0.5
    output_times: int = 60
    first_output_gyroperiods: float = 0.1
    stats_cadence_gyroperiods: float = 0.1
    trajectories: int = 4
    trajectory_samples_per_gyroperiod: float = 16.0
    subgrid_nu_over_omega: float = 0.0
    seed: int = 2024
    phase_thresholds_K: tuple[float, float] = DEFAULT_THRESHOLDS_K
    phase_names: tuple[str, str, str] = DEFAULT_PHASE_NAMES
    checkpoint_interval_s: float = 60.0
    scattering: ScatteringSettings | None = None
    field_layout: str = "full"
    class_accounting: bool = True
    class_eps_edges: tuple[float, ...] = (0.1, 1.0)
    scatter_dmu_threshold: float = 0.1

    def scattering_model(self) -> ScatteringSettings:
        """The rate model in force: ``scattering`` if set, else ``subgrid_nu_over_omega`` as
        model uniform (none when 0)."""
        if self.scattering is not None:
            return self.scattering
        nu = self.subgrid_nu_over_omega
        return ScatteringSettings(model="uniform" if nu > 0 else "none", nu_over_omega=nu)

    @classmethod
    def integrate_keys(cls) -> frozenset[str]:
        """Keys of the config's ``integrate`` section this class reads."""
        outside = {"charge", "b_ref_uG", "phase_thresholds_K", "phase_names",
                   "checkpoint_interval_s"}
        return frozenset(f.name for f in fields(cls)) - outside

    @classmethod
    def from_config(cls, config: Mapping[str, Any], injection: str = "isotropic"):
        """Settings from a validated workflow config; mono runs take ``mono.duration_gyroperiods``.

        An unknown key in ``integrate`` (or ``integrate.mono``) raises ValueError naming it.
        """
        it = dict(config.get("integrate", {}) or {})
        pa = dict(config.get("particles", {}) or {})
        ph = dict(config.get("phases", {}) or {})
        mono = dict(it.pop("mono", {}) or {})
        _reject_unknown("integrate", it, cls.integrate_keys() | WORKFLOW_KEYS)
        _reject_unknown("integrate.mono", mono, MONO_KEYS)
        kw = {k: it[k] for k in cls.integrate_keys() if k in it}
        if "class_eps_edges" in it:
            kw["class_eps_edges"] = tuple(it["class_eps_edges"])
        if "scattering" in it:
            kw["scattering"] = ScatteringSettings.from_config(it["scattering"])
        if injection == "mono" and "duration_gyroperiods" in mono:
            kw["duration_gyroperiods"] = mono["duration_gyroperiods"]
        if "charge" in pa:
            kw["charge"] = pa["charge"]
        if "b_ref_uG" in pa:
            kw["b_ref_uG"] = pa["b_ref_uG"]
        if "thresholds_K" in ph:
            kw["phase_thresholds_K"] = tuple(ph["thresholds_K"])
        if "names" in ph:
            kw["phase_names"] = tuple(ph["names"])
        return cls(**kw)

    def check(self) -> None:
        """Raise ValueError naming the first parameter out of its physical range."""
        positive = ("duration_gyroperiods", "max_rotation_rad", "max_step_cells",
                    "first_output_gyroperiods", "stats_cadence_gyroperiods",
                    "trajectory_samples_per_gyroperiod")
        for k in positive:
            v = getattr(self, k)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"integrate setting {k} must be finite and > 0, got {v}")
        if self.max_step_cells > 1 or self.max_rotation_rad > 1:
            raise ValueError("max_step_cells and max_rotation_rad must be <= 1 (a step may never "
                             f"skip a cell), got {self.max_step_cells}, {self.max_rotation_rad}")
        if self.charge < 1:
            raise ValueError(f"charge must be a positive integer, got {self.charge}")
        if self.b_ref_uG is not None and not self.b_ref_uG > 0:
            raise ValueError(f"b_ref_uG must be > 0 or None (|<B>|), got {self.b_ref_uG}")
        if self.subgrid_nu_over_omega < 0:
            raise ValueError(f"subgrid_nu_over_omega must be >= 0, got {self.subgrid_nu_over_omega}")
        if self.scattering is not None:
            if self.subgrid_nu_over_omega > 0:
                raise ValueError("give the sub-grid scattering rate either as "
                                 "integrate.subgrid_nu_over_omega or in integrate.scattering, "
                                 "not both")
            self.scattering.check()
        if self.trajectories < 0 or self.seed < 0:
            raise ValueError("trajectories and seed must be >= 0")
        if len(self.phase_names) != N_PHASES:
            raise ValueError(f"need {N_PHASES} phase names, got {list(self.phase_names)}")
        check_thresholds(self.phase_thresholds_K)
        if self.field_layout not in ("full", "compact"):
            raise ValueError(f"integrate.field_layout must be 'full' or 'compact', got "
                             f"{self.field_layout!r}")
        edges = np.asarray(self.class_eps_edges, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 1 or not (np.all(np.isfinite(edges)) and edges[0] > 0
                                                     and np.all(np.diff(edges) > 0)):
            raise ValueError("integrate.class_eps_edges must be increasing positive numbers, got "
                             f"{list(self.class_eps_edges)}")
        if not (math.isfinite(self.scatter_dmu_threshold) and self.scatter_dmu_threshold > 0):
            raise ValueError(f"integrate.scatter_dmu_threshold must be > 0, got "
                             f"{self.scatter_dmu_threshold}")
        output_t_omega(self.duration_gyroperiods, self.output_times, self.first_output_gyroperiods)
