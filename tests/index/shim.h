/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Userspace stand-ins for the kernel APIs that kmod/index.c uses, so that the file compiles
 * unmodified in tests/index/test_index.c (run.sh force-includes this header and gives the
 * <linux/...> includes empty files).
 *
 * - Allocations go to malloc, with a size header so that the live bytes (rounded up the way the
 *   kernel's kmalloc caches and vmalloc do) can be measured, and fail on demand (shim_fail_one_in).
 * - kfree_rcu/kvfree_rcu free at once, or, with shim_defer_frees set, only at
 *   shim_flush_deferred(): readers in other threads never touch freed memory, as under RCU.
 * - The seqlock is a real sequence counter (atomic builtins with release/acquire ordering); the
 *   mutex is a pthread mutex; rcu_read_lock is a no-op (frees are deferred instead).
 */
#ifndef DMR_TEST_SHIM_H
#define DMR_TEST_SHIM_H

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef uint64_t sector_t;	/* dev_t comes from <sys/types.h> */

#define __rcu
#define __aligned(x) __attribute__((aligned(x)))
#define noinline __attribute__((noinline))
#undef __always_inline
#define __always_inline inline __attribute__((always_inline))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define BUILD_BUG_ON(cond) _Static_assert(!(cond), #cond)

#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))
/* Each argument evaluated once, as in the kernel: they may be READ_ONCE of a changing field. */
#define min_t(type, a, b)                                                                  \
	({                                                                                 \
		type min_a_ = (a), min_b_ = (b);                                           \
		min_a_ < min_b_ ? min_a_ : min_b_;                                         \
	})
#define max_t(type, a, b)                                                                  \
	({                                                                                 \
		type max_a_ = (a), max_b_ = (b);                                           \
		max_a_ > max_b_ ? max_a_ : max_b_;                                         \
	})
#define clamp_t(type, v, lo, hi) min_t(type, max_t(type, v, lo), hi)
#define struct_size(p, member, count) (sizeof(*(p)) + sizeof((p)->member[0]) * (size_t)(count))

static inline int fls64(u64 x)
{
	return x ? 64 - __builtin_clzll(x) : 0;
}

#define ilog2(x) (fls64(x) - 1)

static inline unsigned long roundup_pow_of_two(unsigned long x)
{
	unsigned long r = 1;

	while (r < x)
		r <<= 1;
	return r;
}

/* Allocations */

typedef unsigned int gfp_t;
#define GFP_KERNEL 1u
#define GFP_NOIO 2u
#define PAGE_SIZE 4096ul

/* When non-zero, an allocation fails with probability 1 / shim_fail_one_in. */
static unsigned int shim_fail_one_in;
static u64 shim_fail_rng = 0x9e3779b97f4a7c15ull;
static long shim_live_allocs;
static size_t shim_live_bytes;
static pthread_mutex_t shim_lock = PTHREAD_MUTEX_INITIALIZER;

struct shim_hdr {
	size_t charged;		/* what the kernel would use for this allocation */
	size_t pad;
};

/* kmalloc caches are powers of two from 8 bytes (96 and 192 too, ignored); vmalloc is pages. */
static size_t shim_charge(size_t n, bool kv)
{
	if (kv && n > 2 * PAGE_SIZE)
		return (n + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
	return roundup_pow_of_two(n < 8 ? 8 : n);
}

static bool shim_should_fail(void)
{
	if (!shim_fail_one_in)
		return false;
	shim_fail_rng ^= shim_fail_rng << 13;
	shim_fail_rng ^= shim_fail_rng >> 7;
	shim_fail_rng ^= shim_fail_rng << 17;
	return shim_fail_rng % shim_fail_one_in == 0;
}

static void *shim_alloc(size_t n, bool zero, bool kv)
{
	struct shim_hdr *h;

	if (shim_should_fail())
		return NULL;
	h = zero ? calloc(1, sizeof(*h) + n) : malloc(sizeof(*h) + n);
	if (!h)
		return NULL;
	h->charged = shim_charge(n, kv);
	pthread_mutex_lock(&shim_lock);
	shim_live_allocs++;
	shim_live_bytes += h->charged;
	pthread_mutex_unlock(&shim_lock);
	return h + 1;
}

static void shim_free(const void *p)
{
	struct shim_hdr *h;

	if (!p)
		return;
	h = (struct shim_hdr *)p - 1;
	pthread_mutex_lock(&shim_lock);
	shim_live_allocs--;
	shim_live_bytes -= h->charged;
	pthread_mutex_unlock(&shim_lock);
	free(h);
}

static inline void *kmalloc(size_t n, gfp_t gfp)
{
	(void)gfp;
	return shim_alloc(n, false, false);
}

static inline void *kzalloc(size_t n, gfp_t gfp)
{
	(void)gfp;
	return shim_alloc(n, true, false);
}

static inline void *kvzalloc(size_t n, gfp_t gfp)
{
	(void)gfp;
	return shim_alloc(n, true, true);
}

#define kfree(p) shim_free(p)
#define kvfree(p) shim_free(p)

/* RCU: deferred frees */

struct rcu_head {
	struct rcu_head *next;
	const void *ptr;
};

static bool shim_defer_frees;
static struct rcu_head *shim_deferred;

static void shim_free_rcu(struct rcu_head *head, const void *p)
{
	if (!shim_defer_frees) {
		shim_free(p);
		return;
	}
	pthread_mutex_lock(&shim_lock);
	head->ptr = p;
	head->next = shim_deferred;
	shim_deferred = head;
	pthread_mutex_unlock(&shim_lock);
}

/* Free what kfree_rcu deferred: the caller knows no reader is running ("a grace period"). */
static void shim_flush_deferred(void)
{
	struct rcu_head *h = shim_deferred, *next;

	shim_deferred = NULL;
	for (; h; h = next) {
		next = h->next;
		shim_free(h->ptr);
	}
}

#define kfree_rcu(p, field) shim_free_rcu(&(p)->field, (p))
#define kvfree_rcu(p, field) shim_free_rcu(&(p)->field, (p))

#define rcu_read_lock() ((void)0)
#define rcu_read_unlock() ((void)0)
#define rcu_dereference(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#define rcu_dereference_protected(p, cond) ((void)(cond), (p))
#define rcu_assign_pointer(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)
#define RCU_INIT_POINTER(p, v) ((p) = (v))

/* Mutex */

struct mutex {
	pthread_mutex_t m;
};

#define mutex_init(l) pthread_mutex_init(&(l)->m, NULL)
#define mutex_destroy(l) pthread_mutex_destroy(&(l)->m)
#define mutex_lock(l) pthread_mutex_lock(&(l)->m)
#define mutex_unlock(l) pthread_mutex_unlock(&(l)->m)
#define lockdep_is_held(l) ((void)(l), 1)

/* Seqlock: odd while a writer is inside; readers retry when the count moved. */

typedef struct {
	unsigned int seq;
} seqlock_t;

#define seqlock_init(s) __atomic_store_n(&(s)->seq, 0, __ATOMIC_RELAXED)

static inline void shim_write_seqlock(seqlock_t *s)
{
	__atomic_store_n(&s->seq, s->seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static inline void shim_write_sequnlock(seqlock_t *s)
{
	__atomic_store_n(&s->seq, s->seq + 1, __ATOMIC_RELEASE);
}

static inline unsigned int read_seqbegin(const seqlock_t *s)
{
	unsigned int seq;

	while ((seq = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE)) & 1)
		;
	return seq;
}

static inline int read_seqretry(const seqlock_t *s, unsigned int start)
{
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(&s->seq, __ATOMIC_RELAXED) != start;
}

#define write_seqlock_irqsave(s, flags) ((flags) = 0, shim_write_seqlock(s))
#define write_sequnlock_irqrestore(s, flags) ((void)(flags), shim_write_sequnlock(s))

#endif
