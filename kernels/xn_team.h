/* Threads that degrade gracefully: how many threads a parallel call gets, learned from how the
 * previous calls went.
 *
 * A team of OpenMP threads is only as fast as its slowest member: when another process keeps a
 * core busy, a thread of ours that shares that core waits for the scheduler's next slice
 * (milliseconds), and the whole call waits for it at the join. On 2 Zen 4 cores with one kept
 * busy, a 2-thread layer took 16 ms where 1 thread took 0.25 ms. What this header adds:
 *
 * - The kernels' loops claim their work (`schedule(dynamic)`): a thread that arrives late, or
 *   is preempted, leaves the rest of its share to the others instead of holding it.
 * - Each team call is judged after its join. Every thread times its own work (wall clock, the
 *   loops only, not the barriers); the fastest thread's time per item, times all the items, is
 *   what one unhindered thread would have taken. A call whose wall time is not clearly below
 *   that was held up (by a thread that came late, a preempted one, or a team too big for the
 *   work), and the team calls after it run on one thread for a while.
 * - That while doubles when a team call is held up again within a few team calls of the last
 *   back-off (a neighbour that stays: probes become rare, from XN_TEAM_MIN_NS up to
 *   XN_TEAM_MAX_NS), and is then never shorter than 20 times the time the held-up call lost,
 *   so that probing costs at most ~5%; the first held-up call after a healthy streak of
 *   XN_TEAM_STREAK team calls backs off for XN_TEAM_MIN_NS only. On a quiet machine a team
 *   call is not held up, so nothing changes there.
 *
 * A call counts as held up only if it also lost more than XN_TEAM_SLACK_NS. A thread that shares
 * its core with another process loses a scheduler slice (0.75-3 ms on Linux), far above it; a
 * quiet machine's own hiccups stay below it: a worker thread that fell asleep between calls
 * (a request after an idle pause, the bench's cold protocol) takes 10-100 us to wake. With a
 * 20 us slack those wake-ups passed for a busy core, and on a quiet 2-core Zen 4 the bench's
 * cold rounds, interleaved with its steady ones, kept the small layers on one thread (2-thread
 * speedup 0.96-1.07 where a fixed team gave 1.7-1.9). The state is process-wide
 * (relaxed atomics: a race costs at most one call's decision), since a busy core is the
 * machine's, not a layer's.
 * `xn_team_adaptive = 0` keeps every team (the tests of the threaded paths, the bench's rows
 * with the team fixed); the counts are kept either way.
 */
#ifndef XN_TEAM_H
#define XN_TEAM_H

#include <stdint.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define XN_TEAM_MIN_NS 2000000LL   /* one thread for 2 ms after a held-up call */
#define XN_TEAM_MAX_NS 1000000000LL /* a busy machine is probed about once a second */
/* Time a team call may lose to its team, on top of the share below: a sleeping thread's wake-up
 * on a quiet machine, which must not pass for a busy core on a small call. */
#define XN_TEAM_SLACK_NS 200000LL
/* A team call must beat this share of one thread's estimated time: below 1, so that it takes a
 * real gain to keep a team, and an estimate a little low (items of uneven cost) is harmless. */
#define XN_TEAM_WORTH 0.9
#define XN_TEAM_COST 20   /* a back-off lasts at least this many times the time a call lost */
#define XN_TEAM_STREAK 16 /* healthy team calls after which a held-up one starts over */
#define XN_TEAM_SLOTS 64 /* threads whose timing is read: the rest work but are not counted */

static int xn_team_adaptive = 1;
static int64_t xn_team_until; /* CLOCK_MONOTONIC ns: team calls run on one thread until then */
static int64_t xn_team_window = XN_TEAM_MIN_NS;
static int64_t xn_team_streak = XN_TEAM_STREAK; /* judged team calls since the last held-up one */
enum { XN_TEAM_CALLS, XN_TEAM_HELD, XN_TEAM_ALONE, XN_TEAM_NCOUNTS };
static int64_t xn_team_counts[XN_TEAM_NCOUNTS]; /* team calls, held up, run alone instead */

static inline int64_t xn_clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

typedef struct {
    int64_t work, items; /* one thread's time in the loops, and the judged items it ran */
} xn_team_slot;

/* One parallel call: the team it runs with and what its threads report. */
typedef struct {
    int team; /* 1: the region runs on the caller alone */
    int64_t wall0;
    xn_team_slot slot[XN_TEAM_SLOTS];
} xn_team_call;

/* The team of a call that could use `threads`, if `parallel` (enough work): 1 while backing off. */
static inline void xn_team_begin(xn_team_call *c, int threads, int parallel) {
    c->team = 1;
    if (threads <= 1 || !parallel) return;
    c->wall0 = xn_clock_ns();
    if (__atomic_load_n(&xn_team_adaptive, __ATOMIC_RELAXED) &&
        c->wall0 < __atomic_load_n(&xn_team_until, __ATOMIC_RELAXED)) {
        __atomic_fetch_add(&xn_team_counts[XN_TEAM_ALONE], 1, __ATOMIC_RELAXED);
        return;
    }
    c->team = threads;
    memset(c->slot, 0, sizeof c->slot[0] * (size_t)(threads < XN_TEAM_SLOTS ? threads : XN_TEAM_SLOTS));
}

/* Inside the region: a thread's clock around its loops (0 when nobody reads it). */
static inline int64_t xn_team_now(const xn_team_call *c) { return c->team > 1 ? xn_clock_ns() : 0; }

/* Inside the region, on each thread after its last loop: its work time and judged items. */
static inline void xn_team_leave(xn_team_call *c, int64_t work, int64_t items) {
#ifdef _OPENMP
    const int tid = omp_get_thread_num();
#else
    const int tid = 0;
#endif
    if (c->team > 1 && tid < XN_TEAM_SLOTS) c->slot[tid].work = work, c->slot[tid].items = items;
}

/* A chunk of a dynamic loop over n items: about 8 claims per thread, so that a late thread
 * leaves at most a small part of the loop to wait for, yet few claims: each one moves the loop
 * counter's cache line between cores (~0.1-0.2 us), and a GEMM tile can be half a microsecond
 * (ResNet's 56 x 56 layers: 8363 tiles at batch 16, 2 threads slower than 1 with chunks of 1). */
static inline int64_t xn_team_chunk(int64_t n, int team) {
    const int64_t chunk = n / (8 * (int64_t)team);
    return chunk > 1 ? chunk : 1;
}

/* The judgement of one team call, apart from the shared state so that it can be tested as a
 * table (kernels/_xnor.pyx: team_judgement): given its wall time, the time one unhindered thread
 * would have taken (`alone`), the healthy team calls since the last held-up one (`streak`) and
 * the last back-off (`window`), the back-off it calls for: 0 if it was not held up. */
static inline int64_t xn_team_judge(int64_t wall, double alone, int64_t streak, int64_t window) {
    if ((double)wall <= XN_TEAM_WORTH * alone + (double)XN_TEAM_SLACK_NS) return 0;
    /* Held up again within a few team calls of the last back-off: the neighbour stays, so
     * probe less often; after a healthy streak this is news, and the back-off is short. */
    if (streak >= XN_TEAM_STREAK) return XN_TEAM_MIN_NS;
    /* again: at least twice as long, and XN_TEAM_COST times what this call lost against one
     * thread, so that a probe costing a scheduler slice (milliseconds, more on a crowded
     * machine) is at most ~5% of the time */
    const int64_t lost = (int64_t)(XN_TEAM_COST * ((double)wall - alone));
    int64_t next = 2 * window > lost ? 2 * window : lost;
    if (next < XN_TEAM_MIN_NS) next = XN_TEAM_MIN_NS;
    return next > XN_TEAM_MAX_NS ? XN_TEAM_MAX_NS : next;
}

/* After the region: judge the call (`items` judged items in all), back off if it was held up. */
static inline void xn_team_end(const xn_team_call *c, int64_t items) {
    if (c->team <= 1) return;
    const int64_t now = xn_clock_ns(), wall = now - c->wall0;
    __atomic_fetch_add(&xn_team_counts[XN_TEAM_CALLS], 1, __ATOMIC_RELAXED);
    /* The fastest thread's time per item: an unhindered one, where any was. Only threads that
     * ran a fair part of the items count, so that one late thread's single cheap item (a short
     * last row block) does not pass for the rate of the whole call. */
    double per_item = 0.0;
    const int n = c->team < XN_TEAM_SLOTS ? c->team : XN_TEAM_SLOTS;
    const int64_t fair = items / (4 * (int64_t)c->team) > 1 ? items / (4 * (int64_t)c->team) : 1;
    for (int t = 0; t < n; ++t) {
        if (c->slot[t].items < fair) continue;
        const double r = (double)c->slot[t].work / (double)c->slot[t].items;
        if (per_item == 0.0 || r < per_item) per_item = r;
    }
    const int64_t window = xn_team_judge(wall, per_item * (double)items,
                                         __atomic_load_n(&xn_team_streak, __ATOMIC_RELAXED),
                                         __atomic_load_n(&xn_team_window, __ATOMIC_RELAXED));
    if (!window) {
        __atomic_fetch_add(&xn_team_streak, 1, __ATOMIC_RELAXED);
        return;
    }
    __atomic_fetch_add(&xn_team_counts[XN_TEAM_HELD], 1, __ATOMIC_RELAXED);
    if (!__atomic_load_n(&xn_team_adaptive, __ATOMIC_RELAXED)) return;
    __atomic_store_n(&xn_team_streak, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&xn_team_window, window, __ATOMIC_RELAXED);
    __atomic_store_n(&xn_team_until, now + window, __ATOMIC_RELAXED);
}

/* A loop over n independent items, claimed in chunks by a team of up to `threads` (if `parallel`)
 * and judged after it: the whole parallel call of a one-step kernel. The body, the remaining
 * arguments, sees the item as int64_t `i`. */
#define XN_TEAM_FOR(threads, parallel, i, n, ...)                                            \
    do {                                                                                     \
        xn_team_call xn_call_;                                                               \
        xn_team_begin(&xn_call_, (threads), (parallel));                                     \
        const int64_t xn_n_ = (n), xn_chunk_ = xn_team_chunk(xn_n_, xn_call_.team);          \
        _Pragma("omp parallel num_threads(xn_call_.team) if (xn_call_.team > 1)")            \
        {                                                                                    \
            const int64_t xn_t0_ = xn_team_now(&xn_call_);                                   \
            int64_t xn_mine_ = 0;                                                            \
            _Pragma("omp for schedule(dynamic, xn_chunk_) nowait")                           \
            for (int64_t i = 0; i < xn_n_; ++i) {                                            \
                ++xn_mine_;                                                                  \
                __VA_ARGS__                                                                  \
            }                                                                                \
            xn_team_leave(&xn_call_, xn_team_now(&xn_call_) - xn_t0_, xn_mine_);             \
        }                                                                                    \
        xn_team_end(&xn_call_, xn_n_);                                                       \
    } while (0)

/* Forget what was learned (and the counts): the next call gets every thread asked for. */
static void xn_team_reset(void) {
    __atomic_store_n(&xn_team_until, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&xn_team_window, XN_TEAM_MIN_NS, __ATOMIC_RELAXED);
    __atomic_store_n(&xn_team_streak, XN_TEAM_STREAK, __ATOMIC_RELAXED);
    for (int i = 0; i < XN_TEAM_NCOUNTS; ++i) __atomic_store_n(&xn_team_counts[i], 0, __ATOMIC_RELAXED);
}

#endif /* XN_TEAM_H */
