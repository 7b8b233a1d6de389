/* The CUDA kernels in their *device* form (bigint.cuh's __CUDACC__ branch, paillier_kernels.cu's entry
 * points), run on the CPU: every emulated GPU thread is a fiber (ucontext) with its own stack, a warp's 32
 * fibers meet at a barrier for each warp intrinsic, and the intrinsics follow the CUDA semantics of
 * width-limited shuffles and ballots (a source lane outside the caller's segment, or outside the mask,
 * aborts with a message). One OS thread runs the fibers of a warp in turn, from one intrinsic to the next:
 * switching fibers costs far less than waking 32 OS threads, so every configuration can be emulated.
 *
 * This checks what the host harness cannot: the group set-up (lane, segment base, mask), the shuffle and
 * ballot code, and the kernels' indexing and tail handling. Built by tests/test_cuda_core.py with
 *   c++ -std=c++20 -O1 -pthread -shared -fPIC -I backends/cuda -DDPHE_LIMBS=.. -DDPHE_TPI=..
 * Warps run one after another. Slow all the same: for small batches only.
 */
#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#define __CUDACC__ 1
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(threads, min_blocks)

struct EmulatedIndex {
    unsigned x, y, z;
};

static EmulatedIndex threadIdx, blockIdx, blockDim;

namespace emulator {

constexpr int WARP = 32;

[[noreturn]] void fail(const char* what, int lane) {
    std::fprintf(stderr, "warp emulator: %s (lane %d)\n", what, lane);
    std::fflush(stderr);
    std::abort();
}

constexpr size_t STACK_BYTES = 256 * 1024;

/* One warp: a fiber per lane, the scheduler's context, and what the lanes publish at an intrinsic. */
struct Warp {
    ucontext_t scheduler;
    ucontext_t fibers[WARP];
    std::vector<char> stacks[WARP];
    bool finished[WARP];
    bool waiting[WARP];
    unsigned long long values[WARP];
    unsigned masks[WARP];
    const std::function<void()>* body;
};

Warp* current = nullptr;
int running = -1; /* the warp lane whose fiber runs now */

int lane() { return running; }

/* Every lane waits here until all 32 have arrived (the scheduler resumes them together). */
void arrive_and_wait() {
    int me = lane();
    current->waiting[me] = true;
    swapcontext(&current->fibers[me], &current->scheduler);
}

/* Publishes this lane's value and mask; returns after every lane of the warp has published. */
void publish(unsigned mask, unsigned long long value) {
    int me = lane();
    if (!(mask >> me & 1u)) fail("a thread called a *_sync intrinsic with a mask that leaves it out", me);
    current->values[me] = value;
    current->masks[me] = mask;
    arrive_and_wait();
}

/* The value lane ``source`` published; it must be in the caller's mask and have used the same mask. */
unsigned long long peek(unsigned mask, int source) {
    if (!(mask >> source & 1u)) fail("an intrinsic read a lane outside the caller's mask", lane());
    if (current->masks[source] != mask) fail("lanes of one intrinsic used different masks", lane());
    return current->values[source];
}

/* Waits until every lane has read what it needs, so the next intrinsic may overwrite the values. */
void finish() { arrive_and_wait(); }

unsigned long long read(unsigned mask, int source) {
    unsigned long long value = peek(mask, source);
    finish();
    return value;
}

int segment_base(int width) {
    if (width <= 0 || width > WARP || (width & (width - 1))) fail("shuffle width must be a power of 2 <= 32", lane());
    return lane() & ~(width - 1);
}

}  // namespace emulator

template <typename T>
T __shfl_sync(unsigned mask, T value, int source, int width) {
    int base = emulator::segment_base(width);
    emulator::publish(mask, (unsigned long long)value);
    return (T)emulator::read(mask, base + source % width);
}

template <typename T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width) {
    int base = emulator::segment_base(width);
    emulator::publish(mask, (unsigned long long)value);
    int source = emulator::lane() + (int)delta;
    return (T)emulator::read(mask, source < base + width ? source : emulator::lane());
}

template <typename T>
T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width) {
    int base = emulator::segment_base(width);
    emulator::publish(mask, (unsigned long long)value);
    int source = emulator::lane() - (int)delta;
    return (T)emulator::read(mask, source >= base ? source : emulator::lane());
}

unsigned __ballot_sync(unsigned mask, int predicate) {
    emulator::publish(mask, predicate != 0);
    unsigned bits = 0;
    for (int other = 0; other < emulator::WARP; ++other) {
        if (mask >> other & 1u) bits |= (unsigned)(emulator::peek(mask, other) != 0) << other;
    }
    emulator::finish();
    return bits;
}

#include "paillier_kernels.cu"

namespace emulator {

void fiber_main() {
    (*current->body)();
    current->finished[running] = true;
} /* returns to the scheduler through uc_link */

/* Runs the 32 lanes of warp ``warp_index`` of block ``block`` from one intrinsic to the next until all end;
 * aborts if some lanes end while others wait at an intrinsic (threads of a warp that diverged). */
void run_warp(int block, int warp_index, int threads, const std::function<void()>& body) {
    Warp warp;
    warp.body = &body;
    current = &warp;
    for (int l = 0; l < WARP; ++l) {
        warp.stacks[l].resize(STACK_BYTES);
        warp.finished[l] = false;
        getcontext(&warp.fibers[l]);
        warp.fibers[l].uc_stack.ss_sp = warp.stacks[l].data();
        warp.fibers[l].uc_stack.ss_size = STACK_BYTES;
        warp.fibers[l].uc_link = &warp.scheduler;
        makecontext(&warp.fibers[l], fiber_main, 0);
    }
    blockIdx = {(unsigned)block, 0, 0};
    blockDim = {(unsigned)threads, 1, 1};
    for (;;) {
        int waiting = 0, finished = 0;
        for (int l = 0; l < WARP; ++l) {
            if (warp.finished[l]) continue;
            warp.waiting[l] = false;
            running = l;
            threadIdx = {(unsigned)(warp_index * WARP + l), 0, 0};
            swapcontext(&warp.scheduler, &warp.fibers[l]);
        }
        for (int l = 0; l < WARP; ++l) {
            finished += warp.finished[l];
            waiting += !warp.finished[l] && warp.waiting[l];
        }
        if (finished == WARP) break;
        if (waiting != WARP) fail("threads of a warp did not all reach the same intrinsic", -1);
    }
    current = nullptr;
    running = -1;
}

}  // namespace emulator

/* Runs ``kernel`` over a grid of ``blocks`` blocks of ``threads`` threads (a multiple of 32), warp by warp. */
template <typename Kernel, typename... Arguments>
static void run_grid(int blocks, int threads, Kernel kernel, Arguments... arguments) {
    if (threads <= 0 || threads % emulator::WARP) emulator::fail("blocks must be a multiple of 32 threads", -1);
    const std::function<void()> body = [&] { kernel(arguments...); };
    for (int block = 0; block < blocks; ++block) {
        for (int warp_index = 0; warp_index < threads / emulator::WARP; ++warp_index) {
            emulator::run_warp(block, warp_index, threads, body);
        }
    }
}

extern "C" {

int dphe_limbs(void) { return LIMBS; }

int dphe_threads_per_number(void) { return TPI; }

void emulate_dphe_powmod(int blocks, int threads, const u32* bases, int base_width, u32* out, int out_width, int count,
                         const u32* modulus, u32 n0inv, const u32* r2, const u32* r3, const u32* digits,
                         int digit_count) {
    run_grid(blocks, threads, dphe_powmod, bases, base_width, out, out_width, count, modulus, n0inv, r2, r3, digits,
             digit_count);
}

void emulate_dphe_mulmod(int blocks, int threads, const u32* a, int a_width, const u32* b, int b_width, u32* out,
                         int out_width, int count, const u32* modulus, u32 n0inv, const u32* r2) {
    run_grid(blocks, threads, dphe_mulmod, a, a_width, b, b_width, out, out_width, count, modulus, n0inv, r2);
}

void emulate_dphe_walk(int blocks, int threads, const u32* entries, int entry_width, int window_bits, int windows,
                       const u32* exponents, int exponent_width, u32* out, int out_width, int count,
                       const u32* modulus, u32 n0inv, const u32* fix) {
    run_grid(blocks, threads, dphe_walk, entries, entry_width, window_bits, windows, exponents, exponent_width, out,
             out_width, count, modulus, n0inv, fix);
}

void emulate_dphe_product(int blocks, int threads, const u32* values, int width, int rows, u32* out, int out_width,
                          int count, const u32* modulus, u32 n0inv, const u32* fix) {
    run_grid(blocks, threads, dphe_product, values, width, rows, out, out_width, count, modulus, n0inv, fix);
}

void emulate_dphe_crt(int blocks, int threads, const u32* xp, int xp_width, const u32* xq, int xq_width, u32* out,
                      int out_width, int count, const u32* constants, u32 p0inv, u32 q0inv, u32 n0inv) {
    run_grid(blocks, threads, dphe_crt, xp, xp_width, xq, xq_width, out, out_width, count, constants, p0inv, q0inv,
             n0inv);
}
}
