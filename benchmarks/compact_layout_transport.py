"""Does the compact field layout change D∥ and D⊥? Paired runs on the default media (prints
figures; not a test).

    PYTHONPATH=src python benchmarks/compact_layout_transport.py [--batches 10] [--energy 5.0]
        [--media multiphase isothermal] [--folder DIR]

For each medium of ``config/config.yaml``, built as the default pipeline builds it, and for
batches 0 .. B−1 (the pipeline's seeds: medium, E, injection, batch), the same particles (the
config's ``particles_per_energy`` and ``duration_gyroperiods``, isotropic injection) are pushed
through the full and through the compact field cache, and each batch is analysed as the
transport stage analyses it (:func:`cosmicflow.transport.analyse_transport`). Printed per
batch: D∥ and D⊥ of the full layout [cm² s⁻¹] with the half-width of their 68 % interval and the
relative change compact − full (a batch without a plateau in either layout — limit kind not
``plateau`` — is shown and left out); then, per medium, the mean change over the batches with its
standard error (independent batches).

Half-float rounding (relative 2⁻¹², a per-snapshot power-of-two scale) decorrelates the chaotic
orbits within a run, so compact and full are two samples of the same ensemble and a single
batch's change is of the size of its statistical error; a systematic effect of the layout would
show as a mean change several standard errors away from 0. The test of the same comparison for
batch 0 is ``tests/test_integrate.py::test_compact_layout_on_the_default_media``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

import cosmicflow.integrate as ci
import cosmicflow.transport as tr
from cosmicflow.media import build_medium

REPO = Path(__file__).resolve().parents[1]


def paired_batch(snapshot: Path, caches: dict, medium: str, energy: float, batch: int,
                 cfg: dict, folder: Path, params: tr.TransportParams) -> dict:
    """{layout: transport result} of one batch pushed through each layout's field cache."""
    out = {}
    for layout, cache in caches.items():
        settings = ci.IntegrateSettings(duration_gyroperiods=cfg["duration_gyroperiods"],
                                        field_layout=layout, trajectories=0)
        path = ci.integrate_batch(snapshot, folder / f"{medium}_{layout}_{batch}.h5",
                                  field_cache=cache, energy_pev=energy,
                                  n_particles=cfg["particles_per_energy"], injection="isotropic",
                                  batch=batch, medium=medium, settings=settings, progress=False)
        out[layout] = tr.analyse_transport(tr.load_batches([path]), params)
        path.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--energy", type=float, default=5.0, help="particle energy [PeV]")
    ap.add_argument("--media", nargs="+", default=None, help="default: every medium of the config")
    ap.add_argument("--folder", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    integ = config["integrate"]
    params = tr.TransportParams(bootstrap_samples=config["transport"]["bootstrap_samples"])
    media = args.media or list(config["media"])
    print(f"{integ['particles_per_energy']} particles x {integ['duration_gyroperiods']:g} "
          f"gyro-periods per batch, E = {args.energy:g} PeV, isotropic injection")
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        folder = Path(tmp)
        for medium in media:
            t0 = time.perf_counter()
            snapshot = build_medium(medium, config["media"][medium], folder / f"{medium}.h5")
            caches = {layout: ci.write_field_cache(snapshot, folder / f"{medium}_{layout}_cache.h5",
                                                   layout=layout)
                      for layout in ("full", "compact")}
            change = {"par": [], "perp": []}
            print(f"\n{medium} ({time.perf_counter() - t0:.0f} s to build)")
            print("batch | D_par full [cm^2/s] (±68 %) | change | D_perp full (±68 %) | change")
            for batch in range(args.batches):
                res = paired_batch(snapshot, caches, medium, args.energy, batch, integ, folder,
                                   params)
                cells = [str(batch)]
                for comp in ("par", "perp"):
                    text, rel = _compare(res, comp)
                    cells += text
                    if math.isfinite(rel):
                        change[comp].append(rel)
                print(" | ".join(cells), flush=True)
            for comp, x in change.items():
                if len(x) > 1:
                    x = np.array(x)
                    stderr = x.std(ddof=1) / math.sqrt(len(x))
                    print(f"{medium} D_{comp}: mean change {x.mean():+.1%} ± {stderr:.1%} (standard "
                          f"error, {len(x)} batches), rms change {math.sqrt(np.mean(x**2)):.1%}")


def _compare(res: dict, comp: str) -> tuple[list[str], float]:
    """Table cells (D of the full layout with its 68 % half-width, the relative change) and the
    change compact/full − 1 (NaN where either layout has no plateau)."""
    full, compact = (float(res[k][f"D_{comp}_combined"]) for k in ("full", "compact"))
    rel = compact / full - 1.0
    if not math.isfinite(rel):
        kinds = "/".join(str(res[k].attrs[f"D_{comp}_limit_kind"]) for k in ("full", "compact"))
        return [f"{full:.3e}" if math.isfinite(full) else "no plateau", f"- ({kinds})"], rel
    lo, hi = res["full"][f"D_{comp}_combined_interval"].values
    return [f"{full:.3e} (±{(hi - lo) / 2 / full:.1%})", f"{rel:+.1%}"], rel


if __name__ == "__main__":
    main()
