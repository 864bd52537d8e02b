"""Row dot products of 32-element-block quantized weights with int8 activations.

Numba compiles scalar Python loops over bytes into poor code here: index arithmetic is int64,
wraparound checks defeat vectorization and each block ends in a horizontal reduction. These
intrinsics emit LLVM vector IR directly (portable IR, no x86 intrinsics), so LLVM picks the
instructions for the host: on AVX-512 VNNI it emits vpmaddwd/vpdpwssd over zmm registers,
on AVX2 vpmaddwd over ymm, on NEON the equivalent. Per block of 32 weights: unpack the
quants into a <32 x i8>, widen, multiply pairwise with the activation block into an
<8 x i32>, convert, and accumulate into an <8 x float> with the block's scale; the single
horizontal reduction happens at the end of the row.

Weights come as the raw GGUF bytes of a row (uint8 array + byte offset); activations as
``xq`` (int8, the row quantized per block of 32), ``xd`` (float32 scale per block) and
``xsum`` (float32, ``xd * sum(xq)`` per block, which carries the weights' offset/min term).
"""

from __future__ import annotations

import llvmlite.binding as _llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_I8, _I16, _I32, _I64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
_F16, _F32 = ir.HalfType(), ir.FloatType()
_FAST = ("fast",)


def _host_has_vnni() -> bool:
    try:
        f = _llvm.get_host_cpu_features()
    except RuntimeError:
        return False
    return bool(f.get("avx512vnni") and f.get("avx512vl")) or bool(f.get("avxvnni"))


# x86 with VNNI: one vpdpbusd multiplies 32 u8 x i8 pairs and sums them by fours into
# 8 x i32. LLVM does not form it from generic IR here (it emits vpmaddwd), so on such hosts
# we call it by name; everywhere else the generic IR below is used.
HOST_HAS_VNNI = _host_has_vnni()


def _vec(t, n):
    return ir.VectorType(t, n)


def _splat_const(t, n, v):
    return ir.Constant(_vec(t, n), [ir.Constant(t, v)] * n)


def _data_ptr(context, builder, aryty, value):
    return context.make_array(aryty)(context, builder, value).data


def _load(builder, base, offset, ty):
    p = builder.bitcast(builder.gep(base, [offset]), ty.as_pointer())
    ld = builder.load(p)
    ld.align = 1  # block fields are not naturally aligned (blocks of 18, 20, 22 bytes)
    return ld


def _splat(builder, v, n):
    undef = ir.Constant(_vec(v.type, n), ir.Undefined)
    t = builder.insert_element(undef, v, ir.Constant(_I32, 0))
    return builder.shuffle_vector(t, undef, ir.Constant(_vec(_I32, n), [0] * n))


def _dot32_vnni(builder, q8, x8):
    """<32 x i8> unsigned quants . <32 x i8> signed activations -> <8 x i32> (vpdpbusd)."""
    v8i32 = _vec(_I32, 8)
    fnty = ir.FunctionType(v8i32, [v8i32, v8i32, v8i32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.avx512.vpdpbusd.256")
    zero = ir.Constant(v8i32, [0] * 8)
    return builder.call(fn, [zero, builder.bitcast(q8, v8i32), builder.bitcast(x8, v8i32)])


def _dot32_generic(builder, q8, x8):
    """<32 x i8> unsigned quants . <32 x i8> signed activations -> <8 x i32> partial sums.

    Written as widen-to-i16, pairwise multiply-add into i32 (LLVM matches vpmaddwd), then
    neighbouring lanes added: no overflow since q <= 255 and |x| <= 127.
    """
    q16 = builder.zext(q8, _vec(_I16, 32))
    x16 = builder.sext(x8, _vec(_I16, 32))
    even = ir.Constant(_vec(_I32, 16), list(range(0, 32, 2)))
    odd = ir.Constant(_vec(_I32, 16), list(range(1, 32, 2)))

    def half(v, idx):
        return builder.sext(builder.shuffle_vector(v, v, idx), _vec(_I32, 16))

    s16 = builder.add(
        builder.mul(half(q16, even), half(x16, even)), builder.mul(half(q16, odd), half(x16, odd))
    )
    # lane k sums elements 4k..4k+3, the same layout as vpdpbusd (Q6_K scales rely on it)
    lo = builder.shuffle_vector(s16, s16, ir.Constant(_vec(_I32, 8), list(range(0, 16, 2))))
    hi = builder.shuffle_vector(s16, s16, ir.Constant(_vec(_I32, 8), list(range(1, 16, 2))))
    return builder.add(lo, hi)


def _nibbles(builder, qs16):
    """16 packed bytes -> <32 x i8>: low nibbles are elements 0..15, high ones 16..31."""
    lo = builder.and_(qs16, _splat_const(_I8, 16, 15))
    hi = builder.lshr(qs16, _splat_const(_I8, 16, 4))
    return builder.shuffle_vector(lo, hi, ir.Constant(_vec(_I32, 32), list(range(32))))


def _fifth_bits(builder, qh32):
    """A little-endian u32 of high bits -> <32 x i8> with bit j at value 16 in lane j."""
    bits = builder.bitcast(qh32, _vec(ir.IntType(1), 32))
    return builder.shl(builder.zext(bits, _vec(_I8, 32)), _splat_const(_I8, 32, 4))


# Block layouts: each reader returns (scale d, offset coefficient c or None, unsigned quants
# q) such that the block's weights are d * q + c.
def _block_q8_0(builder, wp, o):
    d = builder.fpext(_load(builder, wp, o, _F16), _F32)
    q = _load(builder, wp, builder.add(o, ir.Constant(_I64, 2)), _vec(_I8, 32))
    # signed -> unsigned by flipping the top bit (q + 128), compensated by c = -128 d
    q = builder.xor(q, _splat_const(_I8, 32, -128))
    return d, builder.fmul(d, ir.Constant(_F32, -128.0)), q


def _block_q4_0(builder, wp, o):
    d = builder.fpext(_load(builder, wp, o, _F16), _F32)
    q = _nibbles(builder, _load(builder, wp, builder.add(o, ir.Constant(_I64, 2)), _vec(_I8, 16)))
    return d, builder.fmul(d, ir.Constant(_F32, -8.0)), q


def _block_q4_1(builder, wp, o):
    d = builder.fpext(_load(builder, wp, o, _F16), _F32)
    m = builder.fpext(_load(builder, wp, builder.add(o, ir.Constant(_I64, 2)), _F16), _F32)
    q = _nibbles(builder, _load(builder, wp, builder.add(o, ir.Constant(_I64, 4)), _vec(_I8, 16)))
    return d, m, q


def _block_q5_0(builder, wp, o):
    d = builder.fpext(_load(builder, wp, o, _F16), _F32)
    qh = _load(builder, wp, builder.add(o, ir.Constant(_I64, 2)), _I32)
    q = _nibbles(builder, _load(builder, wp, builder.add(o, ir.Constant(_I64, 6)), _vec(_I8, 16)))
    q = builder.or_(q, _fifth_bits(builder, qh))
    return d, builder.fmul(d, ir.Constant(_F32, -16.0)), q


def _block_q5_1(builder, wp, o):
    d = builder.fpext(_load(builder, wp, o, _F16), _F32)
    m = builder.fpext(_load(builder, wp, builder.add(o, ir.Constant(_I64, 2)), _F16), _F32)
    qh = _load(builder, wp, builder.add(o, ir.Constant(_I64, 4)), _I32)
    q = _nibbles(builder, _load(builder, wp, builder.add(o, ir.Constant(_I64, 8)), _vec(_I8, 16)))
    q = builder.or_(q, _fifth_bits(builder, qh))
    return d, m, q


def _make_row_dot(block_bytes, read_block, vnni):
    dot32 = _dot32_vnni if vnni else _dot32_generic

    @intrinsic
    def row_dot(typingctx, w, wofs, xq, xd, xsum, nb):
        sig = types.float32(w, wofs, xq, xd, xsum, nb)

        def codegen(context, builder, signature, args):
            w_, wofs_, xq_, xd_, xsum_, nb_ = args
            wp = _data_ptr(context, builder, signature.args[0], w_)
            xp = _data_ptr(context, builder, signature.args[2], xq_)
            dp = _data_ptr(context, builder, signature.args[3], xd_)
            sp = _data_ptr(context, builder, signature.args[4], xsum_)
            acc = cgutils.alloca_once_value(builder, ir.Constant(_vec(_F32, 8), [0.0] * 8))
            macc = cgutils.alloca_once_value(builder, ir.Constant(_F32, 0.0))
            with cgutils.for_range(builder, nb_) as loop:
                b = loop.index
                o = builder.add(wofs_, builder.mul(b, ir.Constant(_I64, block_bytes)))
                d, c, q = read_block(builder, wp, o)
                x = _load(builder, xp, builder.mul(b, ir.Constant(_I64, 32)), _vec(_I8, 32))
                s = builder.sitofp(dot32(builder, q, x), _vec(_F32, 8))
                scale = builder.fmul(d, builder.load(builder.gep(dp, [b])), flags=_FAST)
                prod = builder.fmul(s, _splat(builder, scale, 8), flags=_FAST)
                builder.store(builder.fadd(builder.load(acc), prod, flags=_FAST), acc)
                if c is not None:
                    cx = builder.fmul(c, builder.load(builder.gep(sp, [b])), flags=_FAST)
                    builder.store(builder.fadd(builder.load(macc), cx, flags=_FAST), macc)
            fnty = ir.FunctionType(_F32, [_F32, _vec(_F32, 8)])
            red = cgutils.get_or_insert_function(
                builder.module, fnty, "llvm.vector.reduce.fadd.v8f32"
            )
            total = builder.call(red, [ir.Constant(_F32, 0.0), builder.load(acc)], fastmath=_FAST)
            return builder.fadd(total, builder.load(macc), flags=_FAST)

        return sig, codegen

    return row_dot


_LAYOUTS = {
    "q8_0": (34, _block_q8_0),
    "q4_0": (18, _block_q4_0),
    "q4_1": (20, _block_q4_1),
    "q5_0": (22, _block_q5_0),
    "q5_1": (24, _block_q5_1),
}
# The portable versions (tested everywhere; used where the host lacks VNNI).
GENERIC_ROW_DOTS = {k: _make_row_dot(*v, vnni=False) for k, v in _LAYOUTS.items()}
VNNI_ROW_DOTS = {k: _make_row_dot(*v, vnni=True) for k, v in _LAYOUTS.items()}
_ROW_DOTS = VNNI_ROW_DOTS if HOST_HAS_VNNI else GENERIC_ROW_DOTS
dot_q8_0_row = _ROW_DOTS["q8_0"]
dot_q4_0_row = _ROW_DOTS["q4_0"]
dot_q4_1_row = _ROW_DOTS["q4_1"]
dot_q5_0_row = _ROW_DOTS["q5_0"]
dot_q5_1_row = _ROW_DOTS["q5_1"]


def _make_unpacked_dot(vnni):
    dot32 = _dot32_vnni if vnni else _dot32_generic

    @intrinsic
    def unpacked_dot(typingctx, q, wd, wc, xq, xd, xsum, nb):
        """sum_b wd[b] xd[b] (q_b . x_b) + wc[b] xsum[b] for a row already unpacked to
        unsigned bytes ``q`` with per-block scale ``wd`` and offset coefficient ``wc``."""
        sig = types.float32(q, wd, wc, xq, xd, xsum, nb)

        def codegen(context, builder, signature, args):
            ptrs = [_data_ptr(context, builder, signature.args[i], args[i]) for i in range(6)]
            qp, wdp, wcp, xp, dp, sp = ptrs
            acc = cgutils.alloca_once_value(builder, ir.Constant(_vec(_F32, 8), [0.0] * 8))
            macc = cgutils.alloca_once_value(builder, ir.Constant(_F32, 0.0))
            with cgutils.for_range(builder, args[6]) as loop:
                b = loop.index
                o = builder.mul(b, ir.Constant(_I64, 32))
                qv = _load(builder, qp, o, _vec(_I8, 32))
                xv = _load(builder, xp, o, _vec(_I8, 32))
                s = builder.sitofp(dot32(builder, qv, xv), _vec(_F32, 8))
                d = builder.load(builder.gep(wdp, [b]))
                scale = builder.fmul(d, builder.load(builder.gep(dp, [b])), flags=_FAST)
                prod = builder.fmul(s, _splat(builder, scale, 8), flags=_FAST)
                builder.store(builder.fadd(builder.load(acc), prod, flags=_FAST), acc)
                c = builder.load(builder.gep(wcp, [b]))
                cx = builder.fmul(c, builder.load(builder.gep(sp, [b])), flags=_FAST)
                builder.store(builder.fadd(builder.load(macc), cx, flags=_FAST), macc)
            fnty = ir.FunctionType(_F32, [_F32, _vec(_F32, 8)])
            red = cgutils.get_or_insert_function(
                builder.module, fnty, "llvm.vector.reduce.fadd.v8f32"
            )
            total = builder.call(red, [ir.Constant(_F32, 0.0), builder.load(acc)], fastmath=_FAST)
            return builder.fadd(total, builder.load(macc), flags=_FAST)

        return sig, codegen

    return unpacked_dot


def _make_unpacked16_dot(vnni, offset):
    dot32 = _dot32_vnni if vnni else _dot32_generic

    @intrinsic
    def unpacked16_dot(typingctx, q, wd16, xq, xd, nb):
        """sum over 16-element groups g of wd16[g] xd[b] ((q_g - offset) . x_g), for rows whose
        scale changes every 16 elements (Q6_K). Lanes 0-3 of a block's <8 x i32> partial sums
        cover its first 16 elements, lanes 4-7 the next 16."""
        sig = types.float32(q, wd16, xq, xd, nb)

        def codegen(context, builder, signature, args):
            qp, wp, xp, dp = (
                _data_ptr(context, builder, signature.args[i], args[i]) for i in range(4)
            )
            acc = cgutils.alloca_once_value(builder, ir.Constant(_vec(_F32, 8), [0.0] * 8))
            ones = _splat_const(_I8, 32, 1)
            off = _splat_const(_I32, 8, offset)
            undef = ir.Constant(_vec(_F32, 8), ir.Undefined)
            with cgutils.for_range(builder, args[4]) as loop:
                b = loop.index
                o = builder.mul(b, ir.Constant(_I64, 32))
                xv = _load(builder, xp, o, _vec(_I8, 32))
                s = dot32(builder, _load(builder, qp, o, _vec(_I8, 32)), xv)
                sx = dot32(builder, ones, xv)
                t = builder.sitofp(builder.sub(s, builder.mul(sx, off)), _vec(_F32, 8))
                xd_b = builder.load(builder.gep(dp, [b]))
                g = builder.mul(b, ir.Constant(_I64, 2))
                s0 = builder.fmul(builder.load(builder.gep(wp, [g])), xd_b, flags=_FAST)
                g1 = builder.add(g, ir.Constant(_I64, 1))
                s1 = builder.fmul(builder.load(builder.gep(wp, [g1])), xd_b, flags=_FAST)
                pair = builder.insert_element(undef, s0, ir.Constant(_I32, 0))
                pair = builder.insert_element(pair, s1, ir.Constant(_I32, 1))
                scales = builder.shuffle_vector(
                    pair, undef, ir.Constant(_vec(_I32, 8), [0, 0, 0, 0, 1, 1, 1, 1])
                )
                prod = builder.fmul(t, scales, flags=_FAST)
                builder.store(builder.fadd(builder.load(acc), prod, flags=_FAST), acc)
            fnty = ir.FunctionType(_F32, [_F32, _vec(_F32, 8)])
            red = cgutils.get_or_insert_function(
                builder.module, fnty, "llvm.vector.reduce.fadd.v8f32"
            )
            return builder.call(red, [ir.Constant(_F32, 0.0), builder.load(acc)], fastmath=_FAST)

        return sig, codegen

    return unpacked16_dot


GENERIC_UNPACKED16_DOT = _make_unpacked16_dot(vnni=False, offset=32)
VNNI_UNPACKED16_DOT = _make_unpacked16_dot(vnni=True, offset=32)
dot_q6_k_unpacked_row = VNNI_UNPACKED16_DOT if HOST_HAS_VNNI else GENERIC_UNPACKED16_DOT

GENERIC_UNPACKED_DOT = _make_unpacked_dot(vnni=False)
VNNI_UNPACKED_DOT = _make_unpacked_dot(vnni=True)
dot_unpacked_row = VNNI_UNPACKED_DOT if HOST_HAS_VNNI else GENERIC_UNPACKED_DOT


@intrinsic
def half_to_float(typingctx, h):
    """IEEE half (given as uint16 bits) -> float32; LLVM emits vcvtph2ps where available."""
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], _F16), _F32)

    return sig, codegen


@intrinsic
def bits_to_float(typingctx, u):
    """Reinterpret uint32 bits as float32 (used for bfloat16: bits << 16)."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _F32)

    return sig, codegen
