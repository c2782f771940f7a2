"""Synthetic media: isotropic Kolmogorov turbulence, slab turbulence and a statistical multiphase ISM.

Each generator returns ``(fields, attrs)``: ``fields`` holds the canonical snapshot variables
(:data:`cosmicflow.snapshot.FIELDS`) -- ``density`` [cm^-3], ``temperature`` [K], ``bx, by, bz``
[uG], ``vx, vy, vz`` [km/s] -- as C-contiguous float32 arrays of shape ``(grid, grid, grid)``
indexed ``[ix, iy, iz]`` on a periodic cube of edge ``box_pc`` with cell centres at
``(i + 1/2) box_pc / grid``; ``attrs`` describes the medium (generator, the parameters used with
units in their names, mean molecular weight, adiabatic index, measured statistics).
:func:`cosmicflow.media.build_medium` writes them as a canonical snapshot.

Conventions shared by the generators
------------------------------------
* ``density`` is the hydrogen-nucleus number density n; the mass density is
  :math:`\\rho = \\mu m_u n` with :math:`\\mu` = :data:`MEAN_MOLECULAR_WEIGHT` = 1.4 (mass per H
  nucleus with helium), and temperature is defined by :math:`P = n k_B T` (the AthenaK ISM
  convention, see ``docs/data-contracts.md``).
* Wavenumbers are angular, :math:`k = 2\\pi m / L` [rad pc^-1] for integer mode numbers m; a
  scale l corresponds to :math:`k = 2\\pi / l`. Turbulence fills the band
  :math:`2\\pi/l_{max} \\le |k| \\le 2\\pi/l_{min}`; modes at the grid Nyquist frequency are
  always empty (a central difference cannot see them).
* rms values are realised exactly: after drawing, each turbulent field is rescaled so that its
  volume average :math:`\\langle|\\delta\\mathbf B|^2\\rangle^{1/2}` (or
  :math:`\\langle|\\mathbf v|^2\\rangle^{1/2}`) equals the requested value.
* Same ``seed`` -> bit-identical fields (for a given NumPy/SciPy); every random component
  (field, velocity, density, pressure) has its own stream spawned from ``seed``.
* Memory: Fourier work uses single-precision real FFTs (``scipy.fft.irfftn`` on complex64
  half-spectra) with noise and projections done in slabs of planes; at 512^3 the peak resident
  memory is 5.3 GB for :func:`multiphase` and 4.3 GB for :func:`kolmogorov`, of which the
  eight output cubes are 4.0 GiB (``benchmarks/synthetic_media.py`` measures it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import optimize, special

from cosmicflow.constants import K_B, KM_CM, M_U, UG_G
from cosmicflow.phase_rule import DEFAULT_PHASE_NAMES, DEFAULT_THRESHOLDS_K, N_PHASES, phase_index

__all__ = [
    "ADIABATIC_INDEX",
    "MEAN_MOLECULAR_WEIGHT",
    "SlabSpectrum",
    "alfven_speed_kms",
    "central_curl",
    "central_divergence",
    "gaussian_random_field",
    "kolmogorov",
    "multiphase",
    "phase_fractions",
    "slab",
    "slab_spectrum",
    "solenoidal_field",
    "sound_speed_kms",
]

#: mass per hydrogen nucleus in atomic mass units (H + He, neutral atomic ISM)
MEAN_MOLECULAR_WEIGHT = 1.4
#: adiabatic index of the multiphase medium (monatomic gas); the isothermal media use 1
ADIABATIC_INDEX = 5.0 / 3.0
#: 3-D (mode) power-spectrum index of Kolmogorov turbulence, P(k) ~ k^-11/3
KOLMOGOROV_3D = -11.0 / 3.0
#: 1-D (slab) spectral index, G(k) ~ k^-5/3
KOLMOGOROV_1D = -5.0 / 3.0
#: planes along axis 0 processed at once in Fourier space (bounds temporaries at 512^3)
_SLAB = 32
FIELD_NAMES = ("density", "temperature", "bx", "by", "bz", "vx", "vy", "vz")


# ----------------------------------------------------------------------------------------
# physics helpers
# ----------------------------------------------------------------------------------------
def alfven_speed_kms(b_uG: float, n_cm3: float, mu: float = MEAN_MOLECULAR_WEIGHT) -> float:
    r"""Alfvén speed :math:`v_A = B / \sqrt{4\pi\rho}` [km/s], with :math:`\rho = \mu m_u n`.

    >>> round(alfven_speed_kms(3.0, 1.0), 3)
    5.55
    """
    rho = mu * M_U * n_cm3
    return b_uG * UG_G / math.sqrt(4.0 * math.pi * rho) / KM_CM


def sound_speed_kms(t_K: float, mu: float = MEAN_MOLECULAR_WEIGHT, gamma: float = 1.0) -> float:
    r"""Sound speed :math:`c_s = \sqrt{\gamma P/\rho} = \sqrt{\gamma k_B T / (\mu m_u)}` [km/s].

    ``gamma = 1`` gives the isothermal sound speed (used for the Mach numbers reported here),
    with :math:`P = n k_B T` and :math:`\rho = \mu m_u n`.

    >>> round(sound_speed_kms(1.0e4), 2)
    7.71
    """
    return math.sqrt(gamma * K_B * t_K / (mu * M_U)) / KM_CM


# ----------------------------------------------------------------------------------------
# parameter checks
# ----------------------------------------------------------------------------------------
def _check_grid(grid: int, box_pc: float) -> tuple[int, float]:
    if isinstance(grid, bool) or int(grid) != grid or grid < 8:
        raise ValueError(f"grid must be an integer >= 8 cells per side, got {grid!r}")
    box = float(box_pc)
    if not math.isfinite(box) or box <= 0:
        raise ValueError(f"box_pc must be a positive, finite box edge [pc], got {box_pc!r}")
    return int(grid), box


def _check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return v


def _check_scales(grid: int, box: float, l_min_pc: float | None,
                  l_max_pc: float | None) -> tuple[float, float]:
    """Resolve default turbulence scales and check 2 cells <= l_min < l_max <= box."""
    dx = box / grid
    l_min = 4.0 * dx if l_min_pc is None else float(l_min_pc)
    l_max = 0.5 * box if l_max_pc is None else float(l_max_pc)
    if not (math.isfinite(l_min) and math.isfinite(l_max)):
        raise ValueError(f"l_min_pc and l_max_pc must be finite, got {l_min_pc!r}, {l_max_pc!r}")
    if l_min < 2.0 * dx * (1 - 1e-12):
        raise ValueError(
            f"l_min_pc = {l_min:g} pc is below 2 cells ({2 * dx:g} pc for {grid} cells over "
            f"{box:g} pc); the grid cannot represent it -- raise l_min_pc or the grid"
        )
    if l_max > box * (1 + 1e-12):
        raise ValueError(f"l_max_pc = {l_max:g} pc exceeds the box ({box:g} pc)")
    if not l_min < l_max:
        raise ValueError(f"need l_min_pc < l_max_pc, got {l_min:g} >= {l_max:g} pc")
    return l_min, l_max


# ----------------------------------------------------------------------------------------
# Gaussian random fields in Fourier space
# ----------------------------------------------------------------------------------------
def _mode_numbers(grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer mode numbers of the rfftn half-spectrum, broadcastable to (N, N, N//2+1)."""
    m = np.fft.fftfreq(grid, 1.0 / grid)
    mz = np.arange(grid // 2 + 1, dtype=np.float64)
    return m[:, None, None], m[None, :, None], mz[None, None, :]


def _band_amplitude(grid: int, box: float, l_min: float, l_max: float, index: float,
                    sl: slice) -> np.ndarray:
    r"""sqrt of the mode power :math:`P(k) \propto k^{index}` inside the band, 0 outside.

    For the slab ``sl`` of axis 0 of the half-spectrum; modes with any component at the
    Nyquist frequency and the k = 0 mode are zero.
    """
    mx, my, mz = _mode_numbers(grid)
    mx = mx[sl]
    k = (2.0 * np.pi / box) * np.sqrt(mx**2 + my**2 + mz**2)
    k_lo, k_hi = 2.0 * np.pi / l_max, 2.0 * np.pi / l_min
    # a small tolerance keeps a scale that is an exact multiple of the cell inside the band
    inside = (k >= k_lo * (1 - 1e-9)) & (k <= k_hi * (1 + 1e-9))
    if grid % 2 == 0:
        nyq = grid // 2
        inside &= (np.abs(mx) != nyq) & (np.abs(my) != nyq) & (mz != nyq)
    amp = np.zeros(k.shape, dtype=np.float32)
    amp[inside] = k[inside] ** (0.5 * index)
    return amp


def _complex_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Complex64 white noise for an rfftn half-spectrum, E|X|^2 = 2 for every real-field mode.

    The inverse real transform keeps only the Hermitian part of the kz = 0 (and kz = Nyquist)
    planes, which halves their power; the sqrt(2) restores an isotropic spectrum.
    """
    x = rng.standard_normal((*shape, 2), dtype=np.float32).view(np.complex64)[..., 0]
    x[:, :, 0] *= np.float32(math.sqrt(2.0))
    return x


def _irfft(spec: np.ndarray, grid: int) -> np.ndarray:
    out = scipy.fft.irfftn(spec, s=(grid, grid, grid), axes=(0, 1, 2), overwrite_x=True)
    return np.ascontiguousarray(out, dtype=np.float32)


def _rms(*components: np.ndarray) -> float:
    """Volume rms of a (vector) field, accumulated in float64 plane by plane."""
    total = 0.0
    for c in components:
        for i in range(c.shape[0]):
            total += float(np.einsum("ij,ij->", c[i], c[i], dtype=np.float64))
    return math.sqrt(total / components[0].size)


def _mean(a: np.ndarray) -> float:
    return float(np.mean(a, dtype=np.float64))


def gaussian_random_field(grid: int, box_pc: float, rng: np.random.Generator, l_min_pc: float,
                          l_max_pc: float, spectral_index: float = KOLMOGOROV_3D) -> np.ndarray:
    r"""Periodic Gaussian random scalar field with zero mean and unit variance (float32).

    Each Fourier mode has :math:`\langle|\hat f(\mathbf k)|^2\rangle \propto k^{\alpha}`
    (:math:`\alpha` = ``spectral_index``) for :math:`2\pi/l_{max} \le k \le 2\pi/l_{min}` and 0
    elsewhere; the realised field is then shifted and scaled to mean 0, variance 1 exactly.
    """
    half = (grid, grid, grid // 2 + 1)
    spec = np.empty(half, dtype=np.complex64)
    for i0 in range(0, grid, _SLAB):
        sl = slice(i0, min(grid, i0 + _SLAB))
        spec[sl] = _complex_noise(rng, (sl.stop - sl.start, *half[1:]))
        spec[sl] *= _band_amplitude(grid, box_pc, l_min_pc, l_max_pc, spectral_index, sl)
    f = _irfft(spec, grid)
    del spec
    f -= np.float32(_mean(f))
    rms = _rms(f)
    if rms == 0:
        raise ValueError(_empty_band(grid, box_pc, l_min_pc, l_max_pc))
    f *= np.float32(1.0 / rms)
    return f


def _empty_band(grid: int, box: float, l_min: float, l_max: float) -> str:
    return (f"no Fourier mode of a {grid}^3 grid over {box:g} pc has a wavelength between "
            f"l_min = {l_min:g} and l_max = {l_max:g} pc; widen the band")


def solenoidal_field(grid: int, box_pc: float, rng: np.random.Generator, l_min_pc: float,
                     l_max_pc: float, rms: float,
                     spectral_index: float = KOLMOGOROV_3D) -> tuple[np.ndarray, ...]:
    r"""Divergence-free periodic Gaussian vector field with volume rms ``rms`` (3 float32 arrays).

    .. math::
        \hat{\mathbf u}(\mathbf k) = A\, k^{\alpha/2}
        \left(\mathsf I - \hat{\mathbf k}\hat{\mathbf k}\right)\hat{\boldsymbol\xi}(\mathbf k),
        \qquad 2\pi/l_{max} \le k \le 2\pi/l_{min},

    where :math:`\hat{\boldsymbol\xi}` is complex white noise, :math:`\alpha` =
    ``spectral_index`` (-11/3 for Kolmogorov: shell-summed energy spectrum
    :math:`E(k) \propto 4\pi k^2 k^{-11/3} = k^{-5/3}`), and A is fixed a posteriori so that
    :math:`\langle|\mathbf u|^2\rangle^{1/2}` = ``rms``. The projection makes
    :math:`\mathbf k\cdot\hat{\mathbf u} = 0` for every mode, so the spectral divergence vanishes
    to round-off (the central-difference divergence does not vanish exactly, but is small:
    it only sees the difference between k and sin(k dx)/dx).
    """
    half = (grid, grid, grid // 2 + 1)
    mx, my, mz = _mode_numbers(grid)
    comps = [np.empty(half, dtype=np.complex64) for _ in range(3)]
    for i0 in range(0, grid, _SLAB):
        sl = slice(i0, min(grid, i0 + _SLAB))
        amp = _band_amplitude(grid, box_pc, l_min_pc, l_max_pc, spectral_index, sl)
        kx = mx[sl].astype(np.float32)
        ky, kz = my.astype(np.float32), mz.astype(np.float32)
        k2 = kx**2 + ky**2 + kz**2
        k2[k2 == 0] = 1.0
        u = [_complex_noise(rng, amp.shape) * amp for _ in range(3)]
        # transverse projection u - k (k.u)/k^2 (mode numbers suffice: 2 pi / L cancels)
        kdotu = (kx * u[0] + ky * u[1] + kz * u[2]) / k2
        comps[0][sl] = u[0] - kx * kdotu
        comps[1][sl] = u[1] - ky * kdotu
        comps[2][sl] = u[2] - kz * kdotu
    out = []
    while comps:
        out.append(_irfft(comps.pop(0), grid))
    realised = _rms(*out)
    if realised == 0:
        raise ValueError(_empty_band(grid, box_pc, l_min_pc, l_max_pc))
    scale = rms / realised
    for c in out:
        c *= np.float32(scale)
    return tuple(out)


# ----------------------------------------------------------------------------------------
# periodic central differences
# ----------------------------------------------------------------------------------------
def _dcentral(f: np.ndarray, axis: int, dx: float) -> np.ndarray:
    """Periodic central difference (f[i+1] - f[i-1]) / (2 dx) along ``axis`` (float32)."""
    out = np.roll(f, -1, axis=axis)
    out -= np.roll(f, 1, axis=axis)
    out *= np.float32(0.5 / dx)
    return out


def central_curl(fx: np.ndarray, fy: np.ndarray, fz: np.ndarray,
                 dx: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Curl with periodic second-order central differences :math:`D_i`.

    :math:`(\nabla\times\mathbf F)_x = D_y F_z - D_z F_y` etc., with
    :math:`D_i f = (f_{i+1} - f_{i-1})/(2\Delta x)`. Because the :math:`D_i` commute, the
    field it returns has :func:`central_divergence` = 0 to round-off, and the volume mean of
    each component is exactly 0 (a difference of a periodic array sums to zero).
    """
    cx = _dcentral(fz, 1, dx)
    cx -= _dcentral(fy, 2, dx)
    cy = _dcentral(fx, 2, dx)
    cy -= _dcentral(fz, 0, dx)
    cz = _dcentral(fy, 0, dx)
    cz -= _dcentral(fx, 1, dx)
    return cx, cy, cz


def central_divergence(fx: np.ndarray, fy: np.ndarray, fz: np.ndarray, dx: float) -> np.ndarray:
    r"""Divergence with periodic central differences, :math:`\sum_i D_i F_i` (float32)."""
    d = _dcentral(fx, 0, dx)
    d += _dcentral(fy, 1, dx)
    d += _dcentral(fz, 2, dx)
    return d


def _full(value: float, grid: int) -> np.ndarray:
    return np.full((grid, grid, grid), value, dtype=np.float32)


def _finish(fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical order, float32, C-contiguous."""
    return {k: np.ascontiguousarray(fields[k], dtype=np.float32) for k in FIELD_NAMES}


# ----------------------------------------------------------------------------------------
# isotropic Kolmogorov turbulence
# ----------------------------------------------------------------------------------------
def kolmogorov(
    grid: int,
    box_pc: float,
    seed: int,
    *,
    b0_uG: float = 3.0,
    db_rms_uG: float = 3.0,
    l_min_pc: float | None = None,
    l_max_pc: float | None = None,
    density_cm3: float = 1.0,
    temperature_K: float = 11680.0,
    sigma_v_kms: float = 8.33,
) -> tuple[dict[str, np.ndarray], dict]:
    r"""Isothermal medium threaded by isotropic Gaussian Kolmogorov turbulence.

    .. math::
        \mathbf B = B_0\hat{\mathbf z} + \delta\mathbf B, \qquad
        \langle|\delta\hat{\mathbf B}(\mathbf k)|^2\rangle \propto k^{-11/3}
        \;\; (2\pi/l_{max} \le k \le 2\pi/l_{min}), \qquad
        \mathbf k\cdot\delta\hat{\mathbf B} = 0,

    so the shell-summed spectrum is :math:`E(k) \propto k^{-5/3}`, the field is divergence-free
    in the spectral sense (to float32 round-off), :math:`\langle\mathbf B\rangle = B_0\hat{\mathbf
    z}` and :math:`\langle|\delta\mathbf B|^2\rangle^{1/2}` = ``db_rms_uG`` exactly. The
    velocity is an independent solenoidal field with the same spectrum and 3-D dispersion
    :math:`\langle|\mathbf v|^2\rangle^{1/2}` = ``sigma_v_kms``. Density and temperature are
    uniform. A Gaussian field has no intermittency, unlike simulated MHD turbulence.

    Parameters
    ----------
    grid : cells per side.
    box_pc : box edge [pc].
    seed : random seed (same seed, same medium).
    b0_uG : mean field along z [uG].
    db_rms_uG : rms of the turbulent field :math:`\delta\mathbf B` (all three components) [uG].
    l_min_pc : smallest turbulent scale [pc]; None = 4 cells; must be >= 2 cells.
    l_max_pc : largest (injection) scale [pc]; None = box/2 (driving at k = 2 as in the
        paper's runs); must be > l_min and <= box.
    density_cm3 : uniform hydrogen number density n [cm^-3].
    temperature_K : uniform temperature [K].
    sigma_v_kms : 3-D velocity dispersion [km/s] (0 = gas at rest).

    The defaults reproduce the paper's isothermal control run (section 2.2): with
    :math:`\mu = 1.4`, :math:`v_A = B_0/\sqrt{4\pi\mu m_u n}` = 5.55 km/s and the isothermal
    :math:`c_s = \sqrt{k_B T/\mu m_u}` = 8.33 km/s, so :math:`M_A = \sigma_v / v_A \approx 1.5`
    and :math:`M_s = \sigma_v / c_s \approx 1` (both reported in ``attrs``).

    Returns
    -------
    fields : dict of float32 (grid, grid, grid) arrays, canonical names and units.
    attrs : dict with the generator name, the parameters used, ``mean_molecular_weight``,
        ``adiabatic_index`` (1, isothermal) and measured ``db_rms_uG_measured``,
        ``mean_b_uG``, ``alfven_mach_number``, ``sonic_mach_number``, ``alfven_speed_kms``,
        ``sound_speed_kms``.
    """
    grid, box = _check_grid(grid, box_pc)
    b0 = float(b0_uG)
    if not math.isfinite(b0):
        raise ValueError(f"b0_uG must be finite, got {b0_uG!r}")
    db = _check_positive("db_rms_uG", db_rms_uG, allow_zero=True)
    n0 = _check_positive("density_cm3", density_cm3)
    t0 = _check_positive("temperature_K", temperature_K)
    sv = _check_positive("sigma_v_kms", sigma_v_kms, allow_zero=True)
    l_min, l_max = _check_scales(grid, box, l_min_pc, l_max_pc)
    rng_b, rng_v = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))

    bx, by, bz = solenoidal_field(grid, box, rng_b, l_min, l_max, db)
    bz += np.float32(b0)
    vx, vy, vz = solenoidal_field(grid, box, rng_v, l_min, l_max, sv)
    fields = _finish({"density": _full(n0, grid), "temperature": _full(t0, grid),
                      "bx": bx, "by": by, "bz": bz, "vx": vx, "vy": vy, "vz": vz})
    del bx, by, bz, vx, vy, vz

    v_a = alfven_speed_kms(abs(b0), n0) if b0 != 0 else math.inf
    c_s = sound_speed_kms(t0)
    mean_b = [_mean(fields[c]) for c in ("bx", "by", "bz")]
    attrs = {
        "generator": "cosmicflow.synthetic.kolmogorov",
        "medium_description": "isothermal, isotropic Gaussian Kolmogorov turbulence (not a simulation)",
        "grid": grid,
        "box_pc": box,
        "seed": int(seed),
        "b0_uG": b0,
        "db_rms_uG": db,
        "l_min_pc": l_min,
        "l_max_pc": l_max,
        "density_cm3": n0,
        "temperature_K": t0,
        "sigma_v_kms": sv,
        "spectrum": "3-D mode power k^-11/3 (E(k) ~ k^-5/3) for 2pi/l_max <= k <= 2pi/l_min",
        "mean_molecular_weight": MEAN_MOLECULAR_WEIGHT,
        "adiabatic_index": 1.0,
        "db_rms_uG_measured": _rms_delta(fields, mean_b),
        "mean_b_uG": mean_b,
        "sigma_v_kms_measured": _rms(fields["vx"], fields["vy"], fields["vz"]),
        "alfven_speed_kms": v_a,
        "sound_speed_kms": c_s,
        "alfven_mach_number": sv / v_a,
        "sonic_mach_number": sv / c_s,
        "mach_number_definition": "M_A = sigma_v,3D / v_A(B0, n), M_s = sigma_v,3D / c_s,iso",
    }
    return fields, attrs


def _rms_delta(fields: dict[str, np.ndarray], mean_b: list[float]) -> float:
    """rms of B - <B> over the volume [uG]."""
    total = 0.0
    for c, m in zip(("bx", "by", "bz"), mean_b):
        a = fields[c]
        for i in range(a.shape[0]):
            d = a[i].astype(np.float64) - m
            total += float(np.einsum("ij,ij->", d, d))
    return math.sqrt(total / a.size)


# ----------------------------------------------------------------------------------------
# slab turbulence
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlabSpectrum:
    r"""Discrete one-dimensional slab spectrum used by :func:`slab` (for quasi-linear theory).

    Attributes
    ----------
    k_per_pc : (M,) float64
        Wavenumbers :math:`k_n = 2\pi n / L` [rad pc^-1] of the modes present, ascending.
    power_uG2 : (M,) float64
        :math:`\Delta B_n^2` [uG^2]: the mean-square :math:`|\delta\mathbf B|^2` carried by mode
        n (split equally between bx and by); :math:`\sum_n \Delta B_n^2 = \delta B^2`.
    dk_per_pc : float
        Mode spacing :math:`\Delta k = 2\pi/L` [rad pc^-1].
    """

    k_per_pc: np.ndarray
    power_uG2: np.ndarray
    dk_per_pc: float

    @property
    def spectral_density_uG2_pc(self) -> np.ndarray:
        r"""One-sided 1-D spectral density :math:`G(k_n) = \Delta B_n^2/\Delta k` [uG^2 pc]."""
        return self.power_uG2 / self.dk_per_pc

    @property
    def db2_uG2(self) -> float:
        r""":math:`\delta B^2 = \sum_n \Delta B_n^2 = \langle|\delta\mathbf B|^2\rangle` [uG^2]."""
        return float(np.sum(self.power_uG2))


def slab_spectrum(grid: int, box_pc: float, db_rms_uG: float, l_min_pc: float | None = None,
                  l_max_pc: float | None = None) -> SlabSpectrum:
    r"""Mode wavenumbers and powers of the slab turbulence that :func:`slab` realises.

    The one-sided 1-D spectrum is Kolmogorov between :math:`k_{min} = 2\pi/l_{max}` and
    :math:`k_{max} = 2\pi/l_{min}`,

    .. math::
        G(k) = G_0\,k^{-5/3}, \qquad
        \Delta B_n^2 = G(k_n)\,\Delta k, \qquad
        G_0 = \frac{\delta B^2}{\Delta k\sum_n k_n^{-5/3}},

    over the box modes :math:`k_n = 2\pi n/L` (:math:`\Delta k = 2\pi/L`) with
    :math:`k_{min} \le k_n \le k_{max}` and :math:`0 < n < N/2` (no Nyquist mode), so that
    :math:`\sum_n \Delta B_n^2 = \delta B^2` (``db_rms_uG`` squared) exactly. In the continuum
    limit :math:`\int_{k_{min}}^{k_{max}} G\,dk = \delta B^2`; the two-sided spectrum of
    quasi-linear theory (:math:`\int_{-\infty}^{\infty} P\,dk = \delta B^2`) is
    :math:`P(k) = G(|k|)/2`, of which each transverse component carries half.
    Scales default and are checked as in :func:`slab`.
    """
    grid, box = _check_grid(grid, box_pc)
    db = _check_positive("db_rms_uG", db_rms_uG, allow_zero=True)
    l_min, l_max = _check_scales(grid, box, l_min_pc, l_max_pc)
    dk = 2.0 * math.pi / box
    n = np.arange(1, (grid + 1) // 2)  # 0 < n < N/2
    k = n * dk
    k = k[(k >= 2 * math.pi / l_max * (1 - 1e-9)) & (k <= 2 * math.pi / l_min * (1 + 1e-9))]
    if k.size == 0:
        raise ValueError(f"no box mode between l_min = {l_min:g} and l_max = {l_max:g} pc")
    g = k**KOLMOGOROV_1D
    power = db**2 * g / g.sum()
    return SlabSpectrum(k_per_pc=k, power_uG2=power, dk_per_pc=dk)


def _slab_components(spec: SlabSpectrum, grid: int, box: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    r"""bx(z), by(z) as 1-D float64 arrays: :math:`\sum_n \Delta B_n\cos(k_n z + \phi_n)`."""
    z = (np.arange(grid) + 0.5) * box / grid
    out = []
    for _ in range(2):
        phase = rng.uniform(0.0, 2.0 * math.pi, size=spec.k_per_pc.size)
        # amplitude sqrt(2) * sqrt(dB_n^2 / 2): <cos^2> = 1/2 on the grid exactly for 0 < n < N/2
        amp = np.sqrt(spec.power_uG2)
        out.append(np.cos(np.outer(z, spec.k_per_pc) + phase) @ amp)
    return out[0], out[1]


def _broadcast_z(profile: np.ndarray, grid: int) -> np.ndarray:
    out = np.empty((grid, grid, grid), dtype=np.float32)
    out[...] = profile.astype(np.float32)[None, None, :]
    return out


def slab(
    grid: int,
    box_pc: float,
    seed: int,
    *,
    b0_uG: float = 3.0,
    db_rms_uG: float = 1.0,
    l_min_pc: float | None = None,
    l_max_pc: float | None = None,
    density_cm3: float = 1.0,
    temperature_K: float = 11680.0,
    sigma_v_kms: float = 0.0,
) -> tuple[dict[str, np.ndarray], dict]:
    r"""Slab turbulence: transverse fluctuations with wavevectors along the mean field B0 z-hat.

    .. math::
        \mathbf B(z) = B_0\hat{\mathbf z} + \delta B_x(z)\hat{\mathbf x} + \delta B_y(z)\hat{\mathbf y},
        \qquad
        \delta B_{x,y}(z) = \sum_n \Delta B_n \cos(k_n z + \phi^{x,y}_n),

    with independent uniform random phases :math:`\phi^{x}_n, \phi^{y}_n` and the mode powers
    :math:`\Delta B_n^2` of :func:`slab_spectrum` (1-D Kolmogorov,
    :math:`G(k) \propto k^{-5/3}` between :math:`2\pi/l_{max}` and :math:`2\pi/l_{min}`), where
    z is the cell-centre coordinate. Every field depends on z only, :math:`\delta\mathbf B \perp
    \hat{\mathbf z}`, so :math:`\nabla\cdot\mathbf B = 0` exactly, and on the grid
    :math:`\langle|\delta\mathbf B|^2\rangle = \sum_n\Delta B_n^2` = ``db_rms_uG``\ :sup:`2` to
    round-off (discrete orthogonality of the modes). Fixed amplitudes with random phases (not
    Gaussian amplitudes) make the realised spectrum exactly the one quasi-linear theory is
    given. The velocity, if ``sigma_v_kms`` > 0, is an independent transverse slab field with
    the same spectrum and :math:`\langle|\mathbf v|^2\rangle^{1/2}` = ``sigma_v_kms``; density
    and temperature are uniform.

    Parameters
    ----------
    grid, box_pc, seed : cells per side, box edge [pc], random seed.
    b0_uG : mean field along z [uG].
    db_rms_uG : rms of :math:`\delta\mathbf B` [uG] (weak turbulence for QLT: << b0_uG).
    l_min_pc : smallest scale [pc]; None = 4 cells; >= 2 cells.
    l_max_pc : largest scale [pc]; None = box/2; > l_min and <= box.
    density_cm3, temperature_K : uniform n [cm^-3] and T [K].
    sigma_v_kms : rms velocity [km/s]; 0 (default) = gas at rest.
    """
    grid, box = _check_grid(grid, box_pc)
    b0 = float(b0_uG)
    if not math.isfinite(b0):
        raise ValueError(f"b0_uG must be finite, got {b0_uG!r}")
    n0 = _check_positive("density_cm3", density_cm3)
    t0 = _check_positive("temperature_K", temperature_K)
    sv = _check_positive("sigma_v_kms", sigma_v_kms, allow_zero=True)
    spec = slab_spectrum(grid, box, db_rms_uG, l_min_pc, l_max_pc)
    l_min, l_max = _check_scales(grid, box, l_min_pc, l_max_pc)
    rng_b, rng_v = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    dbx, dby = _slab_components(spec, grid, box, rng_b)
    if sv > 0:
        vx1, vy1 = _slab_components(slab_spectrum(grid, box, sv, l_min, l_max), grid, box, rng_v)
    else:
        vx1 = vy1 = np.zeros(grid)
    fields = _finish({
        "density": _full(n0, grid), "temperature": _full(t0, grid),
        "bx": _broadcast_z(dbx, grid), "by": _broadcast_z(dby, grid), "bz": _full(b0, grid),
        "vx": _broadcast_z(vx1, grid), "vy": _broadcast_z(vy1, grid), "vz": _full(0.0, grid),
    })
    attrs = {
        "generator": "cosmicflow.synthetic.slab",
        "medium_description": "slab turbulence: dB perpendicular to B0 = B0 z-hat, k parallel to z",
        "grid": grid,
        "box_pc": box,
        "seed": int(seed),
        "b0_uG": b0,
        "db_rms_uG": float(db_rms_uG),
        "l_min_pc": l_min,
        "l_max_pc": l_max,
        "density_cm3": n0,
        "temperature_K": t0,
        "sigma_v_kms": sv,
        "spectrum": ("one-sided 1-D G(k) = G0 k^-5/3 on k_n = 2 pi n / L in [2pi/l_max, "
                     "2pi/l_min], sum_n G(k_n) dk = db_rms^2; see slab_spectrum"),
        "slab_spectrum_G0": float(spec.power_uG2[0] / spec.dk_per_pc
                                  / spec.k_per_pc[0] ** KOLMOGOROV_1D),
        "slab_spectrum_G0_units": "uG^2 pc^(-2/3) (G(k) = G0 k^-5/3, k in rad/pc)",
        "slab_modes": int(spec.k_per_pc.size),
        "mean_molecular_weight": MEAN_MOLECULAR_WEIGHT,
        "adiabatic_index": 1.0,
        "db_rms_uG_measured": float(np.sqrt(np.mean(dbx**2 + dby**2))),
        "mean_b_uG": [float(np.mean(dbx)), float(np.mean(dby)), b0],
    }
    return fields, attrs


# ----------------------------------------------------------------------------------------
# statistical multiphase ISM
# ----------------------------------------------------------------------------------------
#: Gaussian-variable nodes on which the density map is built and calibrated
_Z_NODES = np.linspace(-8.0, 8.0, 8001)
#: ln-density slope of the CNM tail per unit of the Gaussian variable (CNM spans ~ a decade)
_CNM_LOG_SLOPE = 0.5


@dataclass(frozen=True)
class _PhaseMap:
    """Calibrated map from the Gaussian variable z to ln n (at the median pressure)."""

    z_wnm: float             # WNM/UNM boundary in z (volume fraction below: Phi(z_wnm))
    z_cnm: float             # UNM/CNM boundary in z
    wnm_log_slope: float     # d ln n / dz inside the WNM
    n_wu: float              # threshold densities P0/T_wnm, P0/T_cnm [cm^-3]
    n_uc: float
    gap: float               # density jump factor on each side of a threshold

    def log_density(self, z: np.ndarray, width: float) -> np.ndarray:
        """ln n(z) with the phase jumps blurred over ``width`` (z units)."""
        return _log_density_table(z, self.z_wnm, self.z_cnm, self.wnm_log_slope, self.n_wu,
                                  self.n_uc, self.gap, width)


def _log_density_table(z: np.ndarray, z_wnm: float, z_cnm: float, s_wnm: float, n_wu: float,
                       n_uc: float, gap: float, width: float) -> np.ndarray:
    r"""ln n(z): lognormal WNM tail, log-linear UNM, lognormal CNM tail, with density jumps.

    .. math::
        \ln n = L_W + (L_U - L_W)\,\Phi\!\left(\frac{z - z_W}{w}\right)
               + (L_C - L_U)\,\Phi\!\left(\frac{z - z_C}{w}\right)

    with the straight lines :math:`L_W = \ln(n_{W|U}/j) + s_W (z - z_W)`,
    :math:`L_U` from :math:`\ln(j n_{W|U})` at :math:`z_W` to :math:`\ln(n_{U|C}/j)` at
    :math:`z_C`, :math:`L_C = \ln(j n_{U|C}) + 0.5 (z - z_C)`: n jumps by :math:`j^2` across
    each threshold density, the jumps blurred over ``width`` (z units) by the normal CDF
    :math:`\Phi`; smooth in the parameters, so the calibration is a smooth root problem.
    """
    width = max(width, 1e-3)
    l_w = math.log(n_wu / gap) + s_wnm * (z - z_wnm)
    slope_u = (math.log(n_uc / gap) - math.log(n_wu * gap)) / (z_cnm - z_wnm)
    l_u = math.log(n_wu * gap) + slope_u * (z - z_wnm)
    l_c = math.log(n_uc * gap) + _CNM_LOG_SLOPE * (z - z_cnm)
    return (l_w + (l_u - l_w) * special.ndtr((z - z_wnm) / width)
            + (l_c - l_u) * special.ndtr((z - z_cnm) / width))


def _phase_budget(log_n: np.ndarray, z: np.ndarray, p0: float, sigma_lnp: float, t_cnm: float,
                  t_wnm: float) -> tuple[float, np.ndarray, np.ndarray]:
    r"""Mean density and (volume, mass) fractions of CNM, UNM, WNM for z ~ N(0, 1).

    A cell of density n is CNM when :math:`T = P/n < T_{cnm}`, WNM when :math:`T > T_{wnm}`,
    with :math:`\ln P \sim N(\ln P_0, \sigma^2)` independent of n.
    """
    wz = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi) * (z[1] - z[0])
    n = np.exp(log_n)
    # a floor keeps the phase probabilities smooth (root finding) when P is uniform
    sigma_lnp = max(sigma_lnp, 1e-3)
    p_cnm = special.ndtr(np.log(t_cnm * n / p0) / sigma_lnp)
    p_wnm = special.ndtr(-np.log(t_wnm * n / p0) / sigma_lnp)
    probs = np.stack([p_cnm, 1.0 - p_cnm - p_wnm, p_wnm])
    vol = probs @ wz
    mass = probs @ (wz * n)
    mean_n = mass.sum() / wz.sum()
    return float(mean_n), vol / vol.sum(), mass / mass.sum()


def _calibrate_phase_map(mean_n: float, cnm_mass: float, wnm_mass: float, p0: float,
                         sigma_lnp: float, t_cnm: float, t_wnm: float, gap: float,
                         width: float) -> _PhaseMap:
    """Solve for the phase boundaries z_wnm, z_cnm and the WNM slope that give the mean density
    and CNM / WNM mass fractions asked for (UNM takes the rest)."""
    z = _Z_NODES
    n_wu, n_uc = p0 / t_wnm, p0 / t_cnm

    def table(x):
        z1, dz2, s_w = x
        return _log_density_table(z, z1, z1 + dz2, s_w, n_wu, n_uc, gap, width)

    def residual(x):
        m, _, mass = _phase_budget(table(x), z, p0, sigma_lnp, t_cnm, t_wnm)
        return [math.log(m / mean_n), mass[0] - cnm_mass, mass[2] - wnm_mass]

    best = None
    for x0 in ([1.0, 1.4, 0.2], [0.5, 2.0, 0.5], [1.5, 1.0, 0.1], [0.0, 2.5, 1.0]):
        sol = optimize.least_squares(residual, x0, bounds=([-4.0, 0.02, 1e-3], [5.0, 6.0, 3.0]),
                                     xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=60)
        err = float(np.max(np.abs(sol.fun)))
        if best is None or err < best[0]:
            best = (err, sol.x)
        if err < 1e-6:
            break
    err, x = best
    if err > 1e-4:
        raise ValueError(
            f"multiphase: cannot reach mean_density_cm3 = {mean_n:g} with CNM / WNM mass "
            f"fractions {cnm_mass:g} / {wnm_mass:g} at P/k_B = {p0:g} K cm^-3 (residual "
            f"{err:.2g}). The phase densities are set by the pressure and the thresholds: WNM "
            f"lies below n = {n_wu / gap:.3g} cm^-3 and CNM above {n_uc * gap:.3g} cm^-3, so "
            f"e.g. the WNM needs a volume fraction of at least {wnm_mass * mean_n * gap / n_wu:.3g}"
            "; choose a mean density, pressure and fractions compatible with that"
        )
    z1, dz2, s_w = (float(v) for v in x)
    return _PhaseMap(z_wnm=z1, z_cnm=z1 + dz2, wnm_log_slope=s_w, n_wu=n_wu, n_uc=n_uc, gap=gap)


def _gaussian_anamorphosis(phi: np.ndarray, nbins: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(phi_edges, z_edges): the realised field's empirical CDF mapped to a standard normal.

    ``z = Phi^-1(F_phi(phi))`` at histogram edges; interpolating between them turns the
    realised field into one whose one-point distribution is N(0, 1) to histogram accuracy,
    so volume and mass fractions do not depend on the few large-scale modes of one seed.
    """
    lo, hi = float(phi.min()), float(phi.max())
    counts = np.zeros(nbins, dtype=np.int64)
    for i in range(phi.shape[0]):
        counts += np.histogram(phi[i], bins=nbins, range=(lo, hi))[0]
    edges = np.linspace(lo, hi, nbins + 1)
    cdf = np.concatenate([[0.0], np.cumsum(counts)]) / phi.size
    eps = 0.5 / phi.size
    return edges, special.ndtri(np.clip(cdf, eps, 1.0 - eps))


def _interp_uniform(x: np.ndarray, lo: float, hi: float, table: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``table`` (values at ``len(table)`` equispaced nodes spanning
    [lo, hi]) at ``x`` (float32 in, float32 out, clamped at the ends); like ``np.interp`` but
    without its binary search."""
    nseg = table.size - 1
    t = (x - np.float32(lo)) * np.float32(nseg / (hi - lo))
    np.clip(t, 0, nseg, out=t)
    i = np.minimum(t.astype(np.int32), nseg - 1)
    t -= i
    tab = table.astype(np.float32)
    out = tab[i]
    out += t * (tab[i + 1] - out)
    return out


def _map_planes(src: np.ndarray, func: Callable[[np.ndarray, slice], np.ndarray]) -> np.ndarray:
    """float32 array func(src[s], s) evaluated slab by slab along axis 0 (bounded temporaries)."""
    out = np.empty(src.shape, dtype=np.float32)
    for i0 in range(0, src.shape[0], _SLAB):
        s = slice(i0, min(src.shape[0], i0 + _SLAB))
        out[s] = func(src[s], s)
    return out


def _rms_gradient(f: np.ndarray, dx: float) -> float:
    """rms of the central-difference gradient |D f| [units of f per pc]."""
    total = 0.0
    for axis in range(3):
        d = _dcentral(f, axis, dx)
        total += _rms(d) ** 2
    return math.sqrt(total)


def phase_fractions(density: np.ndarray, temperature: np.ndarray,
                    thresholds_K=DEFAULT_THRESHOLDS_K) -> tuple[np.ndarray, np.ndarray]:
    """(volume, mass) fractions of CNM (T < t0), UNM, WNM (T > t1), accumulated in float64,
    by the phase rule of :func:`cosmicflow.phase_rule.phase_index`."""
    vol = np.zeros(N_PHASES)
    mass = np.zeros(N_PHASES)
    for i in range(density.shape[0]):
        phase = phase_index(temperature[i], thresholds_K).ravel()
        vol += np.bincount(phase, minlength=N_PHASES)
        mass += np.bincount(phase, weights=density[i].astype(np.float64).ravel(), minlength=N_PHASES)
    return vol / vol.sum(), mass / mass.sum()


def multiphase(
    grid: int,
    box_pc: float,
    seed: int,
    *,
    b0_uG: float = 3.0,
    db_rms_uG: float = 3.0,
    mean_density_cm3: float = 1.0,
    sigma_v_kms: float = 10.0,
    pressure_Kcm3: float = 3500.0,
    sigma_ln_pressure: float = 0.1,
    cnm_mass_fraction: float = 0.22,
    wnm_mass_fraction: float = 0.34,
    phase_density_jump: float = 1.35,
    boundary_width_pc: float = 0.0,
    field_smoothing_pc: float | None = None,
    l_min_pc: float | None = None,
    l_max_pc: float | None = None,
    density_spectral_index: float = -3.0,
    field_density_exponent: float = 0.3,
    t_cnm_K: float = DEFAULT_THRESHOLDS_K[0],
    t_wnm_K: float = DEFAULT_THRESHOLDS_K[1],
) -> tuple[dict[str, np.ndarray], dict]:
    r"""A statistical model of a thermally bistable, magnetised, turbulent ISM.

    This is **not a simulation**: no equation of motion is solved. It draws correlated Gaussian
    random fields and maps them onto gas with the one-point statistics of the paper's
    multiphase run (CNM / UNM / WNM mass fractions 22 / 44 / 34 %, pressure equilibrium,
    field strength growing with density, sharp phase boundaries), so that every pipeline stage
    can be exercised on a multiphase medium generated in seconds.

    Construction (all fields periodic):

    1. **Density.** A Gaussian random field :math:`\phi` with mode power
       :math:`\propto k^{\alpha_n}` (``density_spectral_index``; -3 gives equal structure per
       octave: clumps on all scales) between :math:`2\pi/l_{max}` and :math:`2\pi/l_{min}` is
       made exactly standard normal, :math:`z = \Phi^{-1}(F_\phi(\phi))` (Gaussian anamorphosis
       through its empirical CDF), and mapped monotonically, :math:`n = n(z)`:

       - WNM, :math:`z < z_W`: :math:`\ln n = \ln(n_{W|U}/j) + s_W (z - z_W)` (lognormal),
       - UNM, :math:`z_W \le z < z_C`: :math:`\ln n` linear from :math:`\ln(j\,n_{W|U})` to
         :math:`\ln(n_{U|C}/j)`,
       - CNM, :math:`z \ge z_C`: :math:`\ln n = \ln(j\,n_{U|C}) + 0.5 (z - z_C)`,

       where :math:`n_{W|U} = P_0/(k_B T_{wnm})` and :math:`n_{U|C} = P_0/(k_B T_{cnm})` are
       the densities of the threshold temperatures at the median pressure and
       :math:`j` = ``phase_density_jump`` > 1 opens a density gap across each threshold, so the
       temperature jumps across the thresholds instead of lingering near them. The jumps are
       blurred over :math:`\Delta z = w\,\langle|\nabla\phi|^2\rangle^{1/2}` (w =
       ``boundary_width_pc``), i.e. phase boundaries are about w thick (default: one cell). :math:`z_W`,
       :math:`z_C` and :math:`s_W` are solved for so that the mean density and the CNM and WNM
       mass fractions (including the pressure scatter below) equal the requested values; the
       realised density is finally rescaled by a factor within ~1e-3 of 1 to the exact mean.
    2. **Temperature** from pressure equilibrium, :math:`T = P/(n k_B)` with a smooth
       lognormal pressure :math:`\ln(P/k_B) = \ln P_0 + \sigma_{\ln P}\,\psi`, :math:`\psi` an
       independent unit Gaussian Kolmogorov field (:math:`k^{-11/3}`, same band).
    3. **Magnetic field**

       .. math::
           \mathbf B = B_0\hat{\mathbf z} + \nabla_c\times\left(g\,\mathbf A\right),
           \qquad g = (\tilde n/\bar n)^{a},

       with :math:`\mathbf A` a Coulomb-gauge Gaussian vector potential with mode power
       :math:`k^{-11/3-2}` (so :math:`\nabla\times\mathbf A` is Kolmogorov), :math:`a` =
       ``field_density_exponent``, :math:`\tilde n` the density map of step 1 with its
       jumps blurred over ``field_smoothing_pc``, and :math:`\nabla_c\times` the periodic second-order
       central-difference curl :func:`central_curl`. Hence :func:`central_divergence` of
       :math:`\mathbf B` is 0 to round-off and :math:`\langle\mathbf B\rangle = B_0\hat{\mathbf
       z}` exactly (a difference of a periodic array has zero mean). Since
       :math:`\nabla\times(g\mathbf A) = g\nabla\times\mathbf A + \nabla g\times\mathbf A`,
       the fluctuations are stronger in dense gas and :math:`|\nabla B|` peaks where g jumps,
       at the phase boundaries. :math:`\mathbf A` is scaled so that
       :math:`\langle|\mathbf B - B_0\hat{\mathbf z}|^2\rangle^{1/2}` = ``db_rms_uG``.
    4. **Velocity**: an independent solenoidal Gaussian Kolmogorov field (same band) with
       :math:`\langle|\mathbf v|^2\rangle^{1/2}` = ``sigma_v_kms``, so cold gas is highly
       supersonic (:math:`c_s` < 1 km/s) and warm gas transonic (:math:`c_s` ~ 8 km/s).

    Parameters
    ----------
    grid, box_pc, seed : cells per side, box edge [pc] (paper: 100 pc), random seed.
    b0_uG : mean field along z [uG] (paper: 3).
    db_rms_uG : rms of B - B0 z-hat [uG].
    mean_density_cm3 : volume-mean hydrogen density [cm^-3] (paper: 1).
    sigma_v_kms : 3-D rms velocity [km/s] (paper: 10).
    pressure_Kcm3 : median thermal pressure P0/k_B [K cm^-3].
    sigma_ln_pressure : standard deviation of ln P (0.1: 68 % of cells within ~3200-3900).
    cnm_mass_fraction, wnm_mass_fraction : target mass fractions (paper: 0.22, 0.34); UNM
        gets the rest.
    phase_density_jump : factor j (> 1) by which n jumps on each side of a threshold density.
    boundary_width_pc : thickness of the density/temperature jump at phase boundaries [pc];
        0 (default) = a jump between neighbouring cells (real fronts, set by thermal
        conduction at ~0.01-0.1 pc, are thinner than any cell used here).
    field_smoothing_pc : thickness [pc] over which the field amplification g changes across a
        phase boundary; None = 2 cells. A jump in g would put a one-cell spike
        :math:`\nabla g\times\mathbf A` into B that grows as the cell shrinks.
    l_min_pc, l_max_pc : band of all random fields [pc]; None = 4 cells and box/2.
    density_spectral_index : mode-power index of the density-generating field.
    field_density_exponent : a in g = (n / mean n)^a, >= 0.
    t_cnm_K, t_wnm_K : phase thresholds [K] the model is calibrated on (paper: 200, 5000).

    Returns
    -------
    fields, attrs : canonical fields and metadata; attrs include the measured
        ``volume_fractions`` and ``mass_fractions`` (CNM, UNM, WNM), ``b_abs_min_uG``,
        ``b_abs_max_uG``, ``b_abs_rms_uG``, ``mean_b_uG``, ``mean_density_cm3_measured``,
        ``sigma_v_kms_measured`` and the calibrated map.
    """
    grid, box = _check_grid(grid, box_pc)
    dx = box / grid
    b0 = float(b0_uG)
    if not math.isfinite(b0):
        raise ValueError(f"b0_uG must be finite, got {b0_uG!r}")
    db = _check_positive("db_rms_uG", db_rms_uG, allow_zero=True)
    n_mean = _check_positive("mean_density_cm3", mean_density_cm3)
    sv = _check_positive("sigma_v_kms", sigma_v_kms, allow_zero=True)
    p0 = _check_positive("pressure_Kcm3", pressure_Kcm3)
    s_lnp = _check_positive("sigma_ln_pressure", sigma_ln_pressure, allow_zero=True)
    t_cnm = _check_positive("t_cnm_K", t_cnm_K)
    t_wnm = _check_positive("t_wnm_K", t_wnm_K)
    if not t_cnm < t_wnm:
        raise ValueError(f"need t_cnm_K < t_wnm_K, got {t_cnm:g} >= {t_wnm:g}")
    f_c, f_w = float(cnm_mass_fraction), float(wnm_mass_fraction)
    if not (0 < f_c < 1 and 0 < f_w < 1 and f_c + f_w < 1):
        raise ValueError(
            f"cnm_mass_fraction and wnm_mass_fraction must be in (0, 1) with a sum < 1 (UNM "
            f"takes the rest), got {cnm_mass_fraction!r}, {wnm_mass_fraction!r}"
        )
    jump = float(phase_density_jump)
    if not (math.isfinite(jump) and jump >= 1.0 and jump**2 < t_wnm / t_cnm):
        raise ValueError(
            f"phase_density_jump must be >= 1 and leave room for the UNM "
            f"(jump^2 < t_wnm_K / t_cnm_K = {t_wnm / t_cnm:g}), got {phase_density_jump!r}"
        )
    width_pc = _check_positive("boundary_width_pc", boundary_width_pc, allow_zero=True)
    g_width_pc = 2.0 * dx if field_smoothing_pc is None else _check_positive(
        "field_smoothing_pc", field_smoothing_pc, allow_zero=True)
    alpha_n = float(density_spectral_index)
    if not (math.isfinite(alpha_n) and -6.0 <= alpha_n <= 0.0):
        raise ValueError(f"density_spectral_index must be in [-6, 0], got {density_spectral_index!r}")
    a_g = _check_positive("field_density_exponent", field_density_exponent, allow_zero=True)
    if a_g > 2:
        raise ValueError(f"field_density_exponent must be <= 2, got {field_density_exponent!r}")
    l_min, l_max = _check_scales(grid, box, l_min_pc, l_max_pc)
    rng_n, rng_p, rng_a, rng_v = (np.random.default_rng(s)
                                  for s in np.random.SeedSequence(seed).spawn(4))

    # 1. density: Gaussian field -> exactly normal z -> calibrated phase map
    phi = gaussian_random_field(grid, box, rng_n, l_min, l_max, alpha_n)
    # widths in pc -> widths in the Gaussian variable, through the field's typical gradient
    grad_phi = _rms_gradient(phi, dx)
    pmap = _calibrate_phase_map(n_mean, f_c, f_w, p0, s_lnp, t_cnm, t_wnm, jump,
                                width_pc * grad_phi)
    phi_edges, z_edges = _gaussian_anamorphosis(phi)
    logn_edges = pmap.log_density(z_edges, width_pc * grad_phi)
    lo, hi = float(phi_edges[0]), float(phi_edges[-1])
    density = _map_planes(phi, lambda a, s: np.exp(_interp_uniform(a, lo, hi, logn_edges)))
    rescale = n_mean / _mean(density)
    density *= np.float32(rescale)
    # field amplification g = (n/mean n)^a from the same map with boundaries blurred over
    # field_smoothing_pc, so B jumps across a boundary instead of spiking on it
    logg_edges = a_g * (pmap.log_density(z_edges, g_width_pc * grad_phi)
                        + math.log(rescale / n_mean))
    g = _map_planes(phi, lambda a, s: np.exp(_interp_uniform(a, lo, hi, logg_edges)))
    del phi

    # 2. temperature from pressure equilibrium with a lognormal pressure
    psi = gaussian_random_field(grid, box, rng_p, l_min, l_max, KOLMOGOROV_3D)
    temperature = _map_planes(psi, lambda a, s: p0 * np.exp(s_lnp * a) / density[s])
    p_min, p_max = (float(x) for x in (p0 * np.exp(s_lnp * psi.min()), p0 * np.exp(s_lnp * psi.max())))
    del psi

    # 3. magnetic field B = B0 z + curl_c(g A)
    ax, ay, az = solenoidal_field(grid, box, rng_a, l_min, l_max, 1.0, KOLMOGOROV_3D - 2.0)
    for c in (ax, ay, az):
        c *= g
    del g
    bx, by, bz = central_curl(ax, ay, az, dx)
    del ax, ay, az
    drms = _rms(bx, by, bz)
    scale = np.float32(db / drms) if drms > 0 else np.float32(0.0)
    for c in (bx, by, bz):
        c *= scale
    bz += np.float32(b0)

    # 4. velocity
    vx, vy, vz = solenoidal_field(grid, box, rng_v, l_min, l_max, sv)

    fields = _finish({"density": density, "temperature": temperature,
                      "bx": bx, "by": by, "bz": bz, "vx": vx, "vy": vy, "vz": vz})
    del density, temperature, bx, by, bz, vx, vy, vz
    vol, mass = phase_fractions(fields["density"], fields["temperature"], (t_cnm, t_wnm))
    bmin, bmax, bsq = math.inf, 0.0, 0.0
    for i in range(grid):
        b2 = (fields["bx"][i].astype(np.float64) ** 2 + fields["by"][i].astype(np.float64) ** 2
              + fields["bz"][i].astype(np.float64) ** 2)
        bmin, bmax, bsq = min(bmin, float(b2.min())), max(bmax, float(b2.max())), bsq + b2.sum()
    v_a = alfven_speed_kms(abs(b0), n_mean) if b0 != 0 else math.inf
    attrs = {
        "generator": "cosmicflow.synthetic.multiphase",
        "medium_description": ("statistical model of a thermally bistable ISM (random fields "
                               "mapped to CNM/UNM/WNM; not a simulation)"),
        "grid": grid,
        "box_pc": box,
        "seed": int(seed),
        "b0_uG": b0,
        "db_rms_uG": db,
        "mean_density_cm3": n_mean,
        "sigma_v_kms": sv,
        "pressure_Kcm3": p0,
        "sigma_ln_pressure": s_lnp,
        "cnm_mass_fraction": f_c,
        "wnm_mass_fraction": f_w,
        "phase_density_jump": jump,
        "boundary_width_pc": width_pc,
        "field_smoothing_pc": g_width_pc,
        "l_min_pc": l_min,
        "l_max_pc": l_max,
        "density_spectral_index": alpha_n,
        "field_density_exponent": a_g,
        "t_cnm_K": t_cnm,
        "t_wnm_K": t_wnm,
        "mean_molecular_weight": MEAN_MOLECULAR_WEIGHT,
        "adiabatic_index": ADIABATIC_INDEX,
        "phase_names": ", ".join(DEFAULT_PHASE_NAMES),
        "volume_fractions": [float(x) for x in vol],
        "mass_fractions": [float(x) for x in mass],
        "calibrated_volume_boundaries": [float(special.ndtr(pmap.z_wnm)),
                                         float(special.ndtr(pmap.z_cnm))],
        "calibrated_wnm_log_slope": pmap.wnm_log_slope,
        "mean_density_cm3_measured": _mean(fields["density"]),
        "density_range_cm3": [float(fields["density"].min()), float(fields["density"].max())],
        "temperature_range_K": [float(fields["temperature"].min()),
                                float(fields["temperature"].max())],
        "pressure_range_Kcm3": [p_min, p_max],
        "b_abs_min_uG": math.sqrt(bmin),
        "b_abs_max_uG": math.sqrt(bmax),
        "b_abs_rms_uG": math.sqrt(bsq / fields["bx"].size),
        "mean_b_uG": [_mean(fields[c]) for c in ("bx", "by", "bz")],
        "db_rms_uG_measured": _rms_delta(fields, [0.0, 0.0, b0]),
        "sigma_v_kms_measured": _rms(fields["vx"], fields["vy"], fields["vz"]),
        "alfven_mach_number": sv / v_a,
        "mach_number_definition": "M_A = sigma_v,3D / v_A(B0, mean n)",
        "div_b_operator": "periodic second-order central differences (cosmicflow.synthetic.central_divergence)",
    }
    return fields, attrs
