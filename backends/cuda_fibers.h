// The fiber runtime under cuda_compat.h: runs a CUDA launch on the host, every CUDA thread a
// fiber, so that kernels with __syncthreads, __shared__, warp shuffles, atomics and a
// cooperative grid.sync() run in CI exactly as written (no GPU there).
//
// Model
//   * A block runs on one OS thread: its threads are fibers (own stack, own registers), and a
//     scheduler on that OS thread resumes them one at a time. A fiber runs until it parks (at a
//     block barrier, a warp operation or grid.sync) or returns. Static __shared__ variables are
//     `static thread_local` (cuda_compat.h), so they are per block because an OS thread runs one
//     block at a time; dynamic shared memory (DYNAMIC_SHARED) is a per-OS-thread buffer that
//     ends at a guard page, filled with 0xFF bytes (NaN for floats) at each block's start,
//     since a GPU does not clear it either. Static __shared__ is zeros in an OS thread's first
//     block and then keeps what the last block run on that OS thread left (its bounds are not
//     checked): a kernel whose blocks write the same values as an earlier launch's may read
//     them there despite a missing barrier, depending on which OS thread takes which block.
//   * Blocks run concurrently on a pool of OS threads (the calling thread is one of them):
//     min(blocks, $LSTM_ENGINE_EMU_THREADS or max(2, cores)) for a normal launch, one per block
//     for a cooperative one (grid.sync() needs every block resident, as on a GPU). Atomics are
//     real atomics, so blocks racing on global memory race here too.
//   * Schedule order: the scheduler resumes the runnable fibers of a block in rounds, in thread
//     order (forward), reverse thread order, or a seeded random permutation per round; blocks
//     are taken in the same order. $LSTM_ENGINE_EMU_ORDER = forward | reverse | random[:seed],
//     or the launch's own `order`/`seed`. A kernel that misses a barrier reads stale shared
//     memory under some order: run kernel tests under several.
//
// Rules checked (each failure prints "cuda emulator: <kernel>: ..." and aborts the process):
//   * __syncthreads(): opens when every live (not yet returned) thread of the block waits at a
//     block barrier; a returned thread counts as arrived. If they wait at different barrier
//     call sites (source file and line), that is a barrier in divergent code: abort, naming a
//     thread at each site. __syncthreads_count/_and/_or and this_thread_block().sync() are the
//     same barrier.
//   * Deadlock: every live thread of a block waits, but not all at one kind of barrier (some at
//     __syncthreads, some in a warp operation or grid.sync): abort, listing where each waits.
//   * Warp operations (__shfl*_sync, __syncwarp, __ballot/__any/__all_sync): a lane's mask must
//     include the lane itself and name only lanes that exist; the operation completes when
//     every lane of the mask is in a warp operation with the same mask, and all must be the
//     same operation. A shuffle or vote whose mask names a lane that has returned aborts (its
//     value would be undefined on a GPU); __syncwarp allows returned lanes (as documented). A
//     shuffle that reads a lane outside its mask aborts too. Shuffle width must be a power of
//     two from 1 to 32; source lanes follow PTX shfl.sync exactly (segments of `width` lanes;
//     up/down do not wrap, out-of-range reads give the lane's own value; idx wraps modulo width;
//     xor may read an earlier segment but not a later one).
//   * grid.sync(): only in a cooperative launch; every thread of the grid must reach it (the
//     CUDA implementation waits for each block's first thread, so a returned thread may hang a
//     GPU): a thread that has returned while others wait there aborts, as does a block that
//     finishes while another block waits.
//   * Fiber stacks ($LSTM_ENGINE_EMU_STACK_KB, default 256) are mmap'ed with a PROT_NONE guard
//     page below; overflowing one aborts with a message instead of corrupting memory. So does
//     an access just past the end of the dynamic shared memory.
//   * Launch limits as on a GPU: at most 1024 threads per block, block.z <= 64, grid.y/z <=
//     65535; a cooperative grid at most 1024 blocks and 32768 threads (all their stacks live).
//
// Context switches: on x86-64 a few instructions (callee-saved registers, MXCSR, x87 control
// word, stack pointer), without the signal-mask system call that swapcontext() makes (about 12x
// faster here); elsewhere (or with -DEMU_FIBERS_UCONTEXT) ucontext.
//
// Not emulated: a weak memory model within a block (a fiber's writes are visible to the others
// as soon as it parks or returns, so a missing __threadfence between blocks goes unseen);
// warps executing in lockstep (threads interleave only at barriers and warp operations, so
// races between threads that never synchronise show only through schedule order); timing;
// warp-synchronous code without *_sync intrinsics; __activemask; clusters, tensor cores, async
// copies; see cuda_compat.h for the API that builds.
#pragma once

// C++ headers kept few and light (pthreads rather than <thread>/<mutex>): every kernel library
// and every "does this build" test parses this header.
#include <atomic>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <utility>
#include <vector>

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#if !defined(__x86_64__) || defined(EMU_FIBERS_UCONTEXT)
#define EMU_FIBERS_USE_UCONTEXT 1
#include <ucontext.h>
#endif

struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

// The CUDA built-in index variables: set by the scheduler each time it resumes a fiber.
inline thread_local dim3 threadIdx(0, 0, 0);
inline thread_local dim3 blockIdx(0, 0, 0);
inline thread_local dim3 blockDim(1, 1, 1);
inline thread_local dim3 gridDim(1, 1, 1);

extern "C" {
// One launch's configuration, as the generated entry points receive it (a C struct, so that
// Python fills it through ctypes). order: 0 = $LSTM_ENGINE_EMU_ORDER, 1 forward, 2 reverse,
// 3 random with `seed`.
struct emu_launch_config {
    unsigned int grid[3];
    unsigned int block[3];
    unsigned long long shared_bytes;
    int cooperative;
    int order;
    unsigned long long seed;
};
}

namespace emu {

struct Lock {
    pthread_mutex_t& m;
    explicit Lock(pthread_mutex_t& m_) : m(m_) { pthread_mutex_lock(&m); }
    ~Lock() { pthread_mutex_unlock(&m); }
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;
};

enum class Order : int { from_env = 0, forward = 1, reverse = 2, random = 3 };
enum class Wait : unsigned char { none, block_barrier, warp, grid, exited };
enum class WarpOp : unsigned char { sync, shfl_idx, shfl_up, shfl_down, shfl_xor, ballot, any, all };

inline const char* warp_op_name(WarpOp op) {
    switch (op) {
        case WarpOp::sync: return "__syncwarp";
        case WarpOp::shfl_idx: return "__shfl_sync";
        case WarpOp::shfl_up: return "__shfl_up_sync";
        case WarpOp::shfl_down: return "__shfl_down_sync";
        case WarpOp::shfl_xor: return "__shfl_xor_sync";
        case WarpOp::ballot: return "__ballot_sync";
        case WarpOp::any: return "__any_sync";
        case WarpOp::all: return "__all_sync";
    }
    return "?";
}

struct Block;
struct Launch;

// A suspended execution context: a saved stack pointer (the x86-64 switch below keeps the rest
// on the stack), or a ucontext.
#ifdef EMU_FIBERS_USE_UCONTEXT
using Context = ucontext_t;
#else
using Context = void*;
#endif

struct Fiber {
    Context context{};              // while not running
    bool started = false;           // has a stack and a context (from its first resume on)
    char* stack = nullptr;          // its stack's mapping (a guard page, then stack_size bytes)
    size_t stack_size = 0;
    Block* block = nullptr;
    dim3 tid;
    unsigned linear = 0, warp = 0, lane = 0;
    Wait wait = Wait::none;
    const char* site_file = "";     // where it waits (block barriers and grid.sync)
    int site_line = 0;
    WarpOp op = WarpOp::sync;       // the warp operation it waits in, and its operands
    unsigned mask = 0;
    int operand = 0, width = 32;
    unsigned long long value = 0, result = 0;
    int predicate = 0;
};

struct Block {
    Launch* launch = nullptr;
    dim3 idx;
    unsigned linear = 0;
    Fiber* fibers = nullptr;        // n_threads of them
    unsigned n_threads = 0, live = 0, exited = 0;
    unsigned in_warp_op[32] = {};   // lanes of each warp waiting in a warp operation
    unsigned long long rng = 0;
};

struct Launch {
    const char* name = "";
    dim3 grid, block;
    unsigned n_blocks = 0, n_threads = 0;
    size_t shared_bytes = 0;
    bool cooperative = false;
    Order order = Order::forward;
    unsigned long long seed = 0;
    void (*invoke)(void*) = nullptr; // runs the kernel with its arguments for the current fiber
    void* call = nullptr;
    std::vector<unsigned> block_order;
    std::atomic<unsigned> next_block{0};
    // the grid barrier of cooperative launches
    pthread_mutex_t grid_mutex = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t grid_cv = PTHREAD_COND_INITIALIZER;
    unsigned grid_arrived = 0, grid_generation = 0, blocks_finished = 0;
};

// Counters since the library was loaded: context switches and what caused them.
struct Stats {
    std::atomic<unsigned long long> switches{0}, fibers{0}, block_barriers{0}, warp_ops{0},
        grid_syncs{0}, launches{0};
};
inline Stats& stats() {
    static Stats s;
    return s;
}

// -- failing loudly ---------------------------------------------------------------------------
inline thread_local const char* tls_kernel_name = "";

[[noreturn]] inline void fail(const char* fmt, ...) {
    char message[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    fprintf(stderr, "cuda emulator: %s: %s\n", tls_kernel_name, message);
    fflush(stderr);
    abort();
}

struct ThreadName {
    char text[96];
};
inline ThreadName describe_thread(const Fiber& f) {
    ThreadName name;
    snprintf(name.text, sizeof name.text, "thread (%u,%u,%u) of block (%u,%u,%u)", f.tid.x, f.tid.y, f.tid.z,
             f.block->idx.x, f.block->idx.y, f.block->idx.z);
    return name;
}

// -- guard pages: fiber stacks and dynamic shared memory ------------------------------------------
enum GuardKind : int { kStackGuard = 0, kSharedGuard = 1 };
struct GuardRange {
    std::atomic<uintptr_t> lo{0}, hi{0};
    std::atomic<int> kind{kStackGuard};
};
constexpr int kMaxGuards = 1 << 16;
inline GuardRange* guard_ranges() {
    static GuardRange ranges[kMaxGuards];
    return ranges;
}
inline std::atomic<int>& guard_count() {
    static std::atomic<int> n{0};
    return n;
}

inline struct sigaction& previous_segv_action() {
    static struct sigaction previous;
    return previous;
}

// A fault inside a guard page is a fiber stack overflow, or an access past the end of the
// launch's dynamic shared memory: say which and abort. Any other fault goes to the handler that
// was there before (Python's faulthandler, or the default action).
inline void segv_handler(int sig, siginfo_t* info, void* uctx) {
    uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
    int n = guard_count().load(std::memory_order_acquire);
    for (int k = 0; k < n && k < kMaxGuards; ++k) {
        GuardRange& g = guard_ranges()[k];
        if (addr >= g.lo.load(std::memory_order_relaxed) && addr < g.hi.load(std::memory_order_relaxed)) {
            static const char stack[] =
                "cuda emulator: a CUDA thread overflowed its fiber stack (guard page hit); "
                "raise LSTM_ENGINE_EMU_STACK_KB or use less local memory\n";
            static const char shared[] =
                "cuda emulator: a CUDA thread accessed past the end of the launch's dynamic shared "
                "memory (guard page hit)\n";
            const bool is_stack = g.kind.load(std::memory_order_relaxed) == kStackGuard;
            ssize_t ignored = is_stack ? write(2, stack, sizeof stack - 1) : write(2, shared, sizeof shared - 1);
            (void)ignored;
            signal(SIGABRT, SIG_DFL);
            abort();
        }
    }
    struct sigaction& prev = previous_segv_action();
    if (prev.sa_flags & SA_SIGINFO) {
        if (prev.sa_sigaction) {
            prev.sa_sigaction(sig, info, uctx);
            return;
        }
    } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
        prev.sa_handler(sig);
        return;
    }
    sigaction(SIGSEGV, &prev, nullptr);   // return: the fault repeats under the old action
}

// The handler runs on an alternate stack (the faulting one is the guard page): each OS thread
// that runs fibers gets one unless it has one already (Python's faulthandler sets its own).
inline void ensure_overflow_handler() {
    static pthread_once_t installed = PTHREAD_ONCE_INIT;
    pthread_once(&installed, [] {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = segv_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &previous_segv_action());
    });
    thread_local bool has_altstack = false;
    if (!has_altstack) {
        stack_t current;
        if (sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE)) {
            stack_t alt;
            alt.ss_size = 64 * 1024;
            alt.ss_sp = malloc(alt.ss_size);   // kept for the thread's life
            alt.ss_flags = 0;
            if (alt.ss_sp) sigaltstack(&alt, nullptr);
        }
        has_altstack = true;
    }
}

inline size_t page_size() {
    static const size_t size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return size;
}

inline size_t fiber_stack_size() {
    static const size_t size = [] {
        const char* env = getenv("LSTM_ENGINE_EMU_STACK_KB");
        long kb = env && *env ? strtol(env, nullptr, 10) : 256;
        if (kb < 16) kb = 16;
        size_t bytes = static_cast<size_t>(kb) * 1024;
        return (bytes + page_size() - 1) / page_size() * page_size();
    }();
    return size;
}

struct Stack {
    char* base;     // start of the mapping (the guard page)
    size_t size;    // usable bytes above the guard page
};

inline int add_guard(const void* page, GuardKind kind) {
    int k = guard_count().fetch_add(1);
    if (k < kMaxGuards) {
        guard_ranges()[k].kind.store(kind, std::memory_order_relaxed);
        guard_ranges()[k].lo.store(reinterpret_cast<uintptr_t>(page), std::memory_order_relaxed);
        guard_ranges()[k].hi.store(reinterpret_cast<uintptr_t>(page) + page_size(), std::memory_order_release);
    }
    return k;
}

inline Stack map_stack() {
    const size_t usable = fiber_stack_size(), guard = page_size();
    void* p = mmap(nullptr, usable + guard, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) fail("cannot map a fiber stack of %zu bytes", usable + guard);
    if (mprotect(p, guard, PROT_NONE) != 0) fail("cannot protect a fiber stack's guard page");
    add_guard(p, kStackGuard);
    return Stack{static_cast<char*>(p), usable};
}

// A block's dynamic shared memory: `bytes` (rounded up to 16) ending right at a guard page, so
// that running past its end faults; filled with 0xFF bytes (NaN floats) at each block's start.
struct SharedArena {
    char* map = nullptr;
    size_t map_size = 0;
    int guard = -1;
    unsigned char* data = nullptr;

    unsigned char* prepare(size_t bytes) {
        const size_t used = (bytes + 15) / 16 * 16, pages = (used + page_size() - 1) / page_size() * page_size();
        if (pages + page_size() > map_size) {   // grows only: a smaller request ends at the same guard
            if (map) {
                if (guard >= 0 && guard < kMaxGuards) {
                    guard_ranges()[guard].lo.store(0, std::memory_order_relaxed);
                    guard_ranges()[guard].hi.store(0, std::memory_order_release);
                }
                munmap(map, map_size);
            }
            map_size = pages + page_size();
            void* p = mmap(nullptr, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) fail("cannot map %zu bytes of dynamic shared memory", bytes);
            map = static_cast<char*>(p);
            if (mprotect(map + pages, page_size(), PROT_NONE) != 0) fail("cannot protect a guard page");
            guard = add_guard(map + pages, kSharedGuard);
        }
        data = reinterpret_cast<unsigned char*>(map + map_size - page_size() - used);
        memset(data, 0xFF, used);
        return data;
    }
};

// -- the context switch ---------------------------------------------------------------------------
#ifndef EMU_FIBERS_USE_UCONTEXT
// switch_stack(&save, next): pushes the callee-saved state (rbp, rbx, r12-r15, MXCSR, x87 control
// word) on the current stack, stores the stack pointer in *save, loads `next` and pops the state
// saved there. A new fiber's stack is laid out as if it had been switched away from just before
// entering fiber_start(). No system call, unlike swapcontext().
__attribute__((naked, noinline)) static void switch_stack(void** /*save*/, void* /*next*/) {
    asm("pushq %rbp\n\t"
        "pushq %rbx\n\t"
        "pushq %r12\n\t"
        "pushq %r13\n\t"
        "pushq %r14\n\t"
        "pushq %r15\n\t"
        "subq $8, %rsp\n\t"
        "stmxcsr (%rsp)\n\t"
        "fnstcw 4(%rsp)\n\t"
        "movq %rsp, (%rdi)\n\t"
        "movq %rsi, %rsp\n\t"
        "ldmxcsr (%rsp)\n\t"
        "fldcw 4(%rsp)\n\t"
        "addq $8, %rsp\n\t"
        "popq %r15\n\t"
        "popq %r14\n\t"
        "popq %r13\n\t"
        "popq %r12\n\t"
        "popq %rbx\n\t"
        "popq %rbp\n\t"
        "ret\n\t");
}
#endif

// Saves the running context in `save` and continues `next`. The compiler barriers make kernel
// code reload what another fiber may have written meanwhile (shared memory, threadIdx).
inline void jump(Context& save, Context& next) {
    asm volatile("" ::: "memory");
#ifdef EMU_FIBERS_USE_UCONTEXT
    swapcontext(&save, &next);
#else
    switch_stack(&save, next);
#endif
    asm volatile("" ::: "memory");
}

// What each OS thread that runs blocks keeps.
struct Worker {
    Context scheduler{};
    Fiber* current = nullptr;
    // Stacks not in use: a fiber takes one at its first resume and gives it back when it returns,
    // so threads that never wait (pointwise kernels) all run on one cache-hot stack.
    std::vector<Stack> free_stacks;
    std::vector<Fiber> fibers;
    std::vector<unsigned> round;             // the order of one scheduling round
    SharedArena dynamic_shared;              // this thread's dynamic shared memory
    unsigned long long switches = 0;
};

inline Worker& worker() {
    thread_local Worker w;
    return w;
}

inline void fiber_start();
inline void prepare_fiber(Fiber& f);

inline void resume(Worker& w, Fiber& f) {
    if (!f.started) {
        Stack stack;
        if (w.free_stacks.empty()) {
            stack = map_stack();
        } else {
            stack = w.free_stacks.back();
            w.free_stacks.pop_back();
        }
        f.stack = stack.base;
        f.stack_size = stack.size;
        prepare_fiber(f);
        f.started = true;
    }
    w.current = &f;
    threadIdx = f.tid;
    w.switches += 2;   // in and back out
    jump(w.scheduler, f.context);
    w.current = nullptr;
}

// Called on the fiber: back to the scheduler until it resumes this fiber.
inline void park(Worker& w, Fiber& f) {
    jump(f.context, w.scheduler);
    // Kernel code re-reads threadIdx after this call (the compiler cannot keep it across the
    // switch); the scheduler set it for this fiber before resuming it.
}

inline void prepare_fiber(Fiber& f) {
#ifdef EMU_FIBERS_USE_UCONTEXT
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack + page_size();
    f.context.uc_stack.ss_size = f.stack_size;
    f.context.uc_link = nullptr;
    makecontext(&f.context, reinterpret_cast<void (*)()>(&fiber_start), 0);
#else
    // From the top: a zero "return address" of fiber_start (never used), fiber_start as the
    // address switch_stack returns to, six zeroed registers, and this thread's MXCSR and x87
    // control word. fiber_start then begins with rsp % 16 == 8, as after a call.
    uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack) + page_size() + f.stack_size) & ~uintptr_t(15);
    void** sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;
    *--sp = reinterpret_cast<void*>(&fiber_start);
    for (int k = 0; k < 6; ++k) *--sp = nullptr;
    --sp;
    unsigned int mxcsr;
    unsigned short fpcw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpcw));
    memcpy(reinterpret_cast<char*>(sp), &mxcsr, 4);
    memcpy(reinterpret_cast<char*>(sp) + 4, &fpcw, 2);
    f.context = sp;
#endif
}

// -- warps ----------------------------------------------------------------------------------------
inline unsigned lanes_in_warp(const Block& b, unsigned warp) {
    unsigned first = warp * 32;
    return b.n_threads - first < 32 ? b.n_threads - first : 32;
}

// The lane a shuffle reads, exactly as PTX shfl.sync defines it (c = ((32 - width) << 8) |
// (up ? 0 : 31)); `lane` itself where the source is out of range.
inline int shuffle_source(WarpOp op, int lane, int b, int width) {
    const int segmask = (32 - width) & 31;
    const int cval = op == WarpOp::shfl_up ? 0 : 31;
    const int max_lane = (lane & segmask) | (cval & ~segmask);
    const int min_lane = lane & segmask;
    const int bval = b & 31;
    int j = lane;
    bool in_range = false;
    switch (op) {
        case WarpOp::shfl_up: j = lane - bval; in_range = j >= max_lane; break;
        case WarpOp::shfl_down: j = lane + bval; in_range = j <= max_lane; break;
        case WarpOp::shfl_xor: j = lane ^ bval; in_range = j <= max_lane; break;
        case WarpOp::shfl_idx: j = min_lane | (bval & ~segmask); in_range = j <= max_lane; break;
        default: break;
    }
    return in_range ? j : lane;
}

// Completes the warp operation of the lanes in `mask` if every one of them is there; returns
// whether it did. Aborts on what a GPU would leave undefined.
inline bool try_complete_warp_op(Block& b, unsigned warp, unsigned mask) {
    Fiber* lanes = b.fibers + warp * 32;
    const unsigned n = lanes_in_warp(b, warp);
    const Fiber* first = nullptr;
    for (unsigned l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        const Fiber& f = lanes[l];   // l < n: checked when the mask was first used
        if (f.wait == Wait::exited) continue;
        if (f.wait != Wait::warp || f.mask != mask) return false;
        if (!first) first = &f;
        if (f.op != first->op)
            fail("lanes %u and %u of warp %u (block (%u,%u,%u)) meet with mask 0x%08x in different "
                 "warp operations: %s and %s", first->lane, l, warp, b.idx.x, b.idx.y, b.idx.z, mask,
                 warp_op_name(first->op), warp_op_name(f.op));
    }
    if (!first) return false;
    const WarpOp op = first->op;
    if (op != WarpOp::sync) {
        for (unsigned l = 0; l < n; ++l)
            if ((mask >> l & 1u) && lanes[l].wait == Wait::exited)
                fail("%s with mask 0x%08x in warp %u of block (%u,%u,%u) names lane %u, which has "
                     "returned (its value is undefined on a GPU)", warp_op_name(op), mask, warp,
                     b.idx.x, b.idx.y, b.idx.z, l);
    }
    unsigned long long votes = 0;
    if (op == WarpOp::ballot || op == WarpOp::any || op == WarpOp::all) {
        for (unsigned l = 0; l < n; ++l)
            if ((mask >> l & 1u) && lanes[l].predicate) votes |= 1ull << l;
    }
    for (unsigned l = 0; l < n; ++l) {
        if (!(mask >> l & 1u) || lanes[l].wait == Wait::exited) continue;
        Fiber& f = lanes[l];
        switch (op) {
            case WarpOp::sync: f.result = 0; break;
            case WarpOp::ballot: f.result = votes; break;
            case WarpOp::any: f.result = votes != 0; break;
            case WarpOp::all: f.result = votes == mask; break;
            default: {
                int src = shuffle_source(op, static_cast<int>(l), f.operand, f.width);
                if (!(mask >> src & 1u))
                    fail("%s in warp %u of block (%u,%u,%u): lane %u reads lane %d, which is not in "
                         "its mask 0x%08x (the value is undefined on a GPU)", warp_op_name(op), warp,
                         b.idx.x, b.idx.y, b.idx.z, l, src, mask);
                f.result = lanes[src].value;
            }
        }
    }
    for (unsigned l = 0; l < n; ++l)
        if ((mask >> l & 1u) && lanes[l].wait == Wait::warp) {
            lanes[l].wait = Wait::none;
            --b.in_warp_op[warp];
        }
    return true;
}

// A warp operation of the current fiber: deposit, complete the group or wait for it.
inline unsigned long long warp_op(WarpOp op, unsigned mask, unsigned long long value, int operand,
                                  int width, int predicate) {
    Worker& w = worker();
    Fiber& me = *w.current;
    Block& b = *me.block;
    stats().warp_ops.fetch_add(1, std::memory_order_relaxed);
    if (!(mask >> me.lane & 1u))
        fail("%s with mask 0x%08x called by %s (lane %u), which is not in the mask", warp_op_name(op),
             mask, describe_thread(me).text, me.lane);
    const unsigned n = lanes_in_warp(b, me.warp);
    if (n < 32 && (mask >> n) != 0)
        fail("%s with mask 0x%08x in warp %u of a block of %u threads names lanes that do not exist "
             "(the warp has %u)", warp_op_name(op), mask, me.warp, b.n_threads, n);
    if (op >= WarpOp::shfl_idx && op <= WarpOp::shfl_xor && (width < 1 || width > 32 || (width & (width - 1))))
        fail("%s width %d: must be a power of two from 1 to 32", warp_op_name(op), width);
    me.op = op;
    me.mask = mask;
    me.value = value;
    me.operand = operand;
    me.width = width;
    me.predicate = predicate;
    me.wait = Wait::warp;
    ++b.in_warp_op[me.warp];
    if (!try_complete_warp_op(b, me.warp, mask)) park(w, me);
    return me.result;
}

// -- block barriers and grid.sync -------------------------------------------------------------------
// Returns (live threads << 32) | how many of them passed a non-zero predicate.
inline unsigned long long block_barrier(const char* file, int line, int predicate) {
    Worker& w = worker();
    Fiber& me = *w.current;
    me.wait = Wait::block_barrier;
    me.site_file = file;
    me.site_line = line;
    me.predicate = predicate;
    park(w, me);
    return me.result;
}

inline void grid_sync(const char* file, int line) {
    Worker& w = worker();
    Fiber& me = *w.current;
    if (!me.block->launch->cooperative)
        fail("grid.sync() at %s:%d in a launch that is not cooperative (CUDA needs "
             "cudaLaunchCooperativeKernel for it; pass cooperative=1)", file, line);
    me.wait = Wait::grid;
    me.site_file = file;
    me.site_line = line;
    park(w, me);
}

inline void grid_barrier(Block& b) {
    Launch& L = *b.launch;
    Lock lock(L.grid_mutex);
    if (L.blocks_finished > 0)
        fail("block (%u,%u,%u) waits in grid.sync(), but %u block(s) of the grid have already "
             "finished without reaching it (a GPU would hang)", b.idx.x, b.idx.y, b.idx.z,
             L.blocks_finished);
    const unsigned generation = L.grid_generation;
    if (++L.grid_arrived == L.n_blocks) {
        L.grid_arrived = 0;
        ++L.grid_generation;
        stats().grid_syncs.fetch_add(1, std::memory_order_relaxed);
        pthread_cond_broadcast(&L.grid_cv);
    } else {
        while (L.grid_generation == generation) pthread_cond_wait(&L.grid_cv, &L.grid_mutex);
    }
}

inline void block_finished(Block& b) {
    Launch& L = *b.launch;
    if (!L.cooperative) return;
    Lock lock(L.grid_mutex);
    ++L.blocks_finished;
    if (L.grid_arrived > 0)
        fail("block (%u,%u,%u) finished while another block waits in grid.sync() (a GPU would hang)",
             b.idx.x, b.idx.y, b.idx.z);
}

inline const char* wait_name(const Fiber& f) {
    switch (f.wait) {
        case Wait::block_barrier: return "__syncthreads";
        case Wait::grid: return "grid.sync()";
        case Wait::warp: return warp_op_name(f.op);
        default: return "running";
    }
}

// Every live fiber of the block is parked: open the barrier they all wait at, or abort.
inline void resolve_parked(Worker& w, Block& b) {
    (void)w;
    const Fiber* first = nullptr;
    unsigned n_block = 0, n_grid = 0, n_warp = 0;
    for (unsigned k = 0; k < b.n_threads; ++k) {
        const Fiber& f = b.fibers[k];
        if (f.wait == Wait::exited) continue;
        if (!first) first = &f;
        n_block += f.wait == Wait::block_barrier;
        n_grid += f.wait == Wait::grid;
        n_warp += f.wait == Wait::warp;
    }
    if (n_block == b.live || n_grid == b.live) {
        for (unsigned k = 0; k < b.n_threads; ++k) {
            const Fiber& f = b.fibers[k];
            if (f.wait == Wait::exited) continue;
            if (f.site_line != first->site_line || strcmp(f.site_file, first->site_file) != 0)
                fail("%s in divergent code: %s waits at %s:%d, %s at %s:%d", wait_name(*first),
                     describe_thread(*first).text, first->site_file, first->site_line,
                     describe_thread(f).text, f.site_file, f.site_line);
        }
        unsigned long long count = 0;
        if (n_grid) {
            for (unsigned k = 0; k < b.n_threads; ++k)
                if (b.fibers[k].wait == Wait::exited)
                    fail("grid.sync() at %s:%d: %s has returned while the rest of the grid waits "
                         "there (every thread of the grid must reach it)", first->site_file,
                         first->site_line, describe_thread(b.fibers[k]).text);
            grid_barrier(b);
        } else {
            stats().block_barriers.fetch_add(1, std::memory_order_relaxed);
            for (unsigned k = 0; k < b.n_threads; ++k)
                if (b.fibers[k].wait != Wait::exited && b.fibers[k].predicate) ++count;
        }
        for (unsigned k = 0; k < b.n_threads; ++k)
            if (b.fibers[k].wait != Wait::exited) {
                b.fibers[k].result = count | static_cast<unsigned long long>(b.live) << 32;
                b.fibers[k].wait = Wait::none;
            }
        return;
    }
    // A deadlock: name one thread of each kind of wait.
    char where[768] = "";
    for (Wait kind : {Wait::block_barrier, Wait::grid, Wait::warp}) {
        for (unsigned k = 0; k < b.n_threads; ++k) {
            const Fiber& f = b.fibers[k];
            if (f.wait != kind) continue;
            char buf[256];
            if (kind == Wait::warp)
                snprintf(buf, sizeof buf, "; %s (lane %u) in %s with mask 0x%08x", describe_thread(f).text,
                         f.lane, warp_op_name(f.op), f.mask);
            else
                snprintf(buf, sizeof buf, "; %s at %s %s:%d", describe_thread(f).text, wait_name(f),
                         f.site_file, f.site_line);
            strncat(where, buf, sizeof where - strlen(where) - 1);
            break;
        }
    }
    fail("deadlock in block (%u,%u,%u): %u thread(s) wait at __syncthreads, %u at grid.sync(), "
         "%u in warp operations that cannot complete%s", b.idx.x, b.idx.y, b.idx.z, n_block, n_grid,
         n_warp, where);
}

// -- running a block --------------------------------------------------------------------------------
inline unsigned long long splitmix64(unsigned long long& state) {
    unsigned long long z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

inline void fiber_start() {
    Worker& w = worker();
    Fiber& f = *w.current;
    Block& b = *f.block;
    b.launch->invoke(b.launch->call);
    f.wait = Wait::exited;
    --b.live;
    ++b.exited;
    // Lanes of this warp that wait for the returned lane: a __syncwarp may now complete; a
    // shuffle or vote that names it aborts (try_complete_warp_op says which).
    Fiber* lanes = b.fibers + f.warp * 32;
    for (unsigned l = 0; b.in_warp_op[f.warp] && l < lanes_in_warp(b, f.warp); ++l)
        if (lanes[l].wait == Wait::warp && (lanes[l].mask >> f.lane & 1u))
            try_complete_warp_op(b, f.warp, lanes[l].mask);
    w.current = nullptr;
    // Its stack is free once it has switched away below; the scheduler may hand it to the next
    // fiber only after that.
    w.free_stacks.push_back(Stack{f.stack, f.stack_size});
    Context finished;
    jump(finished, w.scheduler);
    __builtin_unreachable();
}

inline void run_block(Launch& L, unsigned linear) {
    Worker& w = worker();
    ensure_overflow_handler();
    Block b;
    b.launch = &L;
    b.linear = linear;
    b.idx = dim3(linear % L.grid.x, linear / L.grid.x % L.grid.y, linear / (L.grid.x * L.grid.y));
    b.n_threads = L.n_threads;
    b.live = L.n_threads;
    b.rng = L.seed ^ (0xD1B54A32D192ED03ull * (linear + 1));
    w.fibers.assign(b.n_threads, Fiber());
    b.fibers = w.fibers.data();
    for (unsigned k = 0; k < b.n_threads; ++k) {
        Fiber& f = b.fibers[k];
        f.block = &b;
        f.tid = dim3(k % L.block.x, k / L.block.x % L.block.y, k / (L.block.x * L.block.y));
        f.linear = k;
        f.warp = k / 32;
        f.lane = k % 32;
    }
    if (L.shared_bytes) w.dynamic_shared.prepare(L.shared_bytes);
    blockIdx = b.idx;
    blockDim = L.block;
    gridDim = L.grid;
    tls_kernel_name = L.name;
    w.round.resize(b.n_threads);
    while (b.live > 0) {
        unsigned n = 0;
        for (unsigned k = 0; k < b.n_threads; ++k)
            if (b.fibers[k].wait == Wait::none) w.round[n++] = k;
        if (n == 0) {
            resolve_parked(w, b);
            continue;
        }
        if (L.order == Order::reverse) {
            for (unsigned i = 0, j = n - 1; i < j; ++i, --j) std::swap(w.round[i], w.round[j]);
        } else if (L.order == Order::random) {
            for (unsigned i = n - 1; i > 0; --i) std::swap(w.round[i], w.round[splitmix64(b.rng) % (i + 1)]);
        }
        for (unsigned i = 0; i < n; ++i) {
            Fiber& f = b.fibers[w.round[i]];
            if (f.wait == Wait::none) resume(w, f);
        }
    }
    block_finished(b);
    stats().fibers.fetch_add(b.n_threads, std::memory_order_relaxed);
    stats().switches.fetch_add(w.switches, std::memory_order_relaxed);
    w.switches = 0;
}

inline void run_blocks(Launch& L) {
    for (;;) {
        unsigned i = L.next_block.fetch_add(1);
        if (i >= L.n_blocks) return;
        run_block(L, L.block_order[i]);
    }
}

// -- the pool of OS threads ---------------------------------------------------------------------------
class Pool {
  public:
    // Runs `L` on the calling thread and `helpers` pool threads; returns when all are done.
    void run(Launch& L, unsigned helpers) {
        {
            Lock lock(mutex_);
            while (threads_ < helpers) {
                pthread_t thread;
                if (pthread_create(&thread, nullptr, &Pool::loop, this) != 0)
                    fail("cannot start an OS thread for a block (%u running)", threads_);
                pthread_detach(thread);
                ++threads_;
            }
            job_ = &L;
            slots_ = helpers;
            if (helpers) pthread_cond_broadcast(&wake_);
        }
        run_blocks(L);
        Lock lock(mutex_);
        if (!L.cooperative) slots_ = 0;  // every block is taken: helpers not yet awake stay asleep
        while (slots_ != 0 || running_ != 0) pthread_cond_wait(&done_, &mutex_);
        job_ = nullptr;
    }

  private:
    static void* loop(void* self) {
        Pool& pool = *static_cast<Pool*>(self);
        pthread_mutex_lock(&pool.mutex_);
        for (;;) {
            while (pool.job_ == nullptr || pool.slots_ == 0) pthread_cond_wait(&pool.wake_, &pool.mutex_);
            --pool.slots_;
            ++pool.running_;
            Launch* L = pool.job_;
            pthread_mutex_unlock(&pool.mutex_);
            run_blocks(*L);
            pthread_mutex_lock(&pool.mutex_);
            if (--pool.running_ == 0 && pool.slots_ == 0) pthread_cond_broadcast(&pool.done_);
        }
        return nullptr;
    }

    pthread_mutex_t mutex_ = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t wake_ = PTHREAD_COND_INITIALIZER, done_ = PTHREAD_COND_INITIALIZER;
    Launch* job_ = nullptr;
    unsigned threads_ = 0, slots_ = 0, running_ = 0;
};

inline Pool& pool() {
    static Pool* p = new Pool();   // never destroyed: its threads are detached
    return *p;
}

inline pthread_mutex_t& launch_mutex() {
    static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    return m;
}

inline unsigned normal_launch_threads() {
    static const long cores = sysconf(_SC_NPROCESSORS_ONLN);   // reads /sys: once
    const char* env = getenv("LSTM_ENGINE_EMU_THREADS");
    long n = env && *env ? strtol(env, nullptr, 10) : 0;
    if (n <= 0) n = cores > 2 ? cores : 2;
    return static_cast<unsigned>(n);
}

inline void schedule_from_env(Order& order, unsigned long long& seed) {
    const char* env = getenv("LSTM_ENGINE_EMU_ORDER");
    if (!env || !*env || !strcmp(env, "forward")) {
        order = Order::forward;
    } else if (!strcmp(env, "reverse")) {
        order = Order::reverse;
    } else if (!strncmp(env, "random", 6) && (env[6] == '\0' || env[6] == ':')) {
        order = Order::random;
        seed = env[6] == ':' ? strtoull(env + 7, nullptr, 10) : 1;
    } else {
        fail("LSTM_ENGINE_EMU_ORDER=%s: expected forward, reverse, random or random:<seed>", env);
    }
}

constexpr unsigned kMaxCooperativeBlocks = 1024;
constexpr unsigned kMaxCooperativeFibers = kMaxGuards / 2;

inline void launch(const emu_launch_config& cfg, const char* name, void (*invoke)(void*), void* call) {
    Lock serial(launch_mutex());
    tls_kernel_name = name;
    Launch L;
    L.name = name;
    L.grid = dim3(cfg.grid[0], cfg.grid[1], cfg.grid[2]);
    L.block = dim3(cfg.block[0], cfg.block[1], cfg.block[2]);
    L.n_blocks = L.grid.x * L.grid.y * L.grid.z;
    L.n_threads = L.block.x * L.block.y * L.block.z;
    if (L.n_blocks == 0 || L.n_threads == 0) fail("empty launch: grid or block has a zero dimension");
    if (L.n_threads > 1024) fail("a block of %u threads: CUDA allows at most 1024", L.n_threads);
    if (L.block.z > 64) fail("block.z = %u: CUDA allows at most 64", L.block.z);
    if (L.grid.y > 65535 || L.grid.z > 65535) fail("grid.y and grid.z must be at most 65535");
    L.shared_bytes = cfg.shared_bytes;
    L.cooperative = cfg.cooperative != 0;
    L.invoke = invoke;
    L.call = call;
    L.order = static_cast<Order>(cfg.order);
    L.seed = cfg.seed;
    if (L.order == Order::from_env) schedule_from_env(L.order, L.seed);
    if (L.order < Order::forward || L.order > Order::random) fail("unknown schedule order %d", cfg.order);
    if (L.cooperative && L.n_blocks > kMaxCooperativeBlocks)
        fail("a cooperative grid of %u blocks: the emulator runs one OS thread per block and allows "
             "at most %u", L.n_blocks, kMaxCooperativeBlocks);
    if (L.cooperative && static_cast<unsigned long long>(L.n_blocks) * L.n_threads > kMaxCooperativeFibers)
        fail("a cooperative grid of %u blocks of %u threads: the emulator keeps every thread's stack at "
             "once and allows at most %u threads (keep emulated grids small)", L.n_blocks, L.n_threads,
             kMaxCooperativeFibers);
    L.block_order.resize(L.n_blocks);
    for (unsigned i = 0; i < L.n_blocks; ++i)
        L.block_order[i] = L.order == Order::reverse ? L.n_blocks - 1 - i : i;
    if (L.order == Order::random) {
        unsigned long long rng = L.seed ^ 0xA0761D6478BD642Full;
        for (unsigned i = L.n_blocks - 1; i > 0; --i)
            std::swap(L.block_order[i], L.block_order[splitmix64(rng) % (i + 1)]);
    }
    stats().launches.fetch_add(1, std::memory_order_relaxed);
    const unsigned most = normal_launch_threads();
    unsigned threads = L.cooperative ? L.n_blocks : (L.n_blocks < most ? L.n_blocks : most);
    pool().run(L, threads - 1);
}

// The kernel and its arguments, copied once per launch; every fiber calls it.
template <typename Kernel, typename Tuple>
struct Call {
    Kernel kernel;
    Tuple args;
    static void invoke(void* self) {
        Call* c = static_cast<Call*>(self);
        std::apply(c->kernel, c->args);
    }
};

}  // namespace emu

extern "C" {
// Counters since the library was loaded; for the emulator's speed figures.
__attribute__((visibility("default"), used)) inline void emu_stats(unsigned long long out[6]) {
    emu::Stats& s = emu::stats();
    out[0] = s.launches.load();
    out[1] = s.fibers.load();
    out[2] = s.switches.load();
    out[3] = s.block_barriers.load();
    out[4] = s.warp_ops.load();
    out[5] = s.grid_syncs.load();
}
}
