/* Cooperative Montgomery arithmetic over 32-bit limbs: the arithmetic core of the ``cupy`` backend.
 *
 * One big integer of LIMBS limbs is shared by a group of TPI neighbouring threads ("lanes"); lane l holds
 * the LPL = LIMBS / TPI contiguous limbs l*LPL .. l*LPL + LPL - 1, least significant first. Both are
 * compile-time constants (-DDPHE_LIMBS=... -DDPHE_TPI=...); the Python side picks the configuration from
 * the modulus size and compiles one module per configuration.
 *
 * The same source compiles in two modes:
 *   - CUDA (nvcc or NVRTC): each thread is one lane (LANES = 1) and lanes talk through warp shuffles and
 *     ballots restricted to their group's mask;
 *   - host C++ (g++/clang++): one call runs all TPI lanes of a group in lockstep (LANES = TPI): every
 *     per-lane statement is a loop over the lanes (FOR_LANES), and each exchange between lanes reads the
 *     arrays of the other lanes. The test suite runs this mode against Python ints on machines with no GPU.
 * Everything except the five exchange primitives below is shared by both modes.
 *
 * Montgomery multiplication is word-serial CIOS: for every word b_i of b (broadcast from its owner lane),
 * each lane adds a * b_i and q * n into its slice (q = t_0 * n0inv from lane 0), then the accumulator
 * shifts down one word through a neighbour exchange. Carries out of a lane's slice are kept per lane (in
 * 64-bit "pending carry" words, bounded by 2^35) and settled once at the end with a carry-lookahead over two
 * ballots; the result (below 2n) gets one conditional subtraction, also settled by lookahead. The work does
 * not depend on the values: no data-dependent loops, only selects.
 *
 * Preconditions (checked by the Python side): n odd, 1 < n < R = 2^(32 LIMBS), n0inv = -n^-1 mod 2^32.
 */
#ifndef DPHE_BIGINT_CUH
#define DPHE_BIGINT_CUH

#if defined(__CUDACC__)
#define DPHE_DEVICE_CODE 1
#define DPHE_FN __device__ __forceinline__
typedef unsigned int u32;
typedef unsigned long long u64;
#else
#include <stdint.h>
#define DPHE_FN static inline
typedef uint32_t u32;
typedef uint64_t u64;
#endif

#if !defined(DPHE_LIMBS) || !defined(DPHE_TPI)
#error "compile with -DDPHE_LIMBS=<limbs per number> -DDPHE_TPI=<threads per number>"
#endif

static constexpr int LIMBS = DPHE_LIMBS;
static constexpr int TPI = DPHE_TPI;
static constexpr int LPL = LIMBS / TPI;
static_assert(TPI == 4 || TPI == 8 || TPI == 16 || TPI == 32, "TPI must divide a warp: 4, 8, 16 or 32");
static_assert(LIMBS % TPI == 0 && LPL >= 2, "LIMBS must be a multiple of TPI with at least 2 limbs per lane");

/* Fixed window of the variable-base exponentiation: 2^POW_WINDOW table entries per number. */
static constexpr int POW_WINDOW = 4;

#ifdef DPHE_DEVICE_CODE
static constexpr int LANES = 1;
#else
static constexpr int LANES = TPI;
#endif

/* Runs its body once per lane held by this thread: once on the GPU, TPI times in host mode. */
#define FOR_LANES(l) for (int l = 0; l < LANES; ++l)

/* Fully unrolls the loop it precedes on the GPU, so that limb arrays indexed by its counter stay in
 * registers; nothing in host mode. */
#ifdef DPHE_DEVICE_CODE
#define DPHE_UNROLL _Pragma("unroll")
#else
#define DPHE_UNROLL
#endif

typedef u32 Slice[LANES][LPL]; /* this thread's lanes' limbs of one number */
typedef u32 LaneWord[LANES];   /* one 32-bit word per lane */
typedef u64 LaneWide[LANES];   /* one 64-bit word per lane */
typedef int LaneFlag[LANES];   /* one predicate per lane */

/* Where this thread sits: its lane in the group, and the group's lanes in the warp (device mode only). */
struct Group {
#ifdef DPHE_DEVICE_CODE
    u32 mask; /* the group's lanes within the warp, for the *_sync intrinsics */
    int lane; /* 0 .. TPI - 1 */
    int base; /* warp lane of the group's lane 0 */
#else
    int unused;
#endif
};

/* The group lane number of array index l (l is always 0 on the GPU). */
DPHE_FN int lane_id(const Group& g, int l) {
#ifdef DPHE_DEVICE_CODE
    (void)l;
    return g.lane;
#else
    (void)g;
    return l;
#endif
}

/* ---- The five exchange primitives: the only code that differs between the two modes. ---- */

/* The word that lane ``source`` holds in v, seen by every lane. */
DPHE_FN u32 group_broadcast(const Group& g, const LaneWord v, int source) {
#ifdef DPHE_DEVICE_CODE
    return __shfl_sync(g.mask, v[0], source, TPI);
#else
    (void)g;
    return v[source];
#endif
}

/* out[l] = v[l + 1]; the top lane gets 0. */
DPHE_FN void group_from_next(const Group& g, const LaneWord v, LaneWord out) {
#ifdef DPHE_DEVICE_CODE
    u32 next = __shfl_down_sync(g.mask, v[0], 1, TPI);
    out[0] = g.lane == TPI - 1 ? 0u : next;
#else
    (void)g;
    for (int l = 0; l < TPI; ++l) out[l] = l + 1 < TPI ? v[l + 1] : 0u;
#endif
}

/* out[l] = v[l - 1]; lane 0 gets 0. */
DPHE_FN void group_from_previous(const Group& g, const LaneWide v, LaneWide out) {
#ifdef DPHE_DEVICE_CODE
    u64 previous = __shfl_up_sync(g.mask, v[0], 1, TPI);
    out[0] = g.lane == 0 ? 0ull : previous;
#else
    (void)g;
    for (int l = 0; l < TPI; ++l) out[l] = l > 0 ? v[l - 1] : 0ull;
#endif
}

/* Bit l set when lane l's flag is non-zero, for the TPI lanes of the group. */
DPHE_FN u64 group_ballot(const Group& g, const LaneFlag flag) {
#ifdef DPHE_DEVICE_CODE
    u32 bits = __ballot_sync(g.mask, flag[0]) >> g.base;
    return (u64)(TPI == 32 ? bits : bits & ((1u << (TPI % 32)) - 1u));
#else
    (void)g;
    u64 bits = 0;
    for (int l = 0; l < TPI; ++l) bits |= (u64)(flag[l] != 0) << l;
    return bits;
#endif
}

/* ---- Slices: loading, storing and copying one number. ---- */

/* dst = words [offset, offset + LIMBS) of row, where the row has ``width`` words (zeros past it). */
DPHE_FN void load_slice(const Group& g, Slice dst, const u32* row, int width, int offset) {
    FOR_LANES(l) {
        DPHE_UNROLL
        for (int j = 0; j < LPL; ++j) {
            int word = offset + lane_id(g, l) * LPL + j;
            dst[l][j] = word < width ? row[word] : 0u;
        }
    }
}

/* Writes the low ``width`` words of src to row (the words past width must be zero). */
DPHE_FN void store_slice(const Group& g, u32* row, int width, const Slice src) {
    FOR_LANES(l) {
        DPHE_UNROLL
        for (int j = 0; j < LPL; ++j) {
            int word = lane_id(g, l) * LPL + j;
            if (word < width) row[word] = src[l][j];
        }
    }
}

DPHE_FN void copy_slice(Slice dst, const Slice src) {
    FOR_LANES(l) {
        DPHE_UNROLL
        for (int j = 0; j < LPL; ++j) dst[l][j] = src[l][j];
    }
}

/* dst = the small integer ``value``. */
DPHE_FN void set_small(const Group& g, Slice dst, u32 value) {
    FOR_LANES(l) {
        DPHE_UNROLL
        for (int j = 0; j < LPL; ++j) dst[l][j] = (lane_id(g, l) == 0 && j == 0) ? value : 0u;
    }
}

/* ---- Carry and borrow settling. ---- */

/* Settles pending carries: pending[l] is a carry below 2^35 owed to the word just above lane l's slice.
 * Afterwards t holds the low LIMBS words of the total and the return value (the same in every lane) is
 * the word above them: the top lane's own pending carry plus what rippled out of the top lane.
 *
 * Lookahead: after each lane adds the carry from the lane below, lane l either generates a carry of 1
 * (G_l) or is all ones and would propagate one (P_l), never both; the carry into lane l is then bit l of
 * ((P | G) + G) ^ P, the carries of a binary addition over the lane bits. */
DPHE_FN u32 settle_carries(const Group& g, Slice t, const LaneWide pending) {
    LaneWide incoming;
    group_from_previous(g, pending, incoming);
    LaneFlag generate, propagate;
    LaneWord top_pending;
    FOR_LANES(l) {
        u64 carry = incoming[l];
        u32 all_ones = 0xFFFFFFFFu;
        DPHE_UNROLL
        for (int j = 0; j < LPL; ++j) {
            u64 sum = (u64)t[l][j] + carry;
            t[l][j] = (u32)sum;
            carry = sum >> 32;
            all_ones &= t[l][j];
        }
        generate[l] = carry != 0;
        propagate[l] = all_ones == 0xFFFFFFFFu;
        top_pending[l] = (u32)pending[l];
    }
    u64 g_bits = group_ballot(g, generate);
    u64 p_bits = group_ballot(g, propagate);
    u64 carry_in = ((p_bits | g_bits) + g_bits) ^ p_bits;
    FOR_LANES(l) {
        u32 carry = (u32)(carry_in >> lane_id(g, l)) & 1u;
        DPHE_UNROLL
        for (int j = 0; j < LPL; ++j) {
            u64 sum = (u64)t[l][j] + carry;
            t[l][j] = (u32)sum;
            carry = (u32)(sum >> 32);
        }
    }
    return group_broadcast(g, top_pending, TPI - 1) + ((u32)(carry_in >> TPI) & 1u);
}

/* r = (a - b) mod R; returns the borrow out of the top (1 when a < b). Borrows between lanes are settled
 * by the same lookahead as carries: a lane either generates a borrow or is all zeros and would propagate
 * one, never both. r may be the same array as a or b. */
DPHE_FN u32 subtract_slices(const Group& g, Slice r, const Slice a, const Slice b) {
    LaneFlag generate, propagate;
    FOR_LANES(l) {
        u32 borrow = 0;
        u32 any = 0;
        DPHE_UNROLL
        for (int j = 0; j < LPL; ++j) {
            u64 d = (u64)a[l][j] - b[l][j] - borrow;
            r[l][j] = (u32)d;
            borrow = (u32)(d >> 32) & 1u;
            any |= r[l][j];
        }
        generate[l] = borrow;
        propagate[l] = any == 0;
    }
    u64 g_bits = group_ballot(g, generate);
    u64 p_bits = group_ballot(g, propagate);
    u64 borrow_in = ((p_bits | g_bits) + g_bits) ^ p_bits;
    FOR_LANES(l) {
        u32 borrow = (u32)(borrow_in >> lane_id(g, l)) & 1u;
        DPHE_UNROLL
        for (int j = 0; j < LPL; ++j) {
            u64 d = (u64)r[l][j] - borrow;
            r[l][j] = (u32)d;
            borrow = (u32)(d >> 32) & 1u;
        }
    }
    return (u32)(borrow_in >> TPI) & 1u;
}

/* r = (a + b) mod R; returns the carry out of the top. r may be the same array as a or b. */
DPHE_FN u32 add_slices(const Group& g, Slice r, const Slice a, const Slice b) {
    LaneWide pending;
    FOR_LANES(l) {
        u64 carry = 0;
        DPHE_UNROLL
        for (int j = 0; j < LPL; ++j) {
            u64 sum = (u64)a[l][j] + b[l][j] + carry;
            r[l][j] = (u32)sum;
            carry = sum >> 32;
        }
        pending[l] = carry;
    }
    return settle_carries(g, r, pending);
}

/* r = if_true when condition (the same in every lane of the group), else if_false. */
DPHE_FN void select_slice(Slice r, bool condition, const Slice if_true, const Slice if_false) {
    FOR_LANES(l) {
        DPHE_UNROLL
        for (int j = 0; j < LPL; ++j) r[l][j] = condition ? if_true[l][j] : if_false[l][j];
    }
}

/* t = (hi * R + t) mod n, given hi * R + t < 2n: one subtraction of n, kept unless it goes negative. */
DPHE_FN void subtract_if_not_less(const Group& g, Slice t, u32 hi, const Slice n) {
    Slice difference;
    u32 borrow = subtract_slices(g, difference, t, n);
    select_slice(t, hi < borrow, t, difference);
}

/* ---- Modular arithmetic. ---- */

/* t += x * word in every lane, the carry out of each lane's slice added to its pending carry; low gets
 * each lane's new lowest word. */
DPHE_FN void multiply_accumulate(Slice t, const Slice x, u32 word, LaneWide pending, LaneWord low) {
    FOR_LANES(l) {
        u64 carry = 0;
        DPHE_UNROLL
        for (int j = 0; j < LPL; ++j) {
            u64 product = (u64)x[l][j] * word + t[l][j] + carry;
            t[l][j] = (u32)product;
            carry = product >> 32;
        }
        pending[l] += carry;
        low[l] = t[l][0];
    }
}

/* Shifts the accumulator (t, pending) down one word; its lowest word, lane 0's low[0], must be zero. A
 * lane's pending carry sits at the next lane's first word, which moves into this lane's top word. */
DPHE_FN void shift_down_one_word(const Group& g, Slice t, LaneWide pending, const LaneWord low) {
    LaneWord next;
    group_from_next(g, low, next);
    FOR_LANES(l) {
        DPHE_UNROLL
        for (int j = 0; j + 1 < LPL; ++j) t[l][j] = t[l][j + 1];
        u64 top = (u64)next[l] + pending[l];
        t[l][LPL - 1] = (u32)top;
        pending[l] = top >> 32;
    }
}

/* r = a * b / R mod n, for a < R and b < n (so the sum before the last subtraction is below 2n).
 * r may be the same array as a or b. */
DPHE_FN void mont_mul(const Group& g, Slice r, const Slice a, const Slice b, const Slice n, u32 n0inv) {
    Slice t;
    LaneWide pending;
    LaneWord column;
    set_small(g, t, 0u);
    FOR_LANES(l) pending[l] = 0ull;
    for (int owner = 0; owner < TPI; ++owner) {
        DPHE_UNROLL
        for (int i = 0; i < LPL; ++i) {
            FOR_LANES(l) column[l] = b[l][i];
            u32 b_word = group_broadcast(g, column, owner);
            multiply_accumulate(t, a, b_word, pending, column);
            u32 q = group_broadcast(g, column, 0) * n0inv;
            multiply_accumulate(t, n, q, pending, column);
            shift_down_one_word(g, t, pending, column);
        }
    }
    u32 hi = settle_carries(g, t, pending);
    subtract_if_not_less(g, t, hi, n);
    copy_slice(r, t);
}

/* r = (a + b) mod n for a, b < n. */
DPHE_FN void mod_add(const Group& g, Slice r, const Slice a, const Slice b, const Slice n) {
    u32 hi = add_slices(g, r, a, b);
    subtract_if_not_less(g, r, hi, n);
}

/* r = (a - b) mod n for a, b < n. */
DPHE_FN void mod_sub(const Group& g, Slice r, const Slice a, const Slice b, const Slice n) {
    Slice wrapped;
    u32 borrow = subtract_slices(g, r, a, b);
    add_slices(g, wrapped, r, n);
    select_slice(r, borrow != 0, wrapped, r);
}

/* quotient = y / d for a multiple y of the odd d (y < R), with d0inv = -d^-1 mod 2^32. Montgomery
 * reduction of y by d, one word at a time, picks digits Q with y + Q d = 0 (mod R); as y = d * quotient,
 * Q = -quotient (mod R), so the quotient is R - Q (or 0). The same work whatever the values. */
DPHE_FN void exact_divide(const Group& g, Slice quotient, const Slice y, const Slice d, u32 d0inv) {
    Slice t, digits, zero;
    LaneWide pending;
    LaneWord column;
    copy_slice(t, y);
    set_small(g, zero, 0u);
    copy_slice(digits, zero);
    FOR_LANES(l) pending[l] = 0ull;
    for (int owner = 0; owner < TPI; ++owner) {
        DPHE_UNROLL
        for (int i = 0; i < LPL; ++i) {
            FOR_LANES(l) column[l] = t[l][0];
            u32 q = group_broadcast(g, column, 0) * d0inv;
            FOR_LANES(l) digits[l][i] = lane_id(g, l) == owner ? q : digits[l][i];
            multiply_accumulate(t, d, q, pending, column);
            shift_down_one_word(g, t, pending, column);
        }
    }
    subtract_slices(g, quotient, zero, digits);
}

/* ---- One number's share of each kernel (the kernels and the host harness both call these). ---- */

/* out = base^e mod n. The base row has base_width <= 2 LIMBS words (any value); e is given as its
 * POW_WINDOW-bit digits, most significant first. r2 = R^2 mod n, r3 = R^3 mod n. Fixed windows: every
 * window squares POW_WINDOW times and multiplies, whatever the digit. */
DPHE_FN void powmod_number(const Group& g, const u32* base_row, int base_width, u32* out_row, int out_width,
                           bool write, const u32* modulus, u32 n0inv, const u32* r2, const u32* r3,
                           const u32* digits, int digit_count) {
    Slice n, low, high, k2, k3, one, acc;
    Slice table[1 << POW_WINDOW];
    load_slice(g, n, modulus, LIMBS, 0);
    load_slice(g, k2, r2, LIMBS, 0);
    load_slice(g, k3, r3, LIMBS, 0);
    load_slice(g, low, base_row, base_width, 0);
    load_slice(g, high, base_row, base_width, LIMBS);
    /* base = high R + low, in Montgomery form: high R^2 + low R (mod n). */
    mont_mul(g, high, high, k3, n, n0inv);
    mont_mul(g, low, low, k2, n, n0inv);
    mod_add(g, table[1], high, low, n);
    set_small(g, one, 1u);
    mont_mul(g, table[0], one, k2, n, n0inv);
    for (int d = 2; d < (1 << POW_WINDOW); ++d) mont_mul(g, table[d], table[d - 1], table[1], n, n0inv);
    copy_slice(acc, table[digits[0]]);
    for (int i = 1; i < digit_count; ++i) {
        for (int s = 0; s < POW_WINDOW; ++s) mont_mul(g, acc, acc, acc, n, n0inv);
        mont_mul(g, acc, acc, table[digits[i]], n, n0inv);
    }
    mont_mul(g, acc, acc, one, n, n0inv);
    if (write) store_slice(g, out_row, out_width, acc);
}

/* out = a * b mod n for rows of at most LIMBS words (any values): two Montgomery products. */
DPHE_FN void mulmod_number(const Group& g, const u32* a_row, int a_width, const u32* b_row, int b_width,
                           u32* out_row, int out_width, bool write, const u32* modulus, u32 n0inv,
                           const u32* r2) {
    Slice n, a, b, k;
    load_slice(g, n, modulus, LIMBS, 0);
    load_slice(g, k, r2, LIMBS, 0);
    load_slice(g, a, a_row, a_width, 0);
    load_slice(g, b, b_row, b_width, 0);
    mont_mul(g, a, a, k, n, n0inv); /* a R mod n */
    mont_mul(g, a, b, a, n, n0inv); /* a b mod n */
    if (write) store_slice(g, out_row, out_width, a);
}

/* Window ``window`` of an exponent row of exponent_width words (zeros past it). */
DPHE_FN u32 exponent_digit(const u32* exponent_row, int exponent_width, int window_bits, int window) {
    int bit = window * window_bits;
    int word = bit / 32;
    int shift = bit % 32;
    u32 value = word < exponent_width ? exponent_row[word] >> shift : 0u;
    if (shift + window_bits > 32 && word + 1 < exponent_width) value |= exponent_row[word + 1] << (32 - shift);
    return value & ((1u << window_bits) - 1u);
}

/* out = prod_i entries[i, digit_i(e)] mod n: the fixed-base table walk, one Montgomery product per
 * window. entries is (windows, 2^window_bits, entry_width) words in normal form, each below n; the factor
 * R^-(windows - 1) the products leave is removed by one product with fix = R^windows mod n. */
DPHE_FN void walk_number(const Group& g, const u32* entries, int entry_width, int window_bits, int windows,
                         const u32* exponent_row, int exponent_width, u32* out_row, int out_width, bool write,
                         const u32* modulus, u32 n0inv, const u32* fix) {
    Slice n, acc, entry;
    load_slice(g, n, modulus, LIMBS, 0);
    u64 row_words = (u64)entry_width << window_bits;
    u32 digit = exponent_digit(exponent_row, exponent_width, window_bits, 0);
    load_slice(g, acc, entries + (u64)digit * entry_width, entry_width, 0);
    for (int i = 1; i < windows; ++i) {
        digit = exponent_digit(exponent_row, exponent_width, window_bits, i);
        load_slice(g, entry, entries + i * row_words + (u64)digit * entry_width, entry_width, 0);
        mont_mul(g, acc, acc, entry, n, n0inv);
    }
    load_slice(g, entry, fix, LIMBS, 0);
    mont_mul(g, acc, acc, entry, n, n0inv);
    if (write) store_slice(g, out_row, out_width, acc);
}

/* out[column] = prod_k values[k, column] mod n over ``rows`` rows of a (rows, count, width) array of
 * values below n; fix = R^rows mod n removes the R^-(rows - 1) the products leave. */
DPHE_FN void product_number(const Group& g, const u32* values, int width, int rows, int count, int column,
                            u32* out_row, int out_width, bool write, const u32* modulus, u32 n0inv,
                            const u32* fix) {
    Slice n, acc, value;
    load_slice(g, n, modulus, LIMBS, 0);
    load_slice(g, acc, values + (u64)column * width, width, 0);
    for (int k = 1; k < rows; ++k) {
        load_slice(g, value, values + ((u64)k * count + column) * width, width, 0);
        mont_mul(g, acc, acc, value, n, n0inv);
    }
    load_slice(g, value, fix, LIMBS, 0);
    mont_mul(g, acc, acc, value, n, n0inv);
    if (write) store_slice(g, out_row, out_width, acc);
}

/* out = m, the plaintext, from xp = c^(p-1) mod p^2 and xq = c^(q-1) mod q^2 (rows of xp_width and
 * xq_width words): m_p = L_p(xp) h_p mod p with L_p(x) = (x - 1) / p, likewise m_q, then Garner's step
 * m = m_p + ((m_q - m_p) p^-1 mod q) p. ``constants`` holds 7 numbers of LIMBS words: p, q, n, h_p R mod p,
 * h_q R mod q, p^-1 R mod q and p R mod n; p0inv, q0inv, n0inv are their -m^-1 mod 2^32. */
DPHE_FN void crt_number(const Group& g, const u32* xp_row, int xp_width, const u32* xq_row, int xq_width,
                        u32* out_row, int out_width, bool write, const u32* constants, u32 p0inv, u32 q0inv,
                        u32 n0inv) {
    Slice modulus, factor, x, one, mp, mq, a, b;
    set_small(g, one, 1u);
    load_slice(g, modulus, constants, LIMBS, 0); /* p */
    load_slice(g, x, xp_row, xp_width, 0);
    subtract_slices(g, x, x, one);
    exact_divide(g, x, x, modulus, p0inv);
    load_slice(g, factor, constants + 3 * LIMBS, LIMBS, 0);
    mont_mul(g, mp, x, factor, modulus, p0inv);
    load_slice(g, modulus, constants + LIMBS, LIMBS, 0); /* q */
    load_slice(g, x, xq_row, xq_width, 0);
    subtract_slices(g, x, x, one);
    exact_divide(g, x, x, modulus, q0inv);
    load_slice(g, factor, constants + 4 * LIMBS, LIMBS, 0);
    mont_mul(g, mq, x, factor, modulus, q0inv);
    load_slice(g, factor, constants + 5 * LIMBS, LIMBS, 0);
    mont_mul(g, a, mq, factor, modulus, q0inv);
    mont_mul(g, b, mp, factor, modulus, q0inv);
    mod_sub(g, a, a, b, modulus);
    load_slice(g, modulus, constants + 2 * LIMBS, LIMBS, 0); /* n */
    load_slice(g, factor, constants + 6 * LIMBS, LIMBS, 0);
    mont_mul(g, a, a, factor, modulus, n0inv);
    mod_add(g, a, a, mp, modulus);
    if (write) store_slice(g, out_row, out_width, a);
}

#endif /* DPHE_BIGINT_CUH */
