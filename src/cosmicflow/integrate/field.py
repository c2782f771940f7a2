r"""The field the pusher reads: padded layout, cache file, look-ups, the one trilinear blend.

Layout (:func:`padded_field`)
-----------------------------
B is cell-centred: cell (i, j, k) holds the value at origin + (i+½, j+½, k+½) Δx. The pusher
reads per cell the float32 (B_x, B_y, B_z [µG], T [K]) side by side, with one periodic ghost
layer, so the 8 corners of a look-up are 4–5 cache lines instead of the 13–16 of four separate
arrays and their indices never wrap. ``layout="compact"`` stores the same four values in 8 B
per cell (:func:`compact_field`): B as IEEE half floats scaled by a per-snapshot power of two,
and T as a half float whose two lowest mantissa bits are replaced by the cell's phase index
(so the phase is exact, by :mod:`cosmicflow.phase_rule`, and T keeps 9 mantissa bits).

The kernels see a :class:`Field` (a named tuple: flat data, padded dimensions, scales); which
layout it is, is decided by its dtype when Numba compiles (:func:`_load`), so the float32
layout pays nothing for the other.

Look-ups
--------
One trilinear formula (:func:`trilinear`) serves every look-up: on the padded field
(:func:`blend`), and on plain 3-D arrays (:func:`interpolate`, with explicit periodic wrap),
so all interpolations agree bit for bit. :func:`grad_bmag` is the analytic gradient of the
trilinear interpolant of |B| at the 8 corners (no extra grid in memory).

The cache file (:func:`write_field_cache`) holds that layout once per snapshot; every
integrate job memory-maps it (:func:`read_field_cache`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from cosmicflow._numba import JIT, JIT_INLINE, JIT_PARALLEL, f32_from_bits, prefetch
from cosmicflow.io import InputError, atomic_output, provenance_attrs
from cosmicflow.phase_rule import DEFAULT_THRESHOLDS_K, N_PHASES, phase_index, phase_of
from cosmicflow.snapshot import _slabs, read_snapshot

#: values per cell of the padded field grid: bx, by, bz [µG], T [K]
GRID_VALUES = 4
#: field-cache layouts: bytes per cell and the dtype of one stored value
LAYOUTS = {"full": (16, np.dtype("<f4")), "compact": (8, np.dtype("<u2"))}
#: mask of the phase bits in the 4th value of a compact cell (the T slot)
PHASE_BITS = 3
_FIELD_NAMES = ("bx", "by", "bz", "temperature")


class Field(NamedTuple):
    """The pusher's view of a padded field (kernels take it whole).

    data : flat padded grid, float32 (layout full) or uint16 half-float bits (compact)
    gdim : int64 (nx+2, ny+2, nz+2), the padded dimensions
    scale_b : µG per stored B unit (1 for full; a power of two for compact)
    scale_t : K per stored T unit (same)
    """

    data: np.ndarray
    gdim: np.ndarray
    scale_b: float
    scale_t: float


# --------------------------------------------------------------------------------------------
# kernels: the one blend, the padded look-ups, the gradient of |B|
# --------------------------------------------------------------------------------------------


@njit(**JIT_INLINE)
def trilinear(c000, c001, c010, c011, c100, c101, c110, c111, wx, wy, wz):
    """Trilinear blend of 8 corner values (corner ijk, k fastest) with upper-corner weights w.

    .. math:: f = \\sum_{ijk} f_{ijk}\\, w_x^{i}(1-w_x)^{1-i}\\, w_y^{j}(1-w_y)^{1-j}\\,
              w_z^{k}(1-w_z)^{1-k},

    evaluated as z, then y, then x blends (the order fixes the round-off; every look-up in
    cosmicflow uses this function).
    """
    c00 = c000 * (1.0 - wz) + c001 * wz
    c01 = c010 * (1.0 - wz) + c011 * wz
    c10 = c100 * (1.0 - wz) + c101 * wz
    c11 = c110 * (1.0 - wz) + c111 * wz
    return (c00 * (1.0 - wy) + c01 * wy) * (1.0 - wx) + (c10 * (1.0 - wy) + c11 * wy) * wx


@njit(**JIT_INLINE)
def grad_bmag(m, wx, wy, wz, inv_dx, inv_dy, inv_dz):
    r"""|∇|B|| [µG pc^-1] of the trilinear interpolant of corner values m [µG].

    m holds |B| at the 8 surrounding cell centres in the order (i, j, k) = 000, 001, 010,
    011, 100, 101, 110, 111 (k fastest); w are the upper-corner weights; inv_d = 1/Δx [pc^-1].
    """
    ux, uy, uz = 1.0 - wx, 1.0 - wy, 1.0 - wz
    gx = (uy * uz * (m[4] - m[0]) + uy * wz * (m[5] - m[1])
          + wy * uz * (m[6] - m[2]) + wy * wz * (m[7] - m[3])) * inv_dx
    gy = (ux * uz * (m[2] - m[0]) + ux * wz * (m[3] - m[1])
          + wx * uz * (m[6] - m[4]) + wx * wz * (m[7] - m[5])) * inv_dy
    gz = (ux * uy * (m[1] - m[0]) + ux * wy * (m[3] - m[2])
          + wx * uy * (m[5] - m[4]) + wx * wy * (m[7] - m[6])) * inv_dz
    return math.sqrt(gx * gx + gy * gy + gz * gz)


@njit(**JIT_INLINE)
def half_to_float32(h):
    """IEEE binary16 bits h (finite values) as float32 times 2^-112, exactly.

    The half's exponent and mantissa shifted into a float32 (bits << 13) give the value
    scaled by 2^-112 for normal and subnormal halves alike; the 2^112 goes into the field's
    scale, so decoding is a shift, an or and one multiply.
    """
    x = np.uint32(h)
    return f32_from_bits(((x & np.uint32(0x7FFF)) << np.uint32(13))
                          | ((x & np.uint32(0x8000)) << np.uint32(16)))


def _load(data, o, scale):
    """Stored value at flat offset o as a number (full: the float32 itself; compact: decoded).

    Offsets are indexed as unsigned: a signed index makes Numba emit the wrap-around of
    negative indices (4 instructions per load, 24 loads a step), and look-up offsets are never
    negative by construction (:func:`grid_corner`)."""


@overload(_load, inline="always")
def _load_impl(data, o, scale):
    if data.dtype == types.float32:
        return lambda data, o, scale: data[np.uint64(o)]
    if data.dtype == types.uint16:
        return lambda data, o, scale: half_to_float32(data[np.uint64(o)]) * scale
    return None


def _phase_at(data, o, t1, t2):
    """Phase index of the cell whose T sits at flat offset o."""


@overload(_phase_at, inline="always")
def _phase_at_impl(data, o, t1, t2):
    if data.dtype == types.float32:
        return lambda data, o, t1, t2: phase_of(np.float64(data[np.uint64(o)]), t1, t2)
    if data.dtype == types.uint16:
        return lambda data, o, t1, t2: np.int64(data[np.uint64(o)] & PHASE_BITS)
    return None


@njit(**JIT_INLINE)
def _scale_of(field, v):
    return field.scale_b if v < 3 else field.scale_t


def _load_t(data, o, scale):
    """T [K] at flat offset o."""


@overload(_load_t, inline="always")
def _load_t_impl(data, o, scale):
    if data.dtype == types.float32:
        return lambda data, o, scale: data[np.uint64(o)]
    if data.dtype == types.uint16:
        return lambda data, o, scale: half_to_float32(data[np.uint64(o)] & np.uint16(0xFFFC)) * scale
    return None


@njit(**JIT_INLINE)
def grid_corner(c):
    """Lower corner index q in the padded grid (as an exact float64) and upper-corner weight w
    for a wrapped cell coordinate c ∈ [0, n].

    Padded index q = i + 1 for the unpadded cell-centre index i = floor(c − ½) ∈ [−1, n−1], so
    q ∈ [0, n] and q + 1 ≤ n + 1 always lie inside the (n + 2)-long padded axis: no wrap, no
    modulo (truncating g + 1 is the floor for g ≥ −1 without calling floor). The truncation is
    to 32 bits and q is kept as a float so that loops over particles vectorise (AVX2 has no
    packed float-to-int64 conversion).
    """
    g = c - 0.5
    q = np.float64(np.int32(g + 1.0))
    return q, g - (q - 1.0)


@njit(**JIT_INLINE)
def lookup_f(g1, g2, cx, cy, cz):
    """The look-up at wrapped cell coordinates (cx, cy, cz) in float64 arithmetic (vectorisable
    over particles): (flat offset of the lower corner, wx, wy, wz, flat offset of the cell
    holding the point), the offsets exact float64 integers (< 2^53); g1, g2 = gdim[1], gdim[2]
    as float. Cell int(c) is padded index int(c) + 1 ∈ [1, n + 1], and index n + 1 holds cell
    0, so a coordinate of exactly n needs no wrap either; that cell is one of the 8 corners."""
    qx, wx = grid_corner(cx)
    qy, wy = grid_corner(cy)
    qz, wz = grid_corner(cz)
    o = ((qx * g1 + qy) * g2 + qz) * GRID_VALUES
    ix = np.float64(np.int32(cx)) + 1.0
    iy = np.float64(np.int32(cy)) + 1.0
    iz = np.float64(np.int32(cz)) + 1.0
    return o, wx, wy, wz, ((ix * g1 + iy) * g2 + iz) * GRID_VALUES


@njit(**JIT_INLINE)
def lookup(gdim, cx, cy, cz):
    """Flat offset of the lower corner (value 0) around wrapped cell coordinates (cx, cy, cz)
    and the three upper-corner weights (:func:`lookup_f`, the offset as an integer)."""
    o, wx, wy, wz, _ = lookup_f(np.float64(gdim[1]), np.float64(gdim[2]), cx, cy, cz)
    return np.int64(o), wx, wy, wz


@njit(**JIT_INLINE)
def cell_offset(gdim, cx, cy, cz):
    """Flat offset of the cell holding wrapped cell coordinates (cx, cy, cz) in the padded grid
    (:func:`lookup_f`, as an integer)."""
    return np.int64(lookup_f(np.float64(gdim[1]), np.float64(gdim[2]), cx, cy, cz)[4])


@njit(**JIT_INLINE)
def strides(gdim):
    """Flat strides (k, j, i) of one padded cell."""
    sj = gdim[2] * GRID_VALUES
    return GRID_VALUES, sj, gdim[1] * sj


@njit(**JIT_INLINE)
def blend(field, o, wx, wy, wz, v):
    """Value v (0-2: B components [µG], 3: T [K]) blended from the 8 corners at lower-corner
    offset o (:func:`lookup`)."""
    d = field.data
    sk, sj, si = strides(field.gdim)
    sc = _scale_of(field, v)
    o = o + v
    if v == 3:
        return trilinear(_load_t(d, o, sc), _load_t(d, o + sk, sc), _load_t(d, o + sj, sc),
                         _load_t(d, o + sj + sk, sc), _load_t(d, o + si, sc),
                         _load_t(d, o + si + sk, sc), _load_t(d, o + si + sj, sc),
                         _load_t(d, o + si + sj + sk, sc), wx, wy, wz)
    return trilinear(_load(d, o, sc), _load(d, o + sk, sc), _load(d, o + sj, sc),
                     _load(d, o + sj + sk, sc), _load(d, o + si, sc), _load(d, o + si + sk, sc),
                     _load(d, o + si + sj, sc), _load(d, o + si + sj + sk, sc), wx, wy, wz)


def _cell_vector(builder, ary, off, compact, scales):
    """LLVM IR: the 4 stored values of the cell at flat offset ``off`` as <4 x double> (B [µG],
    T [K]): one vector load, decoded as :func:`_load` / :func:`_load_t` decode each value
    (compact: the half-float bit shuffle of :func:`half_to_float32`, T's phase bits masked,
    times ``scales`` = <sb, sb, sb, st>), widened to float64."""
    f64x4 = ir.VectorType(ir.DoubleType(), 4)
    ptr = builder.gep(ary.data, [off])
    if not compact:
        vty = ir.VectorType(ir.FloatType(), 4)
        return builder.fpext(builder.load(builder.bitcast(ptr, vty.as_pointer()), align=4), f64x4)
    i32x4 = ir.VectorType(ir.IntType(32), 4)
    h = builder.load(builder.bitcast(ptr, ir.VectorType(ir.IntType(16), 4).as_pointer()), align=2)
    x = builder.zext(h, i32x4)
    mag = builder.shl(builder.and_(x, ir.Constant(i32x4, [0x7FFF, 0x7FFF, 0x7FFF, 0x7FFC])),
                      ir.Constant(i32x4, [13] * 4))
    sgn = builder.shl(builder.and_(x, ir.Constant(i32x4, [0x8000] * 4)), ir.Constant(i32x4, [16] * 4))
    f = builder.bitcast(builder.or_(mag, sgn), ir.VectorType(ir.FloatType(), 4))
    return builder.fmul(builder.fpext(f, f64x4), scales)


def _corner_vectors(context, builder, signature, args):
    """LLVM IR shared by the look-up intrinsics: the 8 corner cells (order of
    :func:`trilinear`) as <4 x double> for arguments (data, o, sk, sj, si, ..., scales)."""
    aryty = signature.args[0]
    compact = aryty.dtype == types.uint16
    ary = context.make_array(aryty)(context, builder, args[0])
    i64 = ir.IntType(64)
    o, sk, sj, si = (context.cast(builder, a, t, types.int64)
                     for a, t in zip(args[1:5], signature.args[1:5]))
    scv = None
    if compact:
        sc_ty = signature.args[-1]
        sb, st = (context.cast(builder, builder.extract_value(args[-1], k), sc_ty[k],
                               types.float64) for k in range(2))
        scv = ir.Constant(ir.VectorType(ir.DoubleType(), 4), ir.Undefined)
        for k, x in enumerate((sb, sb, sb, st)):
            scv = builder.insert_element(scv, x, i64(k))
    add = builder.add
    offs = (o, add(o, sk), add(o, sj), add(add(o, sj), sk), add(o, si), add(add(o, si), sk),
            add(add(o, si), sj), add(add(add(o, si), sj), sk))
    return [_cell_vector(builder, ary, x, compact, scv) for x in offs]


def _field_data_ok(data):
    return (isinstance(data, types.Array) and data.ndim == 1
            and data.dtype in (types.float32, types.uint16))


def _blend_ir(context, builder, c, w):
    """LLVM IR: the trilinear blend (:func:`trilinear`'s operations in its order, lane by lane,
    no contraction) of the 8 corner vectors c with upper-corner weights w (3 float64)."""
    i64, f64 = ir.IntType(64), ir.DoubleType()
    v4d = ir.VectorType(f64, 4)

    def splat(x):
        v = builder.insert_element(ir.Constant(v4d, ir.Undefined), x, i64(0))
        return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), 4),
                                                        [0, 0, 0, 0]))

    us = [splat(builder.fsub(f64(1.0), x)) for x in w]
    ws = [splat(x) for x in w]

    def lerp(a, b, axis):
        return builder.fadd(builder.fmul(a, us[axis]), builder.fmul(b, ws[axis]))

    c00, c01, c10, c11 = (lerp(c[2 * k], c[2 * k + 1], 2) for k in range(4))
    r = lerp(lerp(c00, c01, 1), lerp(c10, c11, 1), 0)
    return [builder.extract_element(r, i64(k)) for k in range(4)]


def _bmag_ir(builder, c):
    """LLVM IR: |B| = sqrt((bx² + by²) + bz²) of each of the 8 corner vectors c, 4 corners per
    vector (transposed, so 2 vector square roots instead of 8 scalar ones)."""
    i64 = ir.IntType(64)
    v4d = ir.VectorType(ir.DoubleType(), 4)
    sqrt = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v4d, [v4d]),
                                          "llvm.sqrt.v4f64")
    sq = [builder.fmul(v, v) for v in c]

    def mask(*k):
        return ir.Constant(ir.VectorType(ir.IntType(32), 4), list(k))

    out = []
    for g in (0, 4):  # corners g..g+3: transpose their (x², y², z², T²) rows
        a01 = builder.shuffle_vector(sq[g], sq[g + 1], mask(0, 4, 1, 5))  # x0 x1 y0 y1
        b01 = builder.shuffle_vector(sq[g], sq[g + 1], mask(2, 6, 3, 7))  # z0 z1 . .
        a23 = builder.shuffle_vector(sq[g + 2], sq[g + 3], mask(0, 4, 1, 5))
        b23 = builder.shuffle_vector(sq[g + 2], sq[g + 3], mask(2, 6, 3, 7))
        x2 = builder.shuffle_vector(a01, a23, mask(0, 1, 4, 5))
        y2 = builder.shuffle_vector(a01, a23, mask(2, 3, 6, 7))
        z2 = builder.shuffle_vector(b01, b23, mask(0, 1, 4, 5))
        m = builder.call(sqrt, [builder.fadd(builder.fadd(x2, y2), z2)])
        out += [builder.extract_element(m, i64(k)) for k in range(4)]
    return out


def _weights(context, builder, signature, args, first):
    return [context.cast(builder, a, t, types.float64)
            for a, t in zip(args[first:first + 3], signature.args[first:first + 3])]


@intrinsic
def _blend4(typingctx, data, o, sk, sj, si, wx, wy, wz, scales):
    """(Bx, By, Bz [µG], T [K]) blended from the 8 corner cells at flat offset o, as 4-wide
    vector arithmetic: a cell's 4 adjacent values are one vector (:func:`_cell_vector`),
    blended as :func:`trilinear` does, lane by lane: each lane is the scalar blend of that
    value bit for bit (IEEE ops, no contraction), computed once for all four. strides
    (sk, sj, si) as :func:`strides`; scales = (scale_b, scale_t)."""
    if not _field_data_ok(data):
        return None
    sig = types.UniTuple(types.float64, 4)(data, o, sk, sj, si, wx, wy, wz, scales)

    def codegen(context, builder, signature, args):
        c = _corner_vectors(context, builder, signature, args)
        return context.make_tuple(builder, signature.return_type,
                                  _blend_ir(context, builder, c,
                                            _weights(context, builder, signature, args, 5)))

    return sig, codegen


@intrinsic
def _blend4_bmag(typingctx, data, o, sk, sj, si, wx, wy, wz, scales):
    """:func:`_blend4` and :func:`_corner_bmag` from one load of the 8 corner cells: (Bx, By,
    Bz, T, |B| at the 8 corners), each bit for bit what the two give alone."""
    if not _field_data_ok(data):
        return None
    sig = types.UniTuple(types.float64, 12)(data, o, sk, sj, si, wx, wy, wz, scales)

    def codegen(context, builder, signature, args):
        c = _corner_vectors(context, builder, signature, args)
        vals = _blend_ir(context, builder, c, _weights(context, builder, signature, args, 5))
        return context.make_tuple(builder, signature.return_type, vals + _bmag_ir(builder, c))

    return sig, codegen


@intrinsic
def _corner_bmag(typingctx, data, o, sk, sj, si, scales):
    """|B| [µG] at the 8 corner cells at flat offset o (order of :func:`trilinear`), 4 corners
    per vector: each lane is sqrt((bx² + by²) + bz²) of one corner, the scalar expression bit
    for bit, with 2 vector square roots instead of 8 scalar ones."""
    if not _field_data_ok(data):
        return None
    sig = types.UniTuple(types.float64, 8)(data, o, sk, sj, si, scales)

    def codegen(context, builder, signature, args):
        c = _corner_vectors(context, builder, signature, args)
        return context.make_tuple(builder, signature.return_type, _bmag_ir(builder, c))

    return sig, codegen


@njit(**JIT_INLINE)
def blend4(field, o, wx, wy, wz):
    """(Bx, By, Bz [µG], T [K]) at lower-corner offset o: the four :func:`blend` values, bit
    for bit, in one pass of 4-wide vector arithmetic (:func:`_blend4`)."""
    sk, sj, si = strides(field.gdim)
    return _blend4(field.data, o, sk, sj, si, wx, wy, wz, (field.scale_b, field.scale_t))


@njit(**JIT_INLINE)
def blend4_bmag(field, o, wx, wy, wz):
    """:func:`blend4` and :func:`corner_bmag` at lower-corner offset o from one load of the
    corners: (Bx, By, Bz [µG], T [K], and |B| [µG] at the 8 corners)."""
    sk, sj, si = strides(field.gdim)
    return _blend4_bmag(field.data, o, sk, sj, si, wx, wy, wz, (field.scale_b, field.scale_t))


@njit(**JIT_INLINE)
def value_at(field, cx, cy, cz, v):
    """Value v at wrapped cell coordinates (cx, cy, cz) by trilinear interpolation."""
    o, wx, wy, wz = lookup(field.gdim, cx, cy, cz)
    return blend(field, o, wx, wy, wz, v)


@njit(**JIT_INLINE)
def b_at(field, cx, cy, cz):
    """B [µG] at wrapped cell coordinates (cx, cy, cz)."""
    o, wx, wy, wz = lookup(field.gdim, cx, cy, cz)
    return (blend(field, o, wx, wy, wz, 0), blend(field, o, wx, wy, wz, 1),
            blend(field, o, wx, wy, wz, 2))


@njit(**JIT_INLINE)
def phase_at(field, o, t1, t2):
    """Phase index (:func:`cosmicflow.phase_rule.phase_of`) of the cell at flat offset o."""
    return _phase_at(field.data, o + 3, t1, t2)


@njit(**JIT_INLINE)
def corner_bmag(field, o):
    """|B| [µG] at the 8 corner cells of lower-corner offset o, as a tuple in the order of
    :func:`grad_bmag` (4 corners per vector, :func:`_corner_bmag`)."""
    sk, sj, si = strides(field.gdim)
    return _corner_bmag(field.data, o, sk, sj, si, (field.scale_b, field.scale_t))


@njit(**JIT_INLINE)
def prefetch_corners(field, o):
    """Request the cache lines of the 8 corner cells at flat offset o: each (i, j) pair of
    cells is 2 GRID_VALUES stored values, in one line or straddling two."""
    d = field.data
    _, sj, si = strides(field.gdim)
    prefetch(d, o)
    prefetch(d, o + 2 * GRID_VALUES - 1)
    prefetch(d, o + sj)
    prefetch(d, o + sj + 2 * GRID_VALUES - 1)
    prefetch(d, o + si)
    prefetch(d, o + si + 2 * GRID_VALUES - 1)
    prefetch(d, o + si + sj)
    prefetch(d, o + si + sj + 2 * GRID_VALUES - 1)


# --------------------------------------------------------------------------------------------
# plain 3-D arrays: periodic interpolation with explicit wrap (injection, tests)
# --------------------------------------------------------------------------------------------


@njit(**JIT_INLINE)
def _corner(c, n):
    """Lower/upper cell-centre indices and weight of wrapped cell coordinate c ∈ [0, n]."""
    g = c - 0.5
    i0 = int(g + 1.0) - 1  # floor for g >= -1 without calling floor
    w = g - i0
    if i0 < 0:
        i0 += n
    i1 = i0 + 1
    if i1 >= n:
        i1 -= n
    return i0, i1, w


@njit(**JIT_PARALLEL)
def _interpolate_many(f, cells, out):
    nx, ny, nz = f.shape
    for p in prange(cells.shape[0]):
        i0, i1, wx = _corner(cells[p, 0], nx)
        j0, j1, wy = _corner(cells[p, 1], ny)
        k0, k1, wz = _corner(cells[p, 2], nz)
        out[p] = trilinear(f[i0, j0, k0], f[i0, j0, k1], f[i0, j1, k0], f[i0, j1, k1],
                           f[i1, j0, k0], f[i1, j0, k1], f[i1, j1, k0], f[i1, j1, k1],
                           wx, wy, wz)


@njit(**JIT)
def _values_at(field, cells, v, out):
    for p in range(cells.shape[0]):
        out[p] = value_at(field, cells[p, 0], cells[p, 1], cells[p, 2], v)


def cell_coordinates(positions_pc, origin_pc, cell_pc, shape) -> np.ndarray:
    """Wrapped cell coordinates in [0, n): (x − origin)/Δx modulo the box, per axis."""
    c = (np.asarray(positions_pc, dtype=np.float64) - origin_pc) / cell_pc
    return np.mod(c, np.asarray(shape, dtype=np.float64))


def interpolate(field_: np.ndarray, positions_pc: np.ndarray, origin_pc=0.0, cell_pc=1.0):
    """Periodic trilinear interpolation of a cell-centred 3-D field at positions [pc].

    Cell (i, j, k) holds the value at origin + (i+½, j+½, k+½)·Δx; positions anywhere
    (unwrapped) are wrapped into the box. Returns float64 values of shape ``(n,)``.
    """
    f = np.asarray(field_)
    if f.ndim != 3:
        raise ValueError(f"field must be 3-D, got shape {f.shape}")
    pts = np.atleast_2d(np.asarray(positions_pc, dtype=np.float64))
    origin = np.broadcast_to(np.asarray(origin_pc, dtype=np.float64), (3,))
    cell = np.broadcast_to(np.asarray(cell_pc, dtype=np.float64), (3,))
    cells = np.ascontiguousarray(cell_coordinates(pts, origin, cell, f.shape))
    out = np.empty(len(cells))
    _interpolate_many(f, cells, out)
    return out


def field_values(field: Field, cells: np.ndarray, v: int) -> np.ndarray:
    """Value v (0-2 B [µG], 3 T [K]) of a :class:`Field` at wrapped cell coordinates (n, 3)."""
    cells = np.ascontiguousarray(cells, dtype=np.float64).reshape(-1, 3)
    out = np.empty(len(cells))
    _values_at(field, cells, int(v), out)
    return out


def phase_grid(temperature: np.ndarray, thresholds_K: Sequence[float]) -> np.ndarray:
    """int8 phase index per cell by :func:`cosmicflow.phase_rule.phase_index` (0 CNM for
    T < T_1, 1 UNM for T_1 ≤ T ≤ T_2, 2 WNM above), slab by slab so a memory-mapped
    temperature is never loaded whole."""
    out = np.empty(temperature.shape, dtype=np.int8)
    for s in _slabs(temperature.shape[0], int(np.prod(temperature.shape[1:]))):
        out[s] = phase_index(np.asarray(temperature[s]), thresholds_K)
    return out


def phase_volume_fraction(temperature: np.ndarray, thresholds_K: Sequence[float]) -> np.ndarray:
    """Fraction of cells in each phase (rule of :func:`phase_grid`), counted slab by slab."""
    counts = np.zeros(N_PHASES, dtype=np.int64)
    for s in _slabs(temperature.shape[0], int(np.prod(temperature.shape[1:]))):
        counts += np.bincount(phase_index(np.asarray(temperature[s]), thresholds_K).ravel(),
                              minlength=N_PHASES)
    return counts / counts.sum()


# --------------------------------------------------------------------------------------------
# building the layouts
# --------------------------------------------------------------------------------------------


def _check_fields(fields: Mapping[str, np.ndarray]) -> tuple[int, int, int]:
    shape = np.shape(fields["bx"])
    for name in _FIELD_NAMES:
        if np.shape(fields[name]) != shape or len(shape) != 3:
            raise ValueError(f"fields must be 3-D of one shape; {name} is {np.shape(fields[name])}")
    return shape


def _padded_slabs(fields, slab_cells, convert):
    """Yield (lo, hi, slab) with slab = padded planes lo+1..hi of the converted 4 values."""
    n0, n1, n2 = _check_fields(fields)
    wrap1 = np.arange(-1, n1 + 1) % n1
    wrap2 = np.arange(-1, n2 + 1) % n2
    step = max(1, int(slab_cells) // (n1 * n2))
    for lo in range(0, n0, step):
        hi = min(n0, lo + step)
        raw = [np.asarray(fields[name][lo:hi], dtype=np.float32)[:, wrap1][:, :, wrap2]
               for name in _FIELD_NAMES]
        yield lo, hi, convert(raw)


def _fill(fields, out, gshape, dtype, slab_cells, convert):
    if out is None:
        out = np.empty(gshape, dtype=dtype)
    elif out.shape != gshape or out.dtype != dtype:
        raise ValueError(f"out must be {dtype} {gshape}, got {out.dtype} {out.shape}")
    n0 = gshape[0] - 2
    for lo, hi, slab in _padded_slabs(fields, slab_cells, convert):
        out[lo + 1: hi + 1] = slab
    out[0] = out[n0]
    out[n0 + 1] = out[1]
    return out


def padded_field(fields: Mapping[str, np.ndarray], out=None, *, slab_cells: int = 1 << 24
                 ) -> np.ndarray:
    """The pusher's full layout: B and T interleaved per cell, with one periodic ghost layer.

    Returns float32 ``(nx+2, ny+2, nz+2, 4)`` holding (B_x, B_y, B_z [µG], T [K]) with
    ``out[q, r, s] = field[(q−1) mod nx, (r−1) mod ny, (s−1) mod nz]``. A trilinear look-up
    then reads 8 neighbouring 16-byte cells and its corner indices never wrap. Values are
    copied unchanged, so interpolation is bit-identical to :func:`interpolate`.

    ``fields`` may be memory maps: the copy goes slab by slab (``slab_cells`` cells at a time)
    into ``out`` (a new array if omitted, or an HDF5 dataset).
    """
    gshape = tuple(m + 2 for m in _check_fields(fields)) + (GRID_VALUES,)
    return _fill(fields, out, gshape, np.dtype(np.float32), slab_cells,
                 lambda raw: np.stack(raw, axis=-1))


def pow2_scale(max_abs: float, top: float = 32768.0) -> float:
    """The power of two s with max_abs / s ≤ ``top`` (2^15: half floats hold up to 65504),
    1 if max_abs is 0. Scaling by a power of two is exact, so only the half rounding remains."""
    if not (np.isfinite(max_abs) and max_abs >= 0):
        raise ValueError(f"field values must be finite, got max |value| {max_abs}")
    return 1.0 if max_abs == 0 else float(2.0 ** math.ceil(math.log2(max_abs / top)))


def compact_scales(fields: Mapping[str, np.ndarray]):
    """(scale_b [µG], scale_t [K]): per-snapshot powers of two for :func:`compact_field`."""
    n0, n1, n2 = _check_fields(fields)
    mb = mt = 0.0
    for s in _slabs(n0, n1 * n2):
        mb = max(mb, *(float(np.max(np.abs(fields[c][s]))) for c in ("bx", "by", "bz")))
        mt = max(mt, float(np.max(np.abs(fields["temperature"][s]))))
    return pow2_scale(mb), pow2_scale(mt)


def _to_half_bits(x, scale):
    """uint16 IEEE half bits of x / scale (round to nearest even)."""
    return (np.asarray(x, dtype=np.float64) / scale).astype(np.float16).view(np.uint16)


def compact_field(fields: Mapping[str, np.ndarray], thresholds_K: Sequence[float], out=None, *,
                  scales: tuple[float, float] | None = None, slab_cells: int = 1 << 24):
    """The pusher's compact layout: 4 uint16 per cell (8 B instead of 16), padded like
    :func:`padded_field`.

    Values 0-2: B_x, B_y, B_z / scale_b as IEEE half floats (11 significant bits, relative
    rounding ≤ 2^-11); value 3: T / scale_t as a half float with its 2 lowest mantissa bits
    replaced by the cell's phase index (:func:`cosmicflow.phase_rule.phase_index` of the
    float32 T, so the phase is exact; T keeps 9 significant bits, ≤ 2^-9 relative).
    scale_b, scale_t are powers of two (:func:`compact_scales`), so decoding is exact.
    Returns (grid uint16 ``(nx+2, ny+2, nz+2, 4)``, scale_b, scale_t).
    """
    sb, stt = scales if scales is not None else compact_scales(fields)

    def convert(raw):
        b = [_to_half_bits(a, sb) for a in raw[:3]]
        ph = phase_index(raw[3], thresholds_K).astype(np.uint16)
        t = (_to_half_bits(raw[3], stt) & np.uint16(0xFFFC)) | ph
        return np.stack(b + [t], axis=-1)

    gshape = tuple(m + 2 for m in _check_fields(fields)) + (GRID_VALUES,)
    grid = _fill(fields, out, gshape, np.dtype("<u2"), slab_cells, convert)
    return grid, sb, stt


def field_view(grid: np.ndarray, scale_b: float = 1.0, scale_t: float = 1.0) -> Field:
    """The kernels' :class:`Field` of a padded grid (full float32 or compact uint16), no copy.

    For the compact layout the half-float decoding's 2^112 (:func:`half_to_float32`) is
    folded into the scales here.
    """
    if grid.ndim != 4 or grid.shape[3] != GRID_VALUES or not grid.flags.c_contiguous:
        raise ValueError(f"padded field grid must be C-contiguous (nx+2, ny+2, nz+2, "
                         f"{GRID_VALUES}), got {grid.shape}")
    gdim = np.array(grid.shape[:3], dtype=np.int64)
    if grid.dtype == np.float32:
        return Field(grid.reshape(-1), gdim, 1.0, 1.0)
    if grid.dtype == np.uint16:
        return Field(grid.reshape(-1), gdim, float(scale_b) * 2.0**112, float(scale_t) * 2.0**112)
    raise ValueError(f"padded field grid must be float32 (full) or uint16 (compact), got {grid.dtype}")


def build_field(fields: Mapping[str, np.ndarray], layout: str, thresholds_K) -> tuple:
    """(grid, scale_b, scale_t) of ``layout`` built in memory from snapshot fields."""
    if layout == "full":
        return padded_field(fields), 1.0, 1.0
    if layout == "compact":
        return compact_field(fields, thresholds_K)
    raise ValueError(f"integrate.field_layout must be one of {sorted(LAYOUTS)}, got {layout!r}")


# --------------------------------------------------------------------------------------------
# the field cache file
# --------------------------------------------------------------------------------------------


def write_field_cache(snapshot_path: str | Path, output_path: str | Path, *,
                      layout: str = "full",
                      thresholds_K: Sequence[float] = DEFAULT_THRESHOLDS_K) -> Path:
    """Write the pusher's padded, interleaved field of one snapshot in ``layout``.

    Written once per snapshot (rule ``field_cache``) and memory-mapped read-only by every
    integrate job (:func:`read_field_cache`), so all jobs on a node share one copy in the page
    cache. HDF5 with one contiguous, unfiltered dataset ``field`` (nx+2, ny+2, nz+2, 4):
    float32 (B_x, B_y, B_z [µG], T [K]) for ``full``; uint16 half-float bits for ``compact``
    (:func:`compact_field`; attributes ``scale_b_uG``, ``scale_t_K``, ``phase_thresholds_K``).
    Attributes name the snapshot it came from (path, size, ``created_utc``) so a stale cache
    is refused. Filled slab by slab; nothing is left behind if it fails.
    """
    import h5py

    if layout not in LAYOUTS:
        raise ValueError(f"field cache layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    snapshot_path = Path(snapshot_path)
    snap = read_snapshot(snapshot_path, validate=False)
    shape = snap.fields["bx"].shape
    gshape = tuple(m + 2 for m in shape) + (GRID_VALUES,)
    with atomic_output(output_path) as tmp:
        with h5py.File(tmp, "w") as h5:
            dset = h5.create_dataset("field", shape=gshape, dtype=LAYOUTS[layout][1])
            if layout == "full":
                padded_field(snap.fields, out=dset, slab_cells=1 << 22)
                dset.attrs["units"] = "uG, uG, uG, K"
            else:
                _, sb, stt = compact_field(snap.fields, thresholds_K, out=dset, slab_cells=1 << 22)
                dset.attrs["scale_b_uG"] = sb
                dset.attrs["scale_t_K"] = stt
                dset.attrs["phase_thresholds_K"] = np.asarray(thresholds_K, dtype=np.float64)
                dset.attrs["units"] = ("IEEE half bits x scale_b_uG [uG] (bx, by, bz); "
                                       "T: half bits with the 2 low bits = phase index, "
                                       "x scale_t_K [K]")
            dset.attrs["values"] = "bx, by, bz, temperature"
            dset.attrs["field_layout"] = layout
            dset.attrs["layout"] = ("field[q, r, s, v] = snapshot variable v at cell "
                                    "((q-1) mod nx, (r-1) mod ny, (s-1) mod nz): one periodic "
                                    "ghost layer on each side")
            h5.attrs.update(_cache_identity(snapshot_path, snap))
            h5.attrs.update(provenance_attrs("cosmicflow.integrate.write_field_cache"))
    return Path(output_path)


def _cache_identity(snapshot_path: Path, snap) -> dict[str, Any]:
    return {"snapshot": str(snapshot_path), "snapshot_size": snapshot_path.stat().st_size,
            "snapshot_created": str(snap.attrs.get("created_utc", "")),
            "snapshot_shape": np.asarray(snap.fields["bx"].shape, dtype=np.int64)}


def read_field_cache(path: str | Path, snapshot_path: str | Path, *, layout: str | None = None,
                     thresholds_K: Sequence[float] | None = None, with_scales: bool = False):
    """Memory-map (read-only, no copy) a field cache written by :func:`write_field_cache`.

    Returns the padded grid, or ``(grid, scale_b, scale_t)`` with ``with_scales``. Raises
    :class:`InputError` if the file is missing or unreadable, its ``field`` is not a contiguous
    dataset of the snapshot's shape + 2 in the expected ``layout`` (if given), a compact cache
    was made with other ``thresholds_K`` (if given), or it was made from a different snapshot
    file (size or ``created_utc`` differ).
    """
    import h5py

    path, snapshot_path = Path(path), Path(snapshot_path)
    if not path.exists():
        raise InputError(f"{path}: field cache does not exist (rule field_cache makes it)")
    snap = read_snapshot(snapshot_path, validate=False)
    want = _cache_identity(snapshot_path, snap)
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not a readable HDF5 file ({err})") from None
    with h5:
        if "field" not in h5:
            raise InputError(f"{path}: no 'field' dataset; not a field cache")
        dset = h5["field"]
        got_layout = str(dset.attrs.get("field_layout", "full"))
        if layout is not None and got_layout != layout:
            raise InputError(f"{path}: field cache layout is {got_layout!r}, the run asks for "
                             f"{layout!r} (integrate.field_layout); rebuild it")
        dtype = LAYOUTS[got_layout][1]
        gshape = tuple(int(m) + 2 for m in want["snapshot_shape"]) + (GRID_VALUES,)
        if dset.shape != gshape or dset.dtype != dtype:
            raise InputError(f"{path}: field is {dset.dtype} {dset.shape}, expected {dtype} "
                             f"{gshape} for {snapshot_path}")
        for k in ("snapshot_size", "snapshot_created"):
            got = h5.attrs.get(k)
            got = got.decode() if isinstance(got, bytes) else got
            if str(got) != str(want[k]):
                raise InputError(f"{path}: made from a different snapshot ({k} {got!r}, "
                                 f"{snapshot_path} has {want[k]!r}); rebuild it")
        scales = (1.0, 1.0)
        if got_layout == "compact":
            scales = (float(dset.attrs["scale_b_uG"]), float(dset.attrs["scale_t_K"]))
            th = np.asarray(dset.attrs["phase_thresholds_K"], dtype=np.float64)
            if thresholds_K is not None and not np.array_equal(th, np.asarray(thresholds_K, float)):
                raise InputError(f"{path}: compact cache has phases for thresholds {th.tolist()} "
                                 f"K, the run uses {list(thresholds_K)}; rebuild it")
        offset = dset.id.get_offset()
        if dset.chunks is not None or dset.compression is not None or offset is None:
            raise InputError(f"{path}: field is chunked or compressed; cannot memory-map it")
    try:
        grid = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=gshape)
    except ValueError as err:
        raise InputError(f"{path}: truncated field cache ({err})") from None
    return (grid, *scales) if with_scales else grid
