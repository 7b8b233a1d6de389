/* CUDA kernels of the ``cupy`` backend: one launch per batch, TPI threads per number.
 *
 * Compiled by cupy.RawModule (NVRTC) with -DDPHE_LIMBS=... -DDPHE_TPI=... for the configuration the modulus
 * needs (see dphe_bench.backends.cuda_layout), and by nvcc -cubin in the test suite. Blocks must be a
 * multiple of 32 threads. Threads of the last block past ``count`` numbers compute on the last number and
 * write nothing, so every lane of a group always takes part in its shuffles.
 *
 * Batches are item-major uint32 arrays (count, width), least significant limb first.
 */
#include "bigint.cuh"

/* This thread's group, and the number it works on (clamped to count - 1; *active is false past it). */
DPHE_FN Group this_group(int count, long long* number, bool* active) {
    Group g;
    g.lane = threadIdx.x % TPI;
    g.base = (threadIdx.x % 32) - g.lane;
    g.mask = (TPI == 32 ? 0xFFFFFFFFu : ((1u << (TPI % 32)) - 1u)) << g.base;
    long long index = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / TPI;
    *active = index < count;
    *number = *active ? index : (long long)count - 1;
    return g;
}

extern "C" __global__ void dphe_powmod(const u32* bases, int base_width, u32* out, int out_width, int count,
                                       const u32* modulus, u32 n0inv, const u32* r2, const u32* r3,
                                       const u32* digits, int digit_count) {
    long long i;
    bool active;
    Group g = this_group(count, &i, &active);
    powmod_number(g, bases + i * base_width, base_width, out + i * out_width, out_width, active, modulus, n0inv,
                  r2, r3, digits, digit_count);
}

extern "C" __global__ void dphe_mulmod(const u32* a, int a_width, const u32* b, int b_width, u32* out,
                                       int out_width, int count, const u32* modulus, u32 n0inv, const u32* r2) {
    long long i;
    bool active;
    Group g = this_group(count, &i, &active);
    mulmod_number(g, a + i * a_width, a_width, b + i * b_width, b_width, out + i * out_width, out_width, active,
                  modulus, n0inv, r2);
}

extern "C" __global__ void dphe_walk(const u32* entries, int entry_width, int window_bits, int windows,
                                     const u32* exponents, int exponent_width, u32* out, int out_width, int count,
                                     const u32* modulus, u32 n0inv, const u32* fix) {
    long long i;
    bool active;
    Group g = this_group(count, &i, &active);
    walk_number(g, entries, entry_width, window_bits, windows, exponents + i * exponent_width, exponent_width,
                out + i * out_width, out_width, active, modulus, n0inv, fix);
}

extern "C" __global__ void dphe_product(const u32* values, int width, int rows, u32* out, int out_width, int count,
                                        const u32* modulus, u32 n0inv, const u32* fix) {
    long long i;
    bool active;
    Group g = this_group(count, &i, &active);
    product_number(g, values, width, rows, count, (int)i, out + i * out_width, out_width, active, modulus, n0inv,
                   fix);
}

extern "C" __global__ void dphe_crt(const u32* xp, int xp_width, const u32* xq, int xq_width, u32* out, int out_width,
                                    int count, const u32* constants, u32 p0inv, u32 q0inv, u32 n0inv) {
    long long i;
    bool active;
    Group g = this_group(count, &i, &active);
    crt_number(g, xp + i * xp_width, xp_width, xq + i * xq_width, xq_width, out + i * out_width, out_width, active,
               constants, p0inv, q0inv, n0inv);
}
