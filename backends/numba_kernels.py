"""Numba kernels of the ``numba`` backend: Montgomery arithmetic on 27-bit limbs in uint64 accumulators.

This module imports numba at import time; only ``NumbaBackend`` imports it, lazily.

Representation
--------------
A residue modulo an odd m is held as k *narrow limbs* of ``LIMB_BITS`` = 27 bits, least significant first,
in a uint32 array; k is a multiple of 4 with R = 2^(27 k) > 4 m. Kernels take these arrays zero-padded to
``padded_length(k)`` entries (``PAD`` past kp, k rounded up to a multiple of 8; see ``numba_backend``), so the
vectorised inner loops run a fixed trip count with no remainder and read zeros past the top limb.

Carry strategy (lazy carries) and why it is exact
-------------------------------------------------
Products of two limbs are below 2^54 and are summed into uint64 accumulators without propagating carries
inside a multiplication: each inner loop is a plain multiply-add over a contiguous row, which LLVM
vectorises (vpmuludq on zero-extended 32-bit lanes). Over a whole multiplication an accumulator position
receives at most k products from a*b (when squaring: at most k/2 doubled ones below 2^55 and one square, so
at most k + 1 in units of 2^54) and at most k from u*m, plus one carry below 2^37 (a uint64 shifted right by
27) and one limb below 2^27. With k <= ``MAX_LIMBS`` = 508 (``numba_backend``), (2k + 1) * 2^54 + 2^38 < 2^64,
so no accumulator ever wraps. Carries are propagated once, at the end of each multiplication. Measured on
the project machine (AMD Zen 4): 32-bit limbs with carries propagated at once ran about 4x slower than GMP;
these lazy 27-bit limbs run the loops at the vector multiplier's throughput (about 4 products a cycle,
whether 256- or 512-bit vectors), so speed follows the product count.

Montgomery multiplication is CIOS, two rows per pass over the accumulator (``mont_mul``); squaring is
separate (``mont_sqr``): the doubled off-diagonal products (k^2/2 of them) and then the reduction, four rows
per pass, for 1.5 k^2 products instead of 2 k^2. Inputs below 2m give outputs below 2m because R > 4m
("almost Montgomery": no conditional subtraction inside an exponentiation, only once at the end).

Every ``*_rows`` function handles a contiguous range of rows with its own scratch arrays; the public
kernels come in ``_serial`` and ``_parallel`` (``prange`` over chunks of rows, each thread writing its own
rows) variants of the same row function. They are separate functions because numba's on-disk cache does
not tell a serial from a parallel compilation of one Python function apart.
"""

import numpy as np
from numba import njit, prange, uint32, uint64

from dphe_bench.backends.numba_backend import NARROW_BITS as LIMB_BITS
from dphe_bench.backends.numba_backend import PAD

_W = uint64(LIMB_BITS)
_MASK = uint64((1 << LIMB_BITS) - 1)
_WORD_MASK = uint64(0xFFFFFFFF)


@njit(cache=True)
def mont_mul(a, b, m, n0, k, kp, t, out):
    """out = a * b / R mod m (below 2m when a * b < m R), CIOS with two rows per pass.

    a: uint32 (>= k,) narrow limbs; b, m: uint32 (>= kp + 2,) zero past k; n0 = -m^-1 mod 2^27 (uint64);
    t: uint64 scratch (>= kp + 2,); out: uint32 (>= k,), may be the same array as a or b (written last).
    """
    for j in range(kp + 2):
        t[j] = 0
    b0 = uint64(b[0])
    b1 = uint64(b[1])
    m0 = uint64(m[0])
    m1 = uint64(m[1])
    for i in range(0, k, 2):
        x = uint64(a[i])
        y = uint64(a[i + 1])
        s = t[0] + x * b0
        u = ((s & _MASK) * n0) & _MASK
        carry = (s + u * m0) >> _W
        s = t[1] + x * b1 + u * m1 + carry + y * b0
        v = ((s & _MASK) * n0) & _MASK
        carry = (s + v * m0) >> _W
        # The low two positions are now multiples of 2^54; shift the accumulator down by two limbs.
        for j in range(kp):
            t[j] = t[j + 2] + x * uint64(b[j + 2]) + u * uint64(m[j + 2]) + y * uint64(b[j + 1]) + v * uint64(m[j + 1])
        t[0] += carry
    _normalise(t, 0, k, out)


@njit(cache=True)
def mont_sqr(a, m, n0, k, kp, t, out):
    """out = a^2 / R mod m (below 2m when a < 2m): doubled half product, then reduction four rows a pass.

    a, m: uint32 (>= kp + PAD,) zero past k; t: uint64 scratch (>= 2 kp + PAD,); out may be a (written last).
    """
    for j in range(2 * kp + PAD):
        t[j] = 0
    # 1. a^2 = sum a_i^2 2^(2wi) + sum_{i<j} 2 a_i a_j 2^(w(i+j)), four rows i..i+3 per pass. The corner
    #    (positions 2i..2i+6) in scalar code, the rest in one vectorised loop over a zero-padded row.
    for i in range(0, k, 4):
        a0 = uint64(a[i])
        a1 = uint64(a[i + 1])
        a2 = uint64(a[i + 2])
        a3 = uint64(a[i + 3])
        # Doubled limbs are below 2^28: keep them typed as 32-bit so the products stay vpmuludq.
        x0 = uint64(uint32(a0 + a0))
        x1 = uint64(uint32(a1 + a1))
        x2 = uint64(uint32(a2 + a2))
        x3 = uint64(uint32(a3 + a3))
        p = 2 * i
        t[p] += a0 * a0
        t[p + 1] += x0 * a1
        t[p + 2] += x0 * a2 + a1 * a1
        t[p + 3] += x0 * a3 + x1 * a2
        t[p + 4] += x0 * uint64(a[i + 4]) + x1 * a3 + a2 * a2
        t[p + 5] += x0 * uint64(a[i + 5]) + x1 * uint64(a[i + 4]) + x2 * a3
        t[p + 6] += x0 * uint64(a[i + 6]) + x1 * uint64(a[i + 5]) + x2 * uint64(a[i + 4]) + a3 * a3
        # Unsigned indices: numba then emits no negative-index wraparound and LLVM vectorises the loop.
        base = uint64(p + 7)
        column = uint64(i + 7)
        for jj in range((k - i + 3) & ~7):
            q = uint64(jj)
            c = column + q
            t[base + q] += (
                x0 * uint64(a[c])
                + x1 * uint64(a[c - uint64(1)])
                + x2 * uint64(a[c - uint64(2)])
                + x3 * uint64(a[c - uint64(3)])
            )
    # 2. Montgomery reduction of the 2k-limb square, rows i..i+3 per pass. The digits of the next pass come
    #    from a scalar "head" (positions i+4..i+7), so their dependency chain overlaps the vector loop.
    m0 = uint64(m[0])
    m1 = uint64(m[1])
    m2 = uint64(m[2])
    m3 = uint64(m[3])
    m4 = uint64(m[4])
    m5 = uint64(m[5])
    m6 = uint64(m[6])
    m7 = uint64(m[7])
    s = t[0]
    v0 = ((s & _MASK) * n0) & _MASK
    carry = (s + v0 * m0) >> _W
    s = t[1] + v0 * m1 + carry
    v1 = ((s & _MASK) * n0) & _MASK
    carry = (s + v1 * m0) >> _W
    s = t[2] + v0 * m2 + v1 * m1 + carry
    v2 = ((s & _MASK) * n0) & _MASK
    carry = (s + v2 * m0) >> _W
    s = t[3] + v0 * m3 + v1 * m2 + v2 * m1 + carry
    v3 = ((s & _MASK) * n0) & _MASK
    carry = (s + v3 * m0) >> _W
    # Digits travel between passes as uint32 so LLVM knows they fit 32 bits (vpmuludq, not vpmullq).
    q0 = uint32(v0)
    q1 = uint32(v1)
    q2 = uint32(v2)
    q3 = uint32(v3)
    for i in range(0, k, 4):
        u0 = uint64(q0)
        u1 = uint64(q1)
        u2 = uint64(q2)
        u3 = uint64(q3)
        h0 = t[i + 4] + u0 * m4 + u1 * m3 + u2 * m2 + u3 * m1 + carry
        h1 = t[i + 5] + u0 * m5 + u1 * m4 + u2 * m3 + u3 * m2
        h2 = t[i + 6] + u0 * m6 + u1 * m5 + u2 * m4 + u3 * m3
        h3 = t[i + 7] + u0 * m7 + u1 * m6 + u2 * m5 + u3 * m4
        if i + 4 < k:
            s = h0
            v0 = ((s & _MASK) * n0) & _MASK
            carry = (s + v0 * m0) >> _W
            s = h1 + v0 * m1 + carry
            v1 = ((s & _MASK) * n0) & _MASK
            carry = (s + v1 * m0) >> _W
            s = h2 + v0 * m2 + v1 * m1 + carry
            v2 = ((s & _MASK) * n0) & _MASK
            carry = (s + v2 * m0) >> _W
            s = h3 + v0 * m3 + v1 * m2 + v2 * m1 + carry
            v3 = ((s & _MASK) * n0) & _MASK
            carry = (s + v3 * m0) >> _W
            q0 = uint32(v0)
            q1 = uint32(v1)
            q2 = uint32(v2)
            q3 = uint32(v3)
        t[i + 4] = h0
        t[i + 5] = h1
        t[i + 6] = h2
        t[i + 7] = h3
        base = uint64(i + 8)
        for jj in range(kp):
            q = uint64(jj)
            j = q + uint64(8)
            t[base + q] += (
                u0 * uint64(m[j])
                + u1 * uint64(m[j - uint64(1)])
                + u2 * uint64(m[j - uint64(2)])
                + u3 * uint64(m[j - uint64(3)])
            )
    _normalise(t, k, k, out)


@njit(cache=True)
def _normalise(t, start, k, out):
    """Propagate the lazy carries of t[start:start + k] into k 27-bit limbs of out (the value is below R)."""
    carry = uint64(0)
    for j in range(k):
        s = t[start + j] + carry
        out[j] = uint32(s & _MASK)
        carry = s >> _W


@njit(cache=True)
def _unpack(words, limbs, count):
    """The first ``count`` 27-bit limbs of the little-endian uint32 ``words`` into ``limbs`` (any int dtype)."""
    width = words.size
    for i in range(count):
        bit = i * LIMB_BITS
        w = bit >> 5
        offset = bit & 31
        value = uint64(0)
        if w < width:
            value = uint64(words[w]) >> uint64(offset)
            if offset > 32 - LIMB_BITS and w + 1 < width:
                value |= uint64(words[w + 1]) << uint64(32 - offset)
        limbs[i] = value & _MASK


@njit(cache=True)
def _pack(limbs, k, words):
    """k normalised 27-bit limbs into the little-endian uint32 ``words`` (the value must fit in them)."""
    accumulator = uint64(0)
    bits = 0
    w = 0
    for j in range(k):
        accumulator |= uint64(limbs[j]) << uint64(bits)
        bits += LIMB_BITS
        while bits >= 32 and w < words.size:
            words[w] = uint32(accumulator & _WORD_MASK)
            accumulator >>= uint64(32)
            bits -= 32
            w += 1
    while w < words.size:
        words[w] = uint32(accumulator & _WORD_MASK)
        accumulator >>= uint64(32)
        w += 1


@njit(cache=True)
def _load(words, unpacked, shift, m, n0, k, buffer, out):
    """out = words * 2^(-27 shift) mod m, below 2m, in k limbs: ``shift`` Montgomery reduction steps.

    words: uint32 (width,) any value below 2^(32 width); unpacked = ceil(32 width / 27) limbs;
    shift = max(0, unpacked - floor((bits(m) - 1) / 27)) makes the result below 2^(bits(m)-1) + m <= 2m.
    buffer: uint64 scratch (>= max(unpacked, shift + k) + 1,). No division anywhere.
    """
    for j in range(buffer.size):
        buffer[j] = 0
    _unpack(words, buffer, unpacked)
    for i in range(shift):
        u = ((buffer[i] & _MASK) * n0) & _MASK
        base = uint64(i)
        for j in range(k):
            buffer[base + uint64(j)] += u * uint64(m[j])
        buffer[i + 1] += buffer[i] >> _W
    _normalise(buffer, shift, k, out)


@njit(cache=True)
def _reduce_final(x, m, k):
    """x (k normalised limbs, below 2m) -= m if x >= m, without a data-dependent branch."""
    borrow = 0
    for j in range(k):
        borrow = (np.int64(x[j]) - np.int64(m[j]) - borrow) >> 63 & 1
    keep = np.int64(0) - np.int64(1 - borrow)  # all ones when x >= m
    borrow = 0
    for j in range(k):
        d = np.int64(x[j]) - (np.int64(m[j]) & keep) - borrow
        borrow = (d >> 63) & 1
        x[j] = uint32(d & np.int64((1 << LIMB_BITS) - 1))


@njit(cache=True)
def _from_montgomery(x, unit, m, n0, k, kp, t, words):
    """words = x / R mod m, canonical, as uint32 words; x is clobbered. unit: the padded constant 1."""
    mont_mul(x, unit, m, n0, k, kp, t, x)
    _reduce_final(x, m, k)
    _pack(x, k, words)


@njit(cache=True)
def _powmod_rows(lo, hi, bases, out, m, n0, k, kp, unpacked, shift, to_mont, one, unit, digits, window_bits):
    """out[r] = bases[r] ^ e mod m for rows lo..hi-1; e given by its base-2^w ``digits``, most significant first.

    Fixed windows; every window multiplies (digit 0 multiplies by one), so the sequence of operations does not
    depend on the exponent. bases: uint32 (count, any width); out: uint32 (count, words of m).
    """
    length = m.size
    table = np.zeros((1 << window_bits, length), np.uint32)
    acc = np.zeros(length, np.uint32)
    t = np.zeros(2 * kp + PAD, np.uint64)
    buffer = np.zeros(max(unpacked, shift + k) + 1, np.uint64)
    for r in range(lo, hi):
        _load(bases[r], unpacked, shift, m, n0, k, buffer, acc)
        mont_mul(acc, to_mont, m, n0, k, kp, t, acc)  # base R mod m
        table[0, :k] = one[:k]
        table[1, :k] = acc[:k]
        for d in range(2, 1 << window_bits):
            mont_mul(table[d - 1], acc, m, n0, k, kp, t, table[d])
        acc[:k] = one[:k]
        if digits.size > 0:
            acc[:k] = table[digits[0], :k]
        for i in range(1, digits.size):
            for _ in range(window_bits):
                mont_sqr(acc, m, n0, k, kp, t, acc)
            mont_mul(table[digits[i]], acc, m, n0, k, kp, t, acc)
        _from_montgomery(acc, unit, m, n0, k, kp, t, out[r])


@njit(cache=True)
def _mulmod_rows(lo, hi, a, b, out, m, n0, k, kp, unpacked_a, shift_a, unpacked_b, shift_b, correction, unit):
    """out[r] = a[r] * b[r] mod m for rows lo..hi-1 (any values below 2^(32 width)).

    Two Montgomery multiplications: (a 2^-sa)(b 2^-sb)/R, then times correction = 2^(27(sa+sb)) R^2 mod m.
    """
    length = m.size
    x = np.zeros(length, np.uint32)
    y = np.zeros(length, np.uint32)
    t = np.zeros(kp + 2, np.uint64)
    buffer = np.zeros(max(unpacked_a, unpacked_b, max(shift_a, shift_b) + k) + 1, np.uint64)
    for r in range(lo, hi):
        _load(a[r], unpacked_a, shift_a, m, n0, k, buffer, x)
        _load(b[r], unpacked_b, shift_b, m, n0, k, buffer, y)
        mont_mul(x, y, m, n0, k, kp, t, x)
        mont_mul(x, correction, m, n0, k, kp, t, x)
        _reduce_final(x, m, k)
        _pack(x, k, out[r])


@njit(cache=True)
def _walk_rows(lo, hi, entries, digits, out, m, n0, k, kp, unpacked, correction):
    """out[r] = prod_i entries[i, digits[r, i]] mod m for rows lo..hi-1: a fixed-base table walk.

    entries: uint32 (windows, 2^w, words of m), residues in normal form; every window is multiplied.
    The product of W Montgomery multiplications carries R^-(W-1); correction = R^W mod m removes it.
    """
    length = m.size
    entry = np.zeros(length, np.uint32)
    acc = np.zeros(length, np.uint32)
    t = np.zeros(kp + 2, np.uint64)
    windows = entries.shape[0]
    for r in range(lo, hi):
        _unpack(entries[0, digits[r, 0]], acc, unpacked)
        for i in range(1, windows):
            _unpack(entries[i, digits[r, i]], entry, unpacked)
            mont_mul(entry, acc, m, n0, k, kp, t, acc)
        mont_mul(acc, correction, m, n0, k, kp, t, acc)
        _reduce_final(acc, m, k)
        _pack(acc, k, out[r])


@njit(cache=True)
def _chunk_bounds(chunk, chunks, count):
    """Rows [lo, hi) of chunk ``chunk`` out of ``chunks`` near-equal contiguous chunks of ``count`` rows."""
    return chunk * count // chunks, (chunk + 1) * count // chunks


@njit(cache=True)
def powmod_serial(bases, out, m, n0, k, kp, unpacked, shift, to_mont, one, unit, digits, window_bits):
    """``_powmod_rows`` over every row, in the calling thread."""
    _powmod_rows(0, bases.shape[0], bases, out, m, n0, k, kp, unpacked, shift, to_mont, one, unit, digits, window_bits)


@njit(cache=True, parallel=True)
def powmod_parallel(bases, out, m, n0, k, kp, unpacked, shift, to_mont, one, unit, digits, window_bits, chunks):
    """``_powmod_rows`` over ``chunks`` contiguous chunks of rows in parallel (each thread its own rows)."""
    for c in prange(chunks):
        lo, hi = _chunk_bounds(c, chunks, bases.shape[0])
        _powmod_rows(lo, hi, bases, out, m, n0, k, kp, unpacked, shift, to_mont, one, unit, digits, window_bits)


@njit(cache=True)
def mulmod_serial(a, b, out, m, n0, k, kp, unpacked_a, shift_a, unpacked_b, shift_b, correction, unit):
    """``_mulmod_rows`` over every row, in the calling thread."""
    _mulmod_rows(0, a.shape[0], a, b, out, m, n0, k, kp, unpacked_a, shift_a, unpacked_b, shift_b, correction, unit)


@njit(cache=True, parallel=True)
def mulmod_parallel(a, b, out, m, n0, k, kp, unpacked_a, shift_a, unpacked_b, shift_b, correction, unit, chunks):
    """``_mulmod_rows`` over ``chunks`` contiguous chunks of rows in parallel (each thread its own rows)."""
    for c in prange(chunks):
        lo, hi = _chunk_bounds(c, chunks, a.shape[0])
        _mulmod_rows(lo, hi, a, b, out, m, n0, k, kp, unpacked_a, shift_a, unpacked_b, shift_b, correction, unit)


@njit(cache=True)
def walk_serial(entries, digits, out, m, n0, k, kp, unpacked, correction):
    """``_walk_rows`` over every row, in the calling thread."""
    _walk_rows(0, digits.shape[0], entries, digits, out, m, n0, k, kp, unpacked, correction)


@njit(cache=True, parallel=True)
def walk_parallel(entries, digits, out, m, n0, k, kp, unpacked, correction, chunks):
    """``_walk_rows`` over ``chunks`` contiguous chunks of rows in parallel (each thread its own rows)."""
    for c in prange(chunks):
        lo, hi = _chunk_bounds(c, chunks, digits.shape[0])
        _walk_rows(lo, hi, entries, digits, out, m, n0, k, kp, unpacked, correction)
