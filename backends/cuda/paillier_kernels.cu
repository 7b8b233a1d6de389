/* CUDA kernels of the ``cupy`` backend: one launch per batch, TPI threads per number.
 *
 * Compiled by cupy.RawModule (NVRTC) with -DDPHE_LIMBS=... -DDPHE_TPI=... for the configuration the modulus
 * needs (see dphe_bench.backends.cuda_layout), and by nvcc -cubin in the test suite. Blocks must be a
 * multiple of 32 threads and at most DPHE_MAX_BLOCK threads (__launch_bounds__: the compiler keeps the
 * registers per thread low enough for such a block to launch). The second bound, one block per SM, keeps
 * ptxas from trading registers for occupancy: with the first bound alone, NVRTC 13.5 caps powmod and walk
 * at 80 registers and spills. Threads of the last block past ``count``
 * numbers compute on the last number and write nothing, so every lane of a group always takes part in its
 * shuffles.
 *
 * Batches are item-major uint32 arrays (count, width), least significant limb first. Read-only inputs are
 * ``const u32* __restrict__`` and no output overlaps an input, so the compiler may load them through the
 * read-only data path (rows have any width, so loads stay per word).
 */
#include "bigint.cuh"

#ifndef DPHE_MAX_BLOCK
#error "compile with -DDPHE_MAX_BLOCK=<most threads per block>"
#endif

#define DPHE_KERNEL extern "C" __global__ void __launch_bounds__(DPHE_MAX_BLOCK, 1)
typedef const u32* __restrict__ In;
typedef u32* __restrict__ Out;

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

DPHE_KERNEL dphe_powmod(In bases, int base_width, Out out, int out_width, int count, In modulus, u32 n0inv, In r2,
                        In r3, In digits, int digit_count) {
    long long i;
    bool active;
    Group g = this_group(count, &i, &active);
    powmod_number(g, bases + i * base_width, base_width, out + i * out_width, out_width, active, modulus, n0inv,
                  r2, r3, digits, digit_count);
}

DPHE_KERNEL dphe_mulmod(In a, int a_width, In b, int b_width, Out out, int out_width, int count, In modulus,
                        u32 n0inv, In r2) {
    long long i;
    bool active;
    Group g = this_group(count, &i, &active);
    mulmod_number(g, a + i * a_width, a_width, b + i * b_width, b_width, out + i * out_width, out_width, active,
                  modulus, n0inv, r2);
}

DPHE_KERNEL dphe_walk(In entries, int entry_width, int window_bits, int windows, In exponents, int exponent_width,
                      Out out, int out_width, int count, In modulus, u32 n0inv, In fix) {
    long long i;
    bool active;
    Group g = this_group(count, &i, &active);
    walk_number(g, entries, entry_width, window_bits, windows, exponents + i * exponent_width, exponent_width,
                out + i * out_width, out_width, active, modulus, n0inv, fix);
}

DPHE_KERNEL dphe_product(In values, int width, int rows, Out out, int out_width, int count, In modulus, u32 n0inv,
                         In fix) {
    long long i;
    bool active;
    Group g = this_group(count, &i, &active);
    product_number(g, values, width, rows, count, (int)i, out + i * out_width, out_width, active, modulus, n0inv,
                   fix);
}

DPHE_KERNEL dphe_crt(In xp, int xp_width, In xq, int xq_width, Out out, int out_width, int count, In constants,
                     u32 p0inv, u32 q0inv, u32 n0inv) {
    long long i;
    bool active;
    Group g = this_group(count, &i, &active);
    crt_number(g, xp + i * xp_width, xp_width, xq + i * xq_width, xq_width, out + i * out_width, out_width, active,
               constants, p0inv, q0inv, n0inv);
}
