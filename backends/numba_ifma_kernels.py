"""The ``ifma`` kernel family of the ``numba`` backend: Montgomery arithmetic on 52-bit limbs, 8 numbers at once.

This module imports numba at import time; only ``NumbaBackend`` imports it, lazily, and only when it runs
the ``ifma`` family.

Representation: groups of 8 residues, uint64 (k + 1, 8), limb j of lane l in row j (``numba_ifma_layout``);
each lane is an independent number ("multi-buffer", as in Intel's ipp-crypto ``mbx`` and IPCL), so every
vector instruction works on 8 numbers and no carry crosses lanes. The products are ``vpmadd52luq`` /
``vpmadd52huq`` (``numba_ifma_ops``): 52 x 52-bit multiplies whose low or high 52 bits are added to a 64-bit
accumulator.

Montgomery multiplication (``mont_mul``) is word-by-word (operand scanning) with lazy carries: for each limb
b_i, the low halves of a_j b_i and m_j u land in accumulator j, the high halves in j + 1, and the whole
accumulator moves down one limb, so each step adds at most 4 terms below 2^52 to an accumulator, plus a carry
below 4 k + 2 into the lowest one: after k steps an accumulator is below (4 k + 2) 2^52 + 2^52 < 2^64 for
k <= ``MAX_LIMBS`` = 1000. Carries are propagated once, at the end. u = (t_0 n0) mod 2^52 is one madd52lo,
since the instruction reads only the low 52 bits of t_0. Inputs below 2m give outputs below 2m because
R = 2^(52 k) > 4m ("almost Montgomery", as in the narrow family): no conditional subtraction inside an
exponentiation, one at the end. Squaring (``mont_sqr``) computes the off-diagonal products once, doubles
them and adds the squares (Menezes et al., Handbook of Applied Cryptography, 14.16), then reduces: 3 k^2
multiply-adds instead of 4 k^2, two rows per pass so that every accumulator load and store still carries
four multiply-adds.

Every ``*_rows`` function handles a contiguous range of groups with its own scratch; the public kernels come
in ``_serial`` and ``_parallel`` (``prange`` over chunks of groups) variants, as in ``numba_kernels``. Rows
past the batch's end are zero lanes, computed and never written out.
"""

import numpy as np
from numba import njit, prange, types, uint32, uint64

from dphe_bench.backends.numba_ifma_layout import LANES, LIMB_BITS
from dphe_bench.backends.numba_ifma_ops import add, high52, load, low52, madd52hi, madd52lo, splat, store, zero

_W = uint64(LIMB_BITS)
_MASK = uint64((1 << LIMB_BITS) - 1)
_WORD_MASK = uint64(0xFFFFFFFF)


@njit(cache=True)
def mont_mul(a, b, m, n0, k, t, out):
    """out = a b / R mod m lane by lane (below 2m when a, b < 2m); the hot loop of the family.

    a, b, m: uint64 (>= k + 1, 8), normalised 52-bit limbs, row k zero; n0 = -m^-1 mod 2^52 (uint64);
    t: uint64 scratch (>= k + 1, 8); out: uint64 (>= k, 8), may be a or b (written last).
    """
    for j in range(k + 1):
        store(t, j, zero())
    n0s = splat(n0)
    for i in range(k):
        bi = load(b, i)
        a_low = load(a, 0)
        m_low = load(m, 0)
        t0 = madd52lo(load(t, 0), a_low, bi)
        u = madd52lo(zero(), t0, n0s)
        carry = high52(madd52lo(t0, m_low, u))
        # New t_j = t_{j+1} + lo(a_{j+1} b_i) + lo(m_{j+1} u) + hi(a_j b_i) + hi(m_j u): the shift by one limb.
        for j in range(k):
            a_next = load(a, j + 1)
            m_next = load(m, j + 1)
            s = madd52hi(load(t, j + 1), a_low, bi)
            s = madd52hi(s, m_low, u)
            s = madd52lo(s, a_next, bi)
            s = madd52lo(s, m_next, u)
            store(t, j, s)
            a_low = a_next
            m_low = m_next
        store(t, 0, add(load(t, 0), carry))
    _normalise(t, 0, k, out)


@njit(cache=True)
def mont_sqr(a, m, n0, k, t, out):
    """out = a^2 / R mod m lane by lane (below 2m when a < 2m): 3 k^2 multiply-adds instead of 4 k^2.

    The off-diagonal products once, doubled, plus the squares; then Montgomery reduction of the 2k-limb
    square. Both phases take two rows per pass, so each accumulator load and store carries four
    multiply-adds, as in ``mont_mul``. a, m: uint64 (>= k + 1, 8), row k zero; t: uint64 scratch
    (>= 2 k + 2, 8); out: uint64 (>= k, 8), may be a (written last). Accumulators stay below (4 k + 3) 2^52.
    """
    for p in range(2 * k + 2):
        store(t, p, zero())
    # 1. sum_{i<j} a_i a_j 2^(52(i+j)), rows x = a_i and y = a_(i+1): at position i + j, lo(x a_j) + hi(x a_(j-1))
    #    + lo(y a_(j-1)) + hi(y a_(j-2)), the pair (y, y) excluded. A last odd row has no pair to the right.
    for i in range(0, k - 1, 2):
        x = load(a, i)
        y = load(a, i + 1)
        right = load(a, i + 2)
        store(t, 2 * i + 1, madd52lo(load(t, 2 * i + 1), x, y))
        store(t, 2 * i + 2, madd52lo(madd52hi(load(t, 2 * i + 2), x, y), x, right))
        previous = right
        before = zero()
        for j in range(i + 3, k + 1):
            current = load(a, j)
            s = madd52lo(load(t, i + j), x, current)
            s = madd52hi(s, x, previous)
            s = madd52lo(s, y, previous)
            s = madd52hi(s, y, before)
            store(t, i + j, s)
            before = previous
            previous = current
        # Position i + k + 1: a_(k+1) is past the array, and a_k = 0; only hi(y a_(k-1)) may remain.
        store(t, i + k + 1, madd52hi(madd52hi(load(t, i + k + 1), x, previous), y, before))
    # 2. Double, and add the squares a_i^2 at positions 2i (low half) and 2i + 1 (high half).
    for i in range(k):
        ai = load(a, i)
        low = load(t, 2 * i)
        high = load(t, 2 * i + 1)
        store(t, 2 * i, madd52lo(add(low, low), ai, ai))
        store(t, 2 * i + 1, madd52hi(add(high, high), ai, ai))
    # 3. Montgomery reduction, rows i and i + 1 per pass; u_(i+1) from position i + 1 after row i's terms.
    n0s = splat(n0)
    m0 = load(m, 0)
    m1 = load(m, 1)
    for i in range(0, k - 1, 2):
        ti = load(t, i)
        u0 = madd52lo(zero(), ti, n0s)
        carry = high52(madd52lo(ti, m0, u0))
        ti = madd52hi(madd52lo(add(load(t, i + 1), carry), m1, u0), m0, u0)
        u1 = madd52lo(zero(), ti, n0s)
        store(t, i + 2, add(load(t, i + 2), high52(madd52lo(ti, m0, u1))))
        previous = m1
        before = m0
        for j in range(2, k + 1):
            current = load(m, j)
            s = madd52lo(load(t, i + j), current, u0)
            s = madd52hi(s, previous, u0)
            s = madd52lo(s, previous, u1)
            s = madd52hi(s, before, u1)
            store(t, i + j, s)
            before = previous
            previous = current
        # Position i + k + 1: m_(k+1) is past the array, and m_k = 0.
        s = madd52hi(load(t, i + k + 1), previous, u0)
        store(t, i + k + 1, madd52hi(madd52lo(s, previous, u1), before, u1))
    if k % 2 == 1:
        i = k - 1
        ti = load(t, i)
        u0 = madd52lo(zero(), ti, n0s)
        store(t, i + 1, add(load(t, i + 1), high52(madd52lo(ti, m0, u0))))
        previous = m0
        for j in range(1, k + 1):
            current = load(m, j)
            store(t, i + j, madd52hi(madd52lo(load(t, i + j), current, u0), previous, u0))
            previous = current
    _normalise(t, k, k, out)


def assembly() -> dict[str, str]:
    """The x86 assembly of ``mont_mul`` and ``mont_sqr`` for numba's current target, from fresh compilations.

    numba cannot show the assembly of code loaded from its on-disk cache, so these are compiled again,
    uncached (a few seconds). Keys: the function names.
    """
    lanes = types.Array(types.uint64, 2, "C")
    signatures = {
        "mont_mul": (lanes, lanes, lanes, types.uint64, types.int64, lanes, lanes),
        "mont_sqr": (lanes, lanes, types.uint64, types.int64, lanes, lanes),
    }
    listings = {}
    for name, signature in signatures.items():
        fresh = njit(globals()[name].py_func)
        fresh.compile(signature)
        listings[name] = fresh.inspect_asm(fresh.signatures[0])
    return listings


@njit(cache=True)
def _normalise(t, start, k, out):
    """Propagate the lazy carries of rows start..start+k-1 of t into k 52-bit limbs of out (values below R)."""
    carry = zero()
    for j in range(k):
        s = add(load(t, start + j), carry)
        store(out, j, low52(s))
        carry = high52(s)


@njit(cache=True)
def _unpack(words, limbs, count):
    """The first ``count`` 52-bit limbs of the little-endian uint32 ``words`` into limbs[:count] (1-D, any
    stride: a lane of a group is ``group[:, lane]``)."""
    width = words.size
    for i in range(count):
        bit = i * LIMB_BITS
        w = bit >> 5
        offset = uint64(bit & 31)
        pair = uint64(0)
        if w < width:
            pair = uint64(words[w])
        if w + 1 < width:
            pair |= uint64(words[w + 1]) << uint64(32)
        value = pair >> offset
        if offset > 64 - LIMB_BITS and w + 2 < width:  # the limb reaches into a third word
            value |= uint64(words[w + 2]) << (uint64(64) - offset)
        limbs[i] = value & _MASK


@njit(cache=True)
def _gather(rows, first, count, limbs, unpacked):
    """Rows first..first+7 of the uint32 batch ``rows`` (count rows in all) into lanes of ``limbs``; lanes past
    the batch's end are zero. ``limbs``: uint64 (>= unpacked, 8), zeroed first."""
    limbs[:] = 0
    for lane in range(LANES):
        r = first + lane
        if r < count:
            _unpack(rows[r], limbs[:, lane], unpacked)


@njit(cache=True)
def _pack(x, k, lane, words):
    """k normalised 52-bit limbs of lane ``lane`` of x into the little-endian uint32 ``words`` (the value fits)."""
    for w in range(words.size):
        bit = 32 * w
        j = bit // LIMB_BITS
        offset = uint64(bit % LIMB_BITS)
        value = uint64(0)
        if j < k:
            value = x[j, lane] >> offset
            if offset > LIMB_BITS - 32 and j + 1 < k:  # the word reaches into the next limb
                value |= x[j + 1, lane] << (_W - offset)
        words[w] = uint32(value & _WORD_MASK)


@njit(cache=True)
def _scatter(x, k, out, first, count):
    """Lanes of x (k normalised limbs, below m) to rows first..first+7 of ``out`` that exist (count rows)."""
    for lane in range(LANES):
        r = first + lane
        if r < count:
            _pack(x, k, lane, out[r])


@njit(cache=True)
def _load(buffer, shift, m, n0, k, out):
    """out = buffer * 2^(-52 shift) mod m, below 2m, in k limbs: ``shift`` Montgomery reduction steps per lane.

    buffer: uint64 (>= max(unpacked, shift + k) + 1, 8), the unpacked input, clobbered; shift as returned by
    ``WideModulus.load_parameters`` makes the result below 2^(bits(m) - 1) + m <= 2m. No division anywhere.
    """
    n0s = splat(n0)
    for i in range(shift):
        u = madd52lo(zero(), load(buffer, i), n0s)
        for j in range(k):
            mj = load(m, j)
            store(buffer, i + j, madd52lo(load(buffer, i + j), mj, u))
            store(buffer, i + j + 1, madd52hi(load(buffer, i + j + 1), mj, u))
        store(buffer, i + 1, add(load(buffer, i + 1), high52(load(buffer, i))))
    _normalise(buffer, shift, k, out)


@njit(cache=True)
def _reduce_final(x, m, k):
    """Each lane of x (k normalised limbs, below 2m) -= m if it is >= m, without a data-dependent branch."""
    for lane in range(LANES):
        borrow = 0
        for j in range(k):
            borrow = (np.int64(x[j, lane]) - np.int64(m[j, lane]) - borrow) >> 63 & 1
        keep = np.int64(0) - np.int64(1 - borrow)  # all ones when x >= m
        borrow = 0
        for j in range(k):
            d = np.int64(x[j, lane]) - (np.int64(m[j, lane]) & keep) - borrow
            borrow = (d >> 63) & 1
            x[j, lane] = uint64(d & np.int64((1 << LIMB_BITS) - 1))


@njit(cache=True)
def _powmod_rows(lo, hi, bases, out, m, n0, k, unpacked, shift, to_mont, one, unit, digits, window_bits):
    """out[r] = bases[r] ^ e mod m for the rows of groups lo..hi-1; e by its base-2^w ``digits``, most
    significant first. Fixed windows, every window multiplies (digit 0 multiplies by one), so the sequence of
    operations does not depend on the exponent. bases: uint32 (count, any width); out: uint32 (count, words)."""
    count = bases.shape[0]
    rows = k + 1
    table = np.zeros((1 << window_bits, rows, LANES), np.uint64)
    acc = np.zeros((rows, LANES), np.uint64)
    t = np.zeros((2 * k + 2, LANES), np.uint64)
    buffer = np.zeros((max(unpacked, shift + k) + 1, LANES), np.uint64)
    for g in range(lo, hi):
        _gather(bases, g * LANES, count, buffer, unpacked)
        _load(buffer, shift, m, n0, k, acc)
        mont_mul(acc, to_mont, m, n0, k, t, acc)  # base R mod m
        table[0] = one[:rows]
        table[1] = acc
        for d in range(2, 1 << window_bits):
            mont_mul(table[d - 1], acc, m, n0, k, t, table[d])
        acc[:] = one[:rows]
        if digits.size > 0:
            acc[:] = table[digits[0]]
        for i in range(1, digits.size):
            for _ in range(window_bits):
                mont_sqr(acc, m, n0, k, t, acc)
            mont_mul(table[digits[i]], acc, m, n0, k, t, acc)
        mont_mul(acc, unit, m, n0, k, t, acc)
        _reduce_final(acc, m, k)
        _scatter(acc, k, out, g * LANES, count)


@njit(cache=True)
def _mulmod_rows(lo, hi, a, b, out, m, n0, k, unpacked_a, shift_a, unpacked_b, shift_b, correction):
    """out[r] = a[r] * b[r] mod m for the rows of groups lo..hi-1 (any values below 2^(32 width)).

    Two Montgomery products: (a 2^-52sa)(b 2^-52sb)/R, then times correction = 2^(52(sa+sb)) R^2 mod m.
    """
    count = a.shape[0]
    rows = k + 1
    x = np.zeros((rows, LANES), np.uint64)
    y = np.zeros((rows, LANES), np.uint64)
    t = np.zeros((rows, LANES), np.uint64)
    buffer = np.zeros((max(unpacked_a, unpacked_b, max(shift_a, shift_b) + k) + 1, LANES), np.uint64)
    for g in range(lo, hi):
        _gather(a, g * LANES, count, buffer, unpacked_a)
        _load(buffer, shift_a, m, n0, k, x)
        _gather(b, g * LANES, count, buffer, unpacked_b)
        _load(buffer, shift_b, m, n0, k, y)
        mont_mul(x, y, m, n0, k, t, x)
        mont_mul(x, correction, m, n0, k, t, x)
        _reduce_final(x, m, k)
        _scatter(x, k, out, g * LANES, count)


@njit(cache=True)
def convert_table(entries, k, limbs):
    """limbs[i, j] = entries[i, j] as k 52-bit limbs: a fixed-base table in the walk's representation.

    entries: uint32 (windows, 2^w, words), values below 2^(52 k); limbs: uint64 (windows, 2^w, k).
    """
    for i in range(entries.shape[0]):
        for j in range(entries.shape[1]):
            _unpack(entries[i, j], limbs[i, j], k)


@njit(cache=True)
def _walk_rows(lo, hi, limbs, digits, out, m, n0, k, correction):
    """out[r] = prod_i limbs[i, digits[r, i]] mod m for the rows of groups lo..hi-1: a fixed-base table walk.

    limbs: uint64 (windows, 2^w, k), residues below m in normal form (``convert_table``), gathered lane by
    lane (each lane has its own digits); every window is multiplied. The product of W Montgomery
    multiplications carries R^-(W-1); correction = R^W mod m removes it. Rows past the end walk digit 0.
    """
    count = digits.shape[0]
    rows = k + 1
    entry = np.zeros((rows, LANES), np.uint64)
    acc = np.zeros((rows, LANES), np.uint64)
    t = np.zeros((rows, LANES), np.uint64)
    windows = limbs.shape[0]
    for g in range(lo, hi):
        first = g * LANES
        for i in range(windows):
            target = acc if i == 0 else entry
            for lane in range(LANES):
                r = first + lane
                digit = digits[r, i] if r < count else 0
                source = limbs[i, digit]
                for j in range(k):
                    target[j, lane] = source[j]
            if i > 0:
                mont_mul(entry, acc, m, n0, k, t, acc)
        mont_mul(acc, correction, m, n0, k, t, acc)
        _reduce_final(acc, m, k)
        _scatter(acc, k, out, first, count)


@njit(cache=True)
def _chunk_bounds(chunk, chunks, groups):
    """Groups [lo, hi) of chunk ``chunk`` out of ``chunks`` near-equal contiguous chunks of ``groups`` groups."""
    return chunk * groups // chunks, (chunk + 1) * groups // chunks


@njit(cache=True)
def powmod_serial(bases, out, m, n0, k, unpacked, shift, to_mont, one, unit, digits, window_bits):
    """``_powmod_rows`` over every group, in the calling thread."""
    groups = (bases.shape[0] + LANES - 1) // LANES
    _powmod_rows(0, groups, bases, out, m, n0, k, unpacked, shift, to_mont, one, unit, digits, window_bits)


@njit(cache=True, parallel=True)
def powmod_parallel(bases, out, m, n0, k, unpacked, shift, to_mont, one, unit, digits, window_bits, chunks):
    """``_powmod_rows`` over ``chunks`` contiguous chunks of groups in parallel (each thread its own rows)."""
    groups = (bases.shape[0] + LANES - 1) // LANES
    for c in prange(chunks):
        lo, hi = _chunk_bounds(c, chunks, groups)
        _powmod_rows(lo, hi, bases, out, m, n0, k, unpacked, shift, to_mont, one, unit, digits, window_bits)


@njit(cache=True)
def mulmod_serial(a, b, out, m, n0, k, unpacked_a, shift_a, unpacked_b, shift_b, correction):
    """``_mulmod_rows`` over every group, in the calling thread."""
    groups = (a.shape[0] + LANES - 1) // LANES
    _mulmod_rows(0, groups, a, b, out, m, n0, k, unpacked_a, shift_a, unpacked_b, shift_b, correction)


@njit(cache=True, parallel=True)
def mulmod_parallel(a, b, out, m, n0, k, unpacked_a, shift_a, unpacked_b, shift_b, correction, chunks):
    """``_mulmod_rows`` over ``chunks`` contiguous chunks of groups in parallel (each thread its own rows)."""
    groups = (a.shape[0] + LANES - 1) // LANES
    for c in prange(chunks):
        lo, hi = _chunk_bounds(c, chunks, groups)
        _mulmod_rows(lo, hi, a, b, out, m, n0, k, unpacked_a, shift_a, unpacked_b, shift_b, correction)


@njit(cache=True)
def walk_serial(limbs, digits, out, m, n0, k, correction):
    """``_walk_rows`` over every group, in the calling thread."""
    groups = (digits.shape[0] + LANES - 1) // LANES
    _walk_rows(0, groups, limbs, digits, out, m, n0, k, correction)


@njit(cache=True, parallel=True)
def walk_parallel(limbs, digits, out, m, n0, k, correction, chunks):
    """``_walk_rows`` over ``chunks`` contiguous chunks of groups in parallel (each thread its own rows)."""
    groups = (digits.shape[0] + LANES - 1) // LANES
    for c in prange(chunks):
        lo, hi = _chunk_bounds(c, chunks, groups)
        _walk_rows(lo, hi, limbs, digits, out, m, n0, k, correction)
