"""AthenaK code units -> the canonical snapshot's physical units, written down once.

An AthenaK run is defined by three code scales in cgs (its ``<units>`` block, AthenaK
``src/units/units.cpp``): a length :math:`L_u` [cm], a time :math:`t_u` [s] and a mass
:math:`M_u` [g], plus a mean molecular weight :math:`\\mu`. Everything else derives from them:

.. math::

    v_u = L_u / t_u, \\qquad \\rho_u = M_u / L_u^3, \\qquad P_u = \\rho_u v_u^2,
    \\qquad T_u = \\mu m_u v_u^2 / k_B

and the canonical snapshot (see :mod:`cosmicflow.snapshot`) holds

================  ==========================================================  ========
field             from the code variables                                     units
================  ==========================================================  ========
``density``       :math:`n = \\mathrm{dens}\\,\\rho_u / (\\mu m_u)`              cm^-3
``vx, vy, vz``    :math:`v = \\mathrm{vel}\\,v_u / 10^5`                        km s^-1
``temperature``   :math:`T = (\\gamma-1)\\,\\mathrm{eint}/\\mathrm{dens}\\,T_u`   K
                  (ideal EOS) or :math:`T = c_{s,\\mathrm{iso}}^2 T_u` (isothermal)
``bx, by, bz``    :math:`B = \\mathrm{bcc}\\,\\sqrt{4\\pi\\rho_u}\\,v_u / 10^{-6}`  uG
================  ==========================================================  ========

where :math:`m_u` is the atomic mass unit and :math:`k_B` Boltzmann's constant. The number
density counts particles of mass :math:`\\mu m_u`; with AthenaK's ISM convention (``mu = 1.4``,
the mass per hydrogen nucleus including helium) it is :math:`n_\\mathrm{H}`, and the temperature
is then defined by :math:`P = n_\\mathrm{H} k_B T`, exactly as AthenaK's cooling functions do.
AthenaK's magnetic field is in Heaviside-Lorentz-like code units whose magnetic pressure is
:math:`B^2/2`, hence the :math:`\\sqrt{4\\pi}`.

The conversions use AthenaK's own constants (:data:`ATHENAK_K_B`, :data:`ATHENAK_M_U`, from
``src/units/units.hpp``), not CODATA 2018: the run's unit of mass was built from them (e.g.
``mass_cgs = 1.4 * 1.660538921e-24 g * pc^3``), so only these reproduce AthenaK's numbers
(``dens = 1`` is exactly ``n_H = 1``; ``T_u = 160.98560 K`` for the ISM runs of
``../shared/data/athenak``). The difference to CODATA is below 1e-6, far below float32 data
precision, but it is a difference, and tests compare against AthenaK's own values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from cosmicflow.constants import KM_CM, PC_CM, UG_G
from cosmicflow.io import InputError

__all__ = [
    "ATHENAK_K_B",
    "ATHENAK_M_U",
    "UNIT_KEYS",
    "CodeUnits",
    "resolve_units",
]

#: Boltzmann constant used by AthenaK [erg K^-1] (``units::Units::k_boltzmann_cgs``)
ATHENAK_K_B = 1.3806488e-16
#: atomic mass unit used by AthenaK [g] (``units::Units::atomic_mass_unit_cgs``)
ATHENAK_M_U = 1.660538921e-24

#: keys a medium's ``units`` config may hold, with what each means
UNIT_KEYS: dict[str, str] = {
    "length_cgs": "code length unit L_u [cm]",
    "time_cgs": "code time unit t_u [s]",
    "mass_cgs": "code mass unit M_u [g]",
    "density_cgs": "code density unit rho_u [g cm^-3] (instead of mass_cgs: M_u = rho_u L_u^3)",
    "velocity_cgs": "code velocity unit v_u [cm s^-1] (instead of time_cgs: t_u = L_u / v_u)",
    "mu": "mean molecular weight: mass per particle counted in n, in m_u",
    "gamma": "adiabatic index of the ideal EOS",
    "temperature_K": "uniform temperature [K] (isothermal runs; overrides any sound speed)",
}


@dataclass(frozen=True)
class CodeUnits:
    """The code scales of one AthenaK output and the conversions to physical units.

    Attributes
    ----------
    length_cgs, time_cgs, mass_cgs : float
        :math:`L_u` [cm], :math:`t_u` [s], :math:`M_u` [g].
    mu : float
        Mean molecular weight :math:`\\mu` (mass per counted particle in :math:`m_u`).
    gamma : float or None
        Adiabatic index :math:`\\gamma` (None: isothermal run).
    iso_sound_speed : float or None
        Isothermal sound speed :math:`c_s` in code units (isothermal EOS).
    temperature_K : float or None
        Configured uniform temperature [K]; when set, it is the temperature everywhere.
    origin : dict
        Where each value came from (``"file <units>"``, ``"config"``, ...), for provenance.
    """

    length_cgs: float
    time_cgs: float
    mass_cgs: float
    mu: float
    gamma: float | None = None
    iso_sound_speed: float | None = None
    temperature_K: float | None = None
    origin: dict[str, str] = field(default_factory=dict, compare=False)

    # -- derived scales ------------------------------------------------------------------
    @property
    def velocity_cgs(self) -> float:
        """:math:`v_u = L_u / t_u` [cm s^-1]."""
        return self.length_cgs / self.time_cgs

    @property
    def density_cgs(self) -> float:
        """:math:`\\rho_u = M_u / L_u^3` [g cm^-3]."""
        return self.mass_cgs / self.length_cgs**3

    @property
    def pressure_cgs(self) -> float:
        """:math:`P_u = \\rho_u v_u^2` [erg cm^-3]."""
        return self.density_cgs * self.velocity_cgs**2

    @property
    def temperature_unit_K(self) -> float:
        """:math:`T_u = \\mu m_u v_u^2 / k_B` [K]: temperature of P/rho = 1 in code units."""
        return self.mu * ATHENAK_M_U * self.velocity_cgs**2 / ATHENAK_K_B

    # -- conversion factors (multiply a code-unit array by these) --------------------------
    @property
    def number_density_per_dens(self) -> float:
        """:math:`n / \\mathrm{dens} = \\rho_u / (\\mu m_u)` [cm^-3 per code density]."""
        return self.density_cgs / (self.mu * ATHENAK_M_U)

    @property
    def kms_per_velocity(self) -> float:
        """:math:`v / \\mathrm{vel} = v_u / (1\\,\\mathrm{km\\,s^{-1}})` [km s^-1 per code]."""
        return self.velocity_cgs / KM_CM

    @property
    def uG_per_field(self) -> float:
        """:math:`B / \\mathrm{bcc} = \\sqrt{4\\pi\\rho_u}\\,v_u` in uG per code field unit.

        AthenaK's magnetic pressure is :math:`B_\\mathrm{code}^2/2` in units of :math:`P_u`, so
        :math:`B^2/(8\\pi) = P_u B_\\mathrm{code}^2/2` gives :math:`B = B_\\mathrm{code}
        \\sqrt{4\\pi P_u} = B_\\mathrm{code}\\sqrt{4\\pi\\rho_u}\\,v_u` [G].
        """
        return math.sqrt(4.0 * math.pi * self.density_cgs) * self.velocity_cgs / UG_G

    @property
    def kelvin_per_eint_over_dens(self) -> float:
        """:math:`T / (\\mathrm{eint}/\\mathrm{dens}) = (\\gamma - 1) T_u` [K] (ideal EOS).

        From :math:`P = (\\gamma-1) e` and :math:`T = P/(n k_B)` with :math:`n = \\rho/(\\mu
        m_u)`. Raises ValueError for an isothermal unit set (no :math:`\\gamma`).
        """
        if self.gamma is None:
            raise ValueError("temperature from eint needs an adiabatic index gamma")
        return (self.gamma - 1.0) * self.temperature_unit_K

    @property
    def pc_per_length(self) -> float:
        """Parsec per code length unit, :math:`L_u / 1\\,\\mathrm{pc}`."""
        return self.length_cgs / PC_CM

    @property
    def myr_per_time(self) -> float:
        """Myr per code time unit."""
        return self.time_cgs / 3.15576e13

    def isothermal_temperature_K(self) -> float:
        """Uniform temperature of an isothermal run [K].

        .. math:: T = \\mu m_u (c_s v_u)^2 / k_B = c_s^2 T_u

        where :math:`c_s` is AthenaK's ``iso_sound_speed`` in code units, unless a
        ``temperature_K`` was configured, which wins. Raises ValueError when neither is known.
        """
        if self.temperature_K is not None:
            return float(self.temperature_K)
        if self.iso_sound_speed is None:
            raise ValueError(
                "isothermal run without a sound speed: set units.temperature_K in the medium's "
                "config (the file's <mhd>/<hydro> block has no iso_sound_speed)"
            )
        return self.iso_sound_speed**2 * self.temperature_unit_K

    def as_attrs(self) -> dict[str, Any]:
        """The unit set and its derived factors, for a snapshot's provenance attributes."""
        d = asdict(self)
        d.update(
            velocity_cgs=self.velocity_cgs,
            density_cgs=self.density_cgs,
            temperature_unit_K=self.temperature_unit_K,
            number_density_per_dens=self.number_density_per_dens,
            kms_per_velocity=self.kms_per_velocity,
            uG_per_field=self.uG_per_field,
            k_B=ATHENAK_K_B,
            m_u=ATHENAK_M_U,
        )
        if self.gamma is not None:
            d["kelvin_per_eint_over_dens"] = self.kelvin_per_eint_over_dens
        return d


def _positive(value: Any, key: str, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: unit {key!r} = {value!r} is not a number") from None
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"{where}: unit {key!r} must be positive and finite, got {value!r}")
    return v


def resolve_units(
    file_units: Mapping[str, Any] | None,
    eos: Mapping[str, Any],
    overrides: Mapping[str, Any] | None,
    where: str,
) -> CodeUnits:
    """Combine a file's ``<units>`` block, its EOS and the config's overrides into CodeUnits.

    Parameters
    ----------
    file_units : the file's ``<units>`` block (``length_cgs``, ``time_cgs``, ``mass_cgs``,
        ``mu``), or None when the run has none. Keys missing from a present block take
        AthenaK's defaults (1.0), as AthenaK itself does.
    eos : ``eos`` (``"ideal"``/``"isothermal"``), ``gamma``, ``iso_sound_speed`` from the
        file's ``<mhd>`` (or ``<hydro>``) block; any may be missing.
    overrides : the medium's ``units`` config (keys in :data:`UNIT_KEYS`); each given key
        overrides the file. ``density_cgs`` / ``velocity_cgs`` replace ``mass_cgs`` /
        ``time_cgs``.
    where : file name used in error messages.

    Raises
    ------
    InputError
        Unknown or non-positive keys, or code units that are not determined (no ``<units>``
        block and not all of length, time, mass and mu in the config), or an ideal EOS with
        no gamma.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(UNIT_KEYS))
    if unknown:
        raise InputError(
            f"{where}: unknown unit key(s) {unknown} in the medium's units; accepted: "
            f"{sorted(UNIT_KEYS)}"
        )
    for a, b in (("time_cgs", "velocity_cgs"), ("mass_cgs", "density_cgs")):
        if a in overrides and b in overrides:
            raise InputError(f"{where}: give {a} or {b} in units, not both")
    values: dict[str, float] = {}
    origin: dict[str, str] = {}
    if file_units is not None:
        for key in ("length_cgs", "time_cgs", "mass_cgs", "mu"):
            if key in file_units:
                values[key] = _positive(file_units[key], key, where)
                origin[key] = "file <units>"
            else:
                values[key] = 1.0
                origin[key] = "AthenaK default (absent from <units>)"
    for key in ("length_cgs", "time_cgs", "mass_cgs", "mu"):
        if key in overrides:
            values[key] = _positive(overrides[key], key, where)
            origin[key] = "config"
    length = values.get("length_cgs")
    if "velocity_cgs" in overrides and length is not None:
        values["time_cgs"] = length / _positive(overrides["velocity_cgs"], "velocity_cgs", where)
        origin["time_cgs"] = "config velocity_cgs"
    if "density_cgs" in overrides and length is not None:
        values["mass_cgs"] = _positive(overrides["density_cgs"], "density_cgs", where) * length**3
        origin["mass_cgs"] = "config density_cgs"
    missing = [k for k in ("length_cgs", "time_cgs", "mass_cgs", "mu") if k not in values]
    if missing:
        raise InputError(
            f"{where}: the file has no <units> block, so the medium's config must give the code "
            f"units; missing {missing} (length_cgs [cm], time_cgs [s] or velocity_cgs [cm/s], "
            "mass_cgs [g] or density_cgs [g/cm^3], mu)"
        )

    eos_kind = str(eos.get("eos", "")).strip().lower()
    gamma: float | None = None
    if "gamma" in overrides:
        gamma = _positive(overrides["gamma"], "gamma", where)
        origin["gamma"] = "config"
    elif eos.get("gamma") is not None and eos_kind != "isothermal":
        gamma = _positive(eos["gamma"], "gamma", where)
        origin["gamma"] = "file <mhd>"
    if gamma is not None and gamma <= 1.0:
        raise InputError(f"{where}: adiabatic index gamma must be > 1, got {gamma}")
    cs = None
    if eos.get("iso_sound_speed") is not None and eos_kind == "isothermal":
        cs = _positive(eos["iso_sound_speed"], "iso_sound_speed", where)
        origin["iso_sound_speed"] = "file <mhd>"
    t_k = None
    if "temperature_K" in overrides:
        t_k = _positive(overrides["temperature_K"], "temperature_K", where)
        origin["temperature_K"] = "config"
    return CodeUnits(
        length_cgs=values["length_cgs"],
        time_cgs=values["time_cgs"],
        mass_cgs=values["mass_cgs"],
        mu=values["mu"],
        gamma=gamma,
        iso_sound_speed=cs,
        temperature_K=t_k,
        origin=origin,
    )
