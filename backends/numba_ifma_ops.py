"""Eight-lane uint64 vectors for numba kernels, and the AVX-512 IFMA multiply-adds on them.

This module imports numba and llvmlite at import time; only the ``ifma`` kernel family imports it.

``Lanes`` is a numba type held as one LLVM ``<8 x i64>`` value (one zmm register): lane l belongs to the
l-th of eight independent numbers ("multi-buffer"), so no carry ever crosses lanes. Arrays of lanes are
C-contiguous uint64 arrays whose last axis has 8 entries, (rows, 8): ``load(array, row)`` reads row ``row``.

``madd52lo(acc, x, y)`` = acc + (x[51:0] * y[51:0]) mod 2^52 and ``madd52hi(acc, x, y)`` = acc +
floor(x[51:0] * y[51:0] / 2^52), lane by lane, modulo 2^64: the semantics of ``vpmadd52luq`` /
``vpmadd52huq`` (Intel SDM, "VPMADD52LUQ"). When the compilation target has ``avx512ifma`` they lower to
the LLVM intrinsics ``llvm.x86.avx512.vpmadd52{l,h}.uq.512``, one instruction each. On any other target
they lower to portable IR with the same semantics (a 104-bit product in ``<8 x i128>``), many times slower:
the backend never selects the ``ifma`` family there (``target_has_ifma``); the portable lowering exists so
that the 52-bit algorithms are tested on every machine. numba's on-disk cache keys a kernel on its own
module's source only: after changing the code generation here, touch ``numba_ifma_kernels.py``.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

from dphe_bench.backends.numba_ifma_layout import LANES, LIMB_BITS

_LANE = ir.IntType(64)
_VECTOR = ir.VectorType(_LANE, LANES)
_WIDE = ir.VectorType(ir.IntType(128), LANES)


class Lanes(types.Type):
    """Eight uint64 lanes in one LLVM <8 x i64> vector."""

    def __init__(self) -> None:
        super().__init__(name="Lanes(8 x uint64)")


lanes = Lanes()


@register_model(Lanes)
class _LanesModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def target_features(context) -> str:
    """The LLVM feature string numba compiles for (the host's unless NUMBA_CPU_FEATURES says otherwise)."""
    return context.codegen()._tm_features


def target_has_ifma(context) -> bool:
    """Whether the compilation target of ``context`` (a numba target context) has AVX-512 IFMA."""
    return "+avx512ifma" in target_features(context).split(",")


def _splat(value: int) -> ir.Constant:
    return ir.Constant(_VECTOR, [ir.Constant(_LANE, value)] * LANES)


def _is_lane_array(array) -> bool:
    return isinstance(array, types.Array) and array.dtype == types.uint64 and array.ndim == 2 and array.layout == "C"


def _row_pointer(context, builder, array_type, array, row, row_type):
    data = context.make_array(array_type)(context, builder, array).data
    index = context.cast(builder, row, row_type, types.intp)
    element = builder.gep(data, [builder.mul(index, ir.Constant(index.type, LANES))])
    return builder.bitcast(element, _VECTOR.as_pointer())


@intrinsic
def load(typingctx, array, row):
    """array[row, :] as lanes; array: uint64 (rows, 8) C-contiguous. No bounds check."""
    if not _is_lane_array(array) or not isinstance(row, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        pointer = _row_pointer(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        return builder.load(pointer, align=8)

    return lanes(array, row), codegen


@intrinsic
def store(typingctx, array, row, value):
    """array[row, :] = value; array: uint64 (rows, 8) C-contiguous. No bounds check."""
    if not _is_lane_array(array) or not isinstance(row, types.Integer) or value != lanes:
        return None

    def codegen(context, builder, signature, args):
        pointer = _row_pointer(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        builder.store(args[2], pointer, align=8)
        return context.get_dummy_value()

    return types.none(array, row, value), codegen


@intrinsic
def zero(typingctx):
    """Lanes all 0."""

    def codegen(context, builder, signature, args):
        return _splat(0)

    return lanes(), codegen


@intrinsic
def splat(typingctx, value):
    """Lanes all equal to the uint64 ``value``."""
    if not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        scalar = context.cast(builder, args[0], signature.args[0], types.uint64)
        vector = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(vector, vector, ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))

    return lanes(value), codegen


@intrinsic
def add(typingctx, x, y):
    """x + y lane by lane, modulo 2^64."""
    if x != lanes or y != lanes:
        return None

    def codegen(context, builder, signature, args):
        return builder.add(args[0], args[1])

    return lanes(x, y), codegen


@intrinsic
def low52(typingctx, x):
    """x mod 2^52 lane by lane."""
    if x != lanes:
        return None

    def codegen(context, builder, signature, args):
        return builder.and_(args[0], _splat((1 << LIMB_BITS) - 1))

    return lanes(x), codegen


@intrinsic
def high52(typingctx, x):
    """floor(x / 2^52) lane by lane."""
    if x != lanes:
        return None

    def codegen(context, builder, signature, args):
        return builder.lshr(args[0], _splat(LIMB_BITS))

    return lanes(x), codegen


def _multiply_add(high: bool):
    """The intrinsic for vpmadd52huq (``high``) or vpmadd52luq; see the module docstring."""
    name = f"llvm.x86.avx512.vpmadd52{'h' if high else 'l'}.uq.512"

    def codegen(context, builder, signature, args):
        if target_has_ifma(context):
            function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VECTOR, [_VECTOR] * 3), name)
            return builder.call(function, args)
        accumulator, x, y = args
        mask = _splat((1 << LIMB_BITS) - 1)
        product = builder.mul(builder.zext(builder.and_(x, mask), _WIDE), builder.zext(builder.and_(y, mask), _WIDE))
        if high:
            part = builder.trunc(builder.lshr(product, ir.Constant(_WIDE, [LIMB_BITS] * LANES)), _VECTOR)
        else:
            part = builder.and_(builder.trunc(product, _VECTOR), mask)
        return builder.add(accumulator, part)

    def typer(typingctx, accumulator, x, y):
        if accumulator != lanes or x != lanes or y != lanes:
            return None
        return lanes(accumulator, x, y), codegen

    typer.__name__ = "madd52hi" if high else "madd52lo"
    return intrinsic(typer)


madd52lo = _multiply_add(high=False)
madd52hi = _multiply_add(high=True)


def ifma_unavailable_reason() -> str | None:
    """None when numba's JIT target (the host CPU unless NUMBA_CPU_NAME/FEATURES say otherwise) has AVX-512
    IFMA, else a sentence saying why not."""
    from llvmlite import binding
    from numba.core import config
    from numba.core.registry import cpu_target

    if target_has_ifma(cpu_target.target_context):
        return None
    if config.CPU_FEATURES is not None:
        return "NUMBA_CPU_FEATURES does not include +avx512ifma"
    if binding.get_host_cpu_features().get("avx512ifma", False):
        return "the CPU reports avx512ifma but numba's target leaves it out (NUMBA_ENABLE_AVX=0?)"
    return f"this CPU ({binding.get_host_cpu_name()}) does not report avx512ifma"
