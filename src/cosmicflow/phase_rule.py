"""The thermal-phase rule, its defaults and the number of phases: defined here once.

Every stage that labels gas by phase (phase maps and tables, gradient histograms, the particle
pusher's phase accounting, the synthetic media's calibration) uses this module, so that a cell
at exactly a threshold temperature lands in the same phase everywhere.

Rule (paper §2.1, thresholds T_1 < T_2, defaults 200 K and 5000 K):

* CNM (index 0): T < T_1
* UNM (index 1): T_1 <= T <= T_2   (so T = 5000 K is UNM)
* WNM (index 2): T > T_2

A NaN temperature counts as WNM in the pusher's branch-free form (snapshots with NaN are refused
at ingest, so this never happens on validated data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from numba import njit

from cosmicflow._numba import JIT_INLINE

#: default phase boundaries [K]: CNM below the first, WNM above the second (paper §2.1)
DEFAULT_THRESHOLDS_K: tuple[float, float] = (200.0, 5000.0)
#: default phase names, coldest first
DEFAULT_PHASE_NAMES: tuple[str, str, str] = ("CNM", "UNM", "WNM")
#: number of thermal phases the rule produces (two thresholds)
N_PHASES: int = len(DEFAULT_PHASE_NAMES)


def check_thresholds(thresholds_K: Sequence[float]) -> tuple[float, float]:
    """Validate two increasing, positive, finite temperatures [K]; return them as floats."""
    th = [float(x) for x in thresholds_K]
    if len(th) != N_PHASES - 1 or not all(map(math.isfinite, th)) or not (0 < th[0] < th[1]):
        raise ValueError(
            f"phases.thresholds_K must be {N_PHASES - 1} increasing positive temperatures [K], "
            f"got {list(thresholds_K)}"
        )
    return th[0], th[1]


def phase_index(temperature: np.ndarray, thresholds_K: Sequence[float] = DEFAULT_THRESHOLDS_K
                ) -> np.ndarray:
    """Phase of each cell (int8): 0 if T < T_1, 1 if T_1 <= T <= T_2, 2 if T > T_2."""
    t1, t2 = check_thresholds(thresholds_K)
    t = np.asarray(temperature)
    return ((t >= t1).astype(np.int8) + (t > t2)).astype(np.int8)


@njit(**JIT_INLINE)
def phase_of(t, t1, t2):
    """:func:`phase_index` for one temperature t [K] inside Numba kernels, without branches:
    along a trajectory the phase changes every few cells, and a mispredicted branch costs more
    than the two compares. NaN gives 2 (WNM)."""
    return 2 - int(t <= t2) - int(t < t1)
