"""Numba JIT options for every cosmicflow kernel, decided once, here (grep for ``fastmath=``).

Decisions
---------
``fastmath=False``
    The Boris pusher's invariants are the tests' anchors: |u| = c to round-off over 1e5 steps,
    the exact discrete orbit radius to 1e-10. IEEE semantics keep those round-off bounded by
    the textbook estimate, keep ``isfinite`` checks meaningful (``nnan``/``ninf`` would drop
    them) and make results independent of how LLVM chooses to vectorise. Measured again after
    the pusher stopped waiting for memory (interleaved padded field, prefetched look-ups):
    ``fastmath={"contract"}`` (FMA fusion) left the cost per particle-step unchanged within
    the noise (32^3: 55-59 vs 54-58 ns; 128^3: 66-68 vs 64-65 ns, one thread), so nothing
    is gained for them.
``error_model="numpy"``
    Division by zero gives inf/nan instead of a Python exception check on every division in
    the inner loop (inputs are validated in the public wrappers before any kernel runs).
``_nrt=False`` for the pusher's per-particle loops (:data:`JIT_UNCOUNTED`)
    Numba counts references to every array a variable holds. Handing the recorders' named
    tuple of 16 arrays to an inlined helper emits 16 reference increments and decrements per
    step wherever LLVM's pruning cannot pair them (across the recorders' branches): measured
    at 32^3, 280-300 ns per particle-step with them against 79 ns without. The loops that
    push particles allocate nothing (their scratch comes from the caller), so they are
    compiled without the runtime's reference counting; the arrays they touch are owned by
    the calling kernel for the whole call.
``cache=True``
    Snakemake starts one process per particle batch; caching avoids recompiling the pusher in
    each.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: options for serial kernels and the helpers they call
JIT = {"cache": True, "fastmath": False, "error_model": "numpy"}
#: small hot helpers of the pusher (step, interpolation, rotation): inlined at Numba-IR level.
#: LLVM alone declined to inline the step, and each out-of-line call that takes arrays pays
#: reference-count updates — that tripled the cost of a particle step
JIT_INLINE = {**JIT, "inline": "always"}
#: loops that only read and write arrays owned by their caller and allocate nothing: no
#: reference counting (see "Decisions")
JIT_UNCOUNTED = {**JIT, "_nrt": False}
#: options for kernels that run particles in parallel (``prange``)
JIT_PARALLEL = {**JIT, "parallel": True}


@intrinsic
def prefetch(typingctx, arr, index):
    """Hint the CPU to fetch the cache line holding ``arr[index]`` (1-D array) into all cache
    levels, without waiting for it: LLVM ``llvm.prefetch`` (read, high locality, data), an
    x86 ``prefetcht0``. Used by the particle pusher to request the field look-ups of several
    particles before it needs any of them; a prefetch never faults, so no bounds check."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        aryty, _ = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, index), codegen


# bit reinterpretation (no conversion): the half-float decoder of the compact field layout
# and the fast log10 of the recorders' histogram bins


@intrinsic
def f32_from_bits(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32 (no conversion)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if signature.args[0].bitwidth > 32:
            v = builder.trunc(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def f64_bits(typingctx, x):
    """The IEEE bits of a float64 as an int64 (no conversion)."""
    if not isinstance(x, types.Float) or x.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(x), codegen
