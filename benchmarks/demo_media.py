"""Hand-built stand-ins for the synthetic media, for looking at the phases/gradients figures.

Not physics-grade (that is cosmicflow.synthetic's job): Gaussian random fields with a
Kolmogorov spectrum, a lognormal density, T from thermal-pressure balance P/k_B = 3000 K cm^-3
(so dense gas is cold), a mean field along z plus turbulence compressed with n^0.3.

    PYTHONPATH=src python benchmarks/demo_media.py results/demo   # writes multiphase + isothermal
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from cosmicflow.snapshot import write_snapshot


def grf(shape, box_pc, rng, slope=-11.0 / 3.0, l_max_pc=50.0):
    """Unit-variance Gaussian random field with 3-D power spectrum P(k) ~ k^slope below 2 pi / l_max."""
    ks = np.meshgrid(*[np.fft.fftfreq(n, d=box_pc / n) for n in shape], indexing="ij", sparse=True)
    k = np.sqrt(sum(ki**2 for ki in ks))
    k0 = 1.0 / l_max_pc
    amp = np.where(k > 0, (np.maximum(k, k0)) ** (slope / 2.0), 0.0)
    noise = np.fft.fftn(rng.normal(size=shape))
    f = np.real(np.fft.ifftn(noise * amp))
    return (f - f.mean()) / f.std()


def multiphase_like(grid=96, box_pc=100.0, seed=1):
    rng = np.random.default_rng(seed)
    shape = (grid,) * 3
    n = 0.8 * np.exp(1.6 * grf(shape, box_pc, rng))
    t = np.clip(3000.0 / n, 20.0, 2.0e4)
    comp = (n / n.mean()) ** 0.3
    b = [2.0 * grf(shape, box_pc, rng) * comp, 2.0 * grf(shape, box_pc, rng) * comp,
         3.0 + 2.0 * grf(shape, box_pc, rng) * comp]
    v = [10.0 / np.sqrt(3) * grf(shape, box_pc, rng) for _ in range(3)]
    return _fields(n, t, b, v)


def isothermal_like(grid=96, box_pc=100.0, seed=2):
    rng = np.random.default_rng(seed)
    shape = (grid,) * 3
    n = np.exp(0.5 * grf(shape, box_pc, rng))
    n /= n.mean()
    t = np.full(shape, 12000.0)
    b = [3.0 / np.sqrt(2) * grf(shape, box_pc, rng), 3.0 / np.sqrt(2) * grf(shape, box_pc, rng),
         3.0 + 0.0 * n]
    v = [10.0 / np.sqrt(3) * grf(shape, box_pc, rng) for _ in range(3)]
    return _fields(n, t, b, v)


def _fields(n, t, b, v):
    f = {"density": n, "temperature": t, "bx": b[0], "by": b[1], "bz": b[2],
         "vx": v[0], "vy": v[1], "vz": v[2]}
    return {k: np.asarray(a, dtype=np.float32) for k, a in f.items()}


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "results/demo")
    write_snapshot(out / "multiphase" / "snapshot.h5", multiphase_like(), 100.0)
    write_snapshot(out / "isothermal" / "snapshot.h5", isothermal_like(), 100.0,
                   attrs={"mean_molecular_weight": 1.0, "adiabatic_index": 1.0,
                          "equation_of_state": "isothermal"})
    print("wrote", out)
