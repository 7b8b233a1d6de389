/* Host harness: the kernels of paillier_kernels.cu with the same arguments, run on the CPU.
 *
 * Built by the test suite with the host C++ compiler (-DDPHE_LIMBS=... -DDPHE_TPI=... -shared -fPIC) and
 * called through ctypes. Each function loops over the numbers of the batch; bigint.cuh runs the TPI lanes
 * of each group in lockstep, so this is the kernels' arithmetic, lane exchanges included, without a GPU.
 */
#include "bigint.cuh"

extern "C" {

int dphe_limbs(void) { return LIMBS; }

int dphe_threads_per_number(void) { return TPI; }

void dphe_powmod(const u32* bases, int base_width, u32* out, int out_width, int count, const u32* modulus, u32 n0inv,
                 const u32* r2, const u32* r3, const u32* digits, int digit_count) {
    Group g = {0};
    for (long long i = 0; i < count; ++i) {
        powmod_number(g, bases + i * base_width, base_width, out + i * out_width, out_width, true, modulus, n0inv,
                      r2, r3, digits, digit_count);
    }
}

void dphe_mulmod(const u32* a, int a_width, const u32* b, int b_width, u32* out, int out_width, int count,
                 const u32* modulus, u32 n0inv, const u32* r2) {
    Group g = {0};
    for (long long i = 0; i < count; ++i) {
        mulmod_number(g, a + i * a_width, a_width, b + i * b_width, b_width, out + i * out_width, out_width, true,
                      modulus, n0inv, r2);
    }
}

void dphe_walk(const u32* entries, int entry_width, int window_bits, int windows, const u32* exponents,
               int exponent_width, u32* out, int out_width, int count, const u32* modulus, u32 n0inv,
               const u32* fix) {
    Group g = {0};
    for (long long i = 0; i < count; ++i) {
        walk_number(g, entries, entry_width, window_bits, windows, exponents + i * exponent_width, exponent_width,
                    out + i * out_width, out_width, true, modulus, n0inv, fix);
    }
}

void dphe_product(const u32* values, int width, int rows, u32* out, int out_width, int count, const u32* modulus,
                  u32 n0inv, const u32* fix) {
    Group g = {0};
    for (int i = 0; i < count; ++i) {
        product_number(g, values, width, rows, count, i, out + (long long)i * out_width, out_width, true, modulus,
                       n0inv, fix);
    }
}

void dphe_crt(const u32* xp, int xp_width, const u32* xq, int xq_width, u32* out, int out_width, int count,
              const u32* constants, u32 p0inv, u32 q0inv, u32 n0inv) {
    Group g = {0};
    for (long long i = 0; i < count; ++i) {
        crt_number(g, xp + i * xp_width, xp_width, xq + i * xq_width, xq_width, out + i * out_width, out_width, true,
                   constants, p0inv, q0inv, n0inv);
    }
}

/* r = a * b / R mod n for single numbers of LIMBS words (a < R, b < n): the Montgomery product alone. */
void dphe_mont_mul(const u32* a, const u32* b, u32* out, const u32* modulus, u32 n0inv) {
    Group g = {0};
    Slice x, y, n;
    load_slice(g, x, a, LIMBS, 0);
    load_slice(g, y, b, LIMBS, 0);
    load_slice(g, n, modulus, LIMBS, 0);
    mont_mul(g, x, x, y, n, n0inv);
    store_slice(g, out, LIMBS, x);
}

}
