"""Numba JIT options for every cosmicflow kernel, decided once, here (grep for ``fastmath=``).

Decisions
---------
``fastmath=False``
    The Boris pusher's invariants are the tests' anchors: |u| = c to round-off over 1e5 steps,
    the exact discrete orbit radius to 1e-10. IEEE semantics keep those round-off bounded by
    the textbook estimate, keep ``isfinite`` checks meaningful (``nnan``/``ninf`` would drop
    them) and make results independent of how LLVM chooses to vectorise. The pusher is bound
    by the latency of its field loads, not by floating-point throughput: with
    ``fastmath={"contract"}`` (FMA fusion) the cost per particle-step was unchanged (50 ns
    with the field in cache, 130 ns on 128^3, one thread), so nothing is gained for them.
``error_model="numpy"``
    Division by zero gives inf/nan instead of a Python exception check on every division in
    the inner loop (inputs are validated in the public wrappers before any kernel runs).
``cache=True``
    Snakemake starts one process per particle batch; caching avoids recompiling the pusher in
    each.
"""

from __future__ import annotations

#: options for serial kernels and the helpers they call
JIT = {"cache": True, "fastmath": False, "error_model": "numpy"}
#: small hot helpers of the pusher (step, interpolation, rotation): inlined at Numba-IR level.
#: LLVM alone declined to inline the step, and each out-of-line call that takes arrays pays
#: reference-count updates — that tripled the cost of a particle step
JIT_INLINE = {**JIT, "inline": "always"}
#: options for kernels that run particles in parallel (``prange``)
JIT_PARALLEL = {**JIT, "parallel": True}
