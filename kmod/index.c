// SPDX-License-Identifier: GPL-2.0
/*
 * The remap index of dm_remap (dmr_index_*, declared in helpers.h), built on the kernel's RCU and
 * seqlock primitives. tests/index/ tests this file in userspace.
 */
#include <linux/log2.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/rcupdate.h>
#include <linux/seqlock.h>
#include <linux/slab.h>
#include "helpers.h"

/*
 * The remap index: a map from block number to a 62-bit value, kept as sorted leaves of up to
 * DMR_LEAF_CAP (block, value) pairs (one 4 KiB allocation each, about 17 bytes per entry when
 * full) under a directory of separator keys. The directory has a hint table of bucket starts
 * (block >> shift) that narrows its binary search to a few keys; each leaf has one of its own.
 *
 * Lookups (dmr_index_find) run in any context: under rcu_read_lock they read the directory and
 * leaves without locks and retry if the sequence count shows a writer changed them meanwhile; every
 * index they read is checked so that a torn read only costs a retry. Updates run in process
 * context: `mutex` serialises writers (they may allocate, with GFP_NOIO, and sleep), and each
 * change is made in place inside write_seqlock_irqsave, which no reader can interrupt on its CPU.
 * Leaves and directories that are unlinked are freed after an RCU grace period (kfree_rcu /
 * kvfree_rcu), so a reader never touches freed memory. Directory slots beyond `n` are always NULL.
 *
 * Leaf i holds the blocks in [key[i], key[i + 1]) (key[0] is 0); no leaf is empty but the only
 * one (kept when the index empties, so that an index going between empty and one entry does not
 * allocate and free a leaf each time). A full leaf is split in half, except when the new block
 * goes to its end: then the new block starts a leaf of its own, so ascending inserts fill leaves
 * completely. A leaf that falls to a quarter is merged with a neighbour when both fit in half a
 * leaf.
 */
#define DMR_LEAF_HINTS 256
#define DMR_LEAF_CAP 238	/* what fits in 4 KiB beside the header (hint entries are bytes) */

struct dmr_leaf {
	struct rcu_head rcu;
	unsigned int n;
	unsigned int shift;                        /* bucket of x: (x - key[0]) >> shift */
	unsigned char hint[DMR_LEAF_HINTS + 1];    /* hint[b]: first entry whose bucket is >= b */
	u64 key[DMR_LEAF_CAP] __aligned(8);
	u64 val[DMR_LEAF_CAP];
};

struct dmr_dir {
	struct rcu_head rcu;
	unsigned int n;       /* leaves in use */
	unsigned int cap;     /* slots in key[] and leaf[] */
	unsigned int nhint;   /* buckets: a power of two >= 4 * cap; hint[] has nhint + 1 entries */
	unsigned int shift;   /* bucket of a block: min(block >> shift, nhint - 1) */
	u64 *key;
	struct dmr_leaf **leaf;
	unsigned int *hint;   /* hint[h]: the leaf that holds block h << shift (hint[nhint]: the last) */
	u64 mem[];
};

struct dmr_index {
	struct mutex mutex;
	seqlock_t seq;
	struct dmr_dir __rcu *dir;
};

static struct dmr_dir *dmr_dir_alloc(unsigned int cap)
{
	unsigned int nhint = 4 * roundup_pow_of_two(cap);
	struct dmr_dir *d;

	d = kvzalloc(struct_size(d, mem, 2 * (size_t)cap + (nhint + 2) / 2), GFP_NOIO);
	if (!d)
		return NULL;
	d->cap = cap;
	d->nhint = nhint;
	d->key = d->mem;
	d->leaf = (struct dmr_leaf **)(d->mem + cap);
	d->hint = (unsigned int *)(d->mem + 2 * cap);
	return d;
}

/* Recompute the hint table after the directory's keys changed (writer, inside the seqlock). */
static void dmr_dir_rehint(struct dmr_dir *d)
{
	u64 max = d->n ? d->key[d->n - 1] : 0;
	unsigned int bits = ilog2(d->nhint), h, j = 0;

	d->shift = fls64(max) > bits ? fls64(max) - bits : 0;
	for (h = 0; h < d->nhint; h++) {
		/* j: the keys <= h << shift (h << shift is past them all when it overflows) */
		while (j < d->n && ((d->key[j] >> d->shift) < h || d->key[j] == (u64)h << d->shift))
			j++;
		d->hint[h] = j ? j - 1 : 0;
	}
	d->hint[d->nhint] = d->n ? d->n - 1 : 0;
}

/* Number of keys[0..n) that are <= x (keys sorted): binary, then linear over the last few. */
static __always_inline unsigned int dmr_count_le(const u64 *keys, unsigned int n, u64 x)
{
	unsigned int lo = 0, half;

	while (n > 2) {
		half = n / 2;
		if (READ_ONCE(keys[lo + half]) <= x) {
			lo += half + 1;
			n -= half + 1;
		} else {
			n = half;
		}
	}
	while (n && READ_ONCE(keys[lo]) <= x) {
		lo++;
		n--;
	}
	return lo;
}

/* Number of keys[0..n) that are < x. */
static __always_inline unsigned int dmr_count_lt(const u64 *keys, unsigned int n, u64 x)
{
	return x ? dmr_count_le(keys, n, x - 1) : 0;
}

/* Recompute a leaf's hint table after its keys changed (writer, inside the seqlock). */
static void dmr_leaf_rehint(struct dmr_leaf *l)
{
	u64 span = l->n ? l->key[l->n - 1] - l->key[0] : 0;
	unsigned int bits = ilog2(DMR_LEAF_HINTS), b, j = 0;

	l->shift = fls64(span) > bits ? fls64(span) - bits : 0;
	for (b = 0; b <= DMR_LEAF_HINTS; b++) {
		while (j < l->n && ((l->key[j] - l->key[0]) >> l->shift) < b)
			j++;
		l->hint[b] = j;
	}
}

/* Number of the leaf's first m keys that are < x. Reader-safe. */
static __always_inline unsigned int dmr_leaf_count_lt(const struct dmr_leaf *l, unsigned int m,
						      u64 x)
{
	u64 k0 = READ_ONCE(l->key[0]), b;
	unsigned int lo, hi;

	if (!m || x <= k0)
		return 0;
	b = (x - k0) >> (READ_ONCE(l->shift) & 63);
	if (b >= DMR_LEAF_HINTS)
		b = DMR_LEAF_HINTS - 1;
	lo = min_t(unsigned int, READ_ONCE(l->hint[b]), m);
	hi = clamp_t(unsigned int, READ_ONCE(l->hint[b + 1]), lo, m);
	return lo + dmr_count_lt(l->key + lo, hi - lo, x);
}

/* Leaf that holds (or would hold) block x: the last with key <= x. Writer. */
static __always_inline unsigned int dmr_dir_route(const struct dmr_dir *d, unsigned int n, u64 x)
{
	u64 h = min_t(u64, x >> d->shift, d->nhint - 1);
	unsigned int lo = d->hint[h], hi = d->hint[h + 1];

	return lo + dmr_count_le(d->key + lo + 1, hi - lo, x);
}

/* First entry of leaf i, if it exists and is <= last. Reader; the rare case of dmr_dir_find. */
static noinline bool dmr_dir_next(const struct dmr_dir *d, unsigned int i, unsigned int n, u64 last,
				  u64 *block, u64 *value)
{
	const struct dmr_leaf *l;
	u64 k;

	if (i >= n)
		return false;
	l = READ_ONCE(d->leaf[i]);
	if (!l || READ_ONCE(l->n) - 1 >= DMR_LEAF_CAP)
		return false;
	k = READ_ONCE(l->key[0]);
	if (k > last)
		return false;
	*block = k;
	*value = READ_ONCE(l->val[0]);
	return true;
}

/*
 * First entry in [first, last]: the reader's search, on a directory that a writer may be changing.
 * Every value it reads is checked against what a consistent index guarantees (ranges within
 * bounds, leaves present and not empty); one that is not answers "not found" at once, which the
 * caller's sequence check then retries (or confirms: an empty only leaf means an empty index).
 */
static __always_inline bool dmr_dir_find(const struct dmr_dir *d, u64 first, u64 last,
					 u64 *block, u64 *value)
{
	unsigned int n = READ_ONCE(d->n), lo, hi, i, m, j;
	const struct dmr_leaf *l;
	u64 h, k;

	if (n - 1 >= d->cap)
		return false;
	/* The leaf: the last with directory key <= first, from the one holding the bucket start. */
	h = min_t(u64, first >> (READ_ONCE(d->shift) & 63), d->nhint - 1);
	lo = READ_ONCE(d->hint[h]);
	hi = READ_ONCE(d->hint[h + 1]);
	if (hi >= n || lo > hi)
		return false;
	i = lo;
	if (lo != hi)
		i += dmr_count_le(d->key + lo + 1, hi - lo, first);
	l = READ_ONCE(d->leaf[i]);
	if (!l)
		return false;
	m = READ_ONCE(l->n);
	if (m - 1 >= DMR_LEAF_CAP)
		return false;
	/* The entry: the first key >= first in the leaf. */
	k = READ_ONCE(l->key[0]);
	j = 0;
	if (first > k) {
		h = min_t(u64, (first - k) >> (READ_ONCE(l->shift) & 63), DMR_LEAF_HINTS - 1);
		lo = READ_ONCE(l->hint[h]);
		hi = READ_ONCE(l->hint[h + 1]);
		if (hi > m || lo > hi)
			return false;
		j = lo + dmr_count_le(l->key + lo, hi - lo, first - 1);
		if (j == m)
			return dmr_dir_next(d, i + 1, n, last, block, value);
		k = READ_ONCE(l->key[j]);
	}
	if (k > last)
		return false;
	*block = k;
	*value = READ_ONCE(l->val[j]);
	return true;
}

struct dmr_index *dmr_index_new(void)
{
	struct dmr_index *ix = kzalloc(sizeof(*ix), GFP_KERNEL);
	struct dmr_dir *d = dmr_dir_alloc(8);

	BUILD_BUG_ON(sizeof(struct dmr_leaf) > 4096);
	if (!ix || !d) {
		kfree(ix);
		kvfree(d);
		return NULL;
	}
	mutex_init(&ix->mutex);
	seqlock_init(&ix->seq);
	dmr_dir_rehint(d);
	RCU_INIT_POINTER(ix->dir, d);
	return ix;
}

void dmr_index_free(struct dmr_index *ix)
{
	struct dmr_dir *d;
	unsigned int i;

	if (!ix)
		return;
	d = rcu_dereference_protected(ix->dir, true);
	for (i = 0; i < d->n; i++)
		kfree(d->leaf[i]);
	kvfree(d);
	mutex_destroy(&ix->mutex);
	kfree(ix);
}

bool dmr_index_find(struct dmr_index *ix, u64 first, u64 last, u64 *block, u64 *value)
{
	unsigned int seq;
	bool found;

	rcu_read_lock();
	do {
		seq = read_seqbegin(&ix->seq);
		found = dmr_dir_find(rcu_dereference(ix->dir), first, last, block, value);
	} while (read_seqretry(&ix->seq, seq));
	rcu_read_unlock();
	return found;
}

static struct dmr_dir *dmr_index_dir(struct dmr_index *ix)
{
	return rcu_dereference_protected(ix->dir, lockdep_is_held(&ix->mutex));
}

/*
 * Readers dereference the leaf pointers before their sequence check, so these are moved one whole
 * pointer at a time (memmove may copy bytewise: rep movsb), never seen half-written.
 */
static void dmr_dir_move_leaves(struct dmr_dir *d, unsigned int to, unsigned int from,
				unsigned int count)
{
	unsigned int k;

	if (to > from)
		for (k = count; k--;)
			WRITE_ONCE(d->leaf[to + k], d->leaf[from + k]);
	else
		for (k = 0; k < count; k++)
			WRITE_ONCE(d->leaf[to + k], d->leaf[from + k]);
}

/* Insert directory slot `at` (the caller checked there is room). Writer, inside the seqlock. */
static void dmr_dir_insert(struct dmr_dir *d, unsigned int at, u64 key, struct dmr_leaf *l)
{
	memmove(d->key + at + 1, d->key + at, (d->n - at) * sizeof(*d->key));
	dmr_dir_move_leaves(d, at + 1, at, d->n - at);
	d->key[at] = key;
	WRITE_ONCE(d->leaf[at], l);
	d->n++;
	dmr_dir_rehint(d);
}

/* Remove directory slot `at`. Writer, inside the seqlock. */
static void dmr_dir_remove(struct dmr_dir *d, unsigned int at)
{
	memmove(d->key + at, d->key + at + 1, (d->n - at - 1) * sizeof(*d->key));
	dmr_dir_move_leaves(d, at, at + 1, d->n - at - 1);
	d->n--;
	d->key[d->n] = 0;
	WRITE_ONCE(d->leaf[d->n], NULL);
	if (d->n)
		d->key[0] = 0;
	dmr_dir_rehint(d);
}

/* Insert an entry at `at`, leaving the hint table to the caller. Writer, inside the seqlock. */
static void dmr_leaf_put(struct dmr_leaf *l, unsigned int at, u64 key, u64 value)
{
	memmove(l->key + at + 1, l->key + at, (l->n - at) * sizeof(*l->key));
	memmove(l->val + at + 1, l->val + at, (l->n - at) * sizeof(*l->val));
	l->key[at] = key;
	l->val[at] = value;
	l->n++;
}

/*
 * A key was inserted at `at` (delta 1) or removed from there (delta -1). Unless it was the first
 * key (the buckets start there) or lies beyond the last bucket, only the buckets after its own
 * move, by delta; otherwise the table is recomputed.
 */
static void dmr_leaf_rehint_at(struct dmr_leaf *l, unsigned int at, u64 key, int delta)
{
	u64 kb = at ? (key - l->key[0]) >> l->shift : DMR_LEAF_HINTS;
	unsigned int b;

	if (kb >= DMR_LEAF_HINTS) {
		dmr_leaf_rehint(l);
		return;
	}
	for (b = kb + 1; b <= DMR_LEAF_HINTS; b++)
		l->hint[b] += delta;
}

static void dmr_leaf_insert(struct dmr_leaf *l, unsigned int at, u64 key, u64 value)
{
	dmr_leaf_put(l, at, key, value);
	dmr_leaf_rehint_at(l, at, key, 1);
}

/* Make room for one more directory slot: a directory twice the size replaces the full one. */
static int dmr_index_grow(struct dmr_index *ix, struct dmr_dir *d)
{
	struct dmr_dir *nd;
	unsigned long flags;

	if (d->cap >= 1U << 24)
		return -ENOMEM;
	nd = dmr_dir_alloc(d->cap * 2);
	if (!nd)
		return -ENOMEM;
	nd->n = d->n;
	memcpy(nd->key, d->key, d->n * sizeof(*d->key));
	memcpy(nd->leaf, d->leaf, d->n * sizeof(*d->leaf));
	dmr_dir_rehint(nd);
	write_seqlock_irqsave(&ix->seq, flags);
	rcu_assign_pointer(ix->dir, nd);
	write_sequnlock_irqrestore(&ix->seq, flags);
	kvfree_rcu(d, rcu);
	return 0;
}

int dmr_index_store(struct dmr_index *ix, u64 block, u64 value)
{
	struct dmr_dir *d;
	struct dmr_leaf *l, *nl;
	unsigned long flags;
	unsigned int i, p, half;
	int ret = 0;

	mutex_lock(&ix->mutex);
	d = dmr_index_dir(ix);
	if (!d->n) {
		nl = kmalloc(sizeof(*nl), GFP_NOIO);
		if (!nl) {
			ret = -ENOMEM;
			goto out;
		}
		nl->n = 1;
		nl->key[0] = block;
		nl->val[0] = value;
		dmr_leaf_rehint(nl);
		write_seqlock_irqsave(&ix->seq, flags);
		dmr_dir_insert(d, 0, 0, nl);
		write_sequnlock_irqrestore(&ix->seq, flags);
		goto out;
	}
	i = dmr_dir_route(d, d->n, block);
	l = d->leaf[i];
	p = dmr_leaf_count_lt(l, l->n, block);
	if (p < l->n && l->key[p] == block) {
		write_seqlock_irqsave(&ix->seq, flags);
		l->val[p] = value;
		write_sequnlock_irqrestore(&ix->seq, flags);
		goto out;
	}
	if (l->n < DMR_LEAF_CAP) {
		write_seqlock_irqsave(&ix->seq, flags);
		dmr_leaf_insert(l, p, block, value);
		write_sequnlock_irqrestore(&ix->seq, flags);
		goto out;
	}
	/* Full leaf: split it, with a directory slot for the new leaf. */
	if (d->n == d->cap) {
		ret = dmr_index_grow(ix, d);
		if (ret)
			goto out;
		d = dmr_index_dir(ix);
	}
	nl = kmalloc(sizeof(*nl), GFP_NOIO);
	if (!nl) {
		ret = -ENOMEM;
		goto out;
	}
	write_seqlock_irqsave(&ix->seq, flags);
	if (p == l->n) {
		nl->n = 1;
		nl->key[0] = block;
		nl->val[0] = value;
		dmr_leaf_rehint(nl);
	} else {
		half = l->n / 2;
		nl->n = l->n - half;
		memcpy(nl->key, l->key + half, nl->n * sizeof(*nl->key));
		memcpy(nl->val, l->val + half, nl->n * sizeof(*nl->val));
		l->n = half;
		if (p <= half)
			dmr_leaf_put(l, p, block, value);
		else
			dmr_leaf_put(nl, p - half, block, value);
		dmr_leaf_rehint(l);
		dmr_leaf_rehint(nl);
	}
	dmr_dir_insert(d, i + 1, nl->key[0], nl);
	write_sequnlock_irqrestore(&ix->seq, flags);
out:
	mutex_unlock(&ix->mutex);
	return ret;
}

bool dmr_index_erase(struct dmr_index *ix, u64 block, u64 *value)
{
	struct dmr_leaf *l, *gone = NULL;
	struct dmr_dir *d;
	unsigned long flags;
	unsigned int i, p, j;
	bool found = false;

	mutex_lock(&ix->mutex);
	d = dmr_index_dir(ix);
	if (!d->n)
		goto out;
	i = dmr_dir_route(d, d->n, block);
	l = d->leaf[i];
	p = dmr_leaf_count_lt(l, l->n, block);
	if (p == l->n || l->key[p] != block)
		goto out;
	found = true;
	*value = l->val[p];
	write_seqlock_irqsave(&ix->seq, flags);
	memmove(l->key + p, l->key + p + 1, (l->n - p - 1) * sizeof(*l->key));
	memmove(l->val + p, l->val + p + 1, (l->n - p - 1) * sizeof(*l->val));
	l->n--;
	dmr_leaf_rehint_at(l, p, block, -1);
	if (!l->n && d->n > 1) {
		gone = l;
		dmr_dir_remove(d, i);
	} else if (l->n <= DMR_LEAF_CAP / 4) {
		/* Merge leaf j + 1 into leaf j when both fit in half a leaf. */
		if (i > 0 && d->leaf[i - 1]->n + l->n <= DMR_LEAF_CAP / 2)
			j = i - 1;
		else if (i + 1 < d->n && d->leaf[i + 1]->n + l->n <= DMR_LEAF_CAP / 2)
			j = i;
		else
			j = UINT_MAX;
		if (j != UINT_MAX) {
			struct dmr_leaf *a = d->leaf[j], *b = d->leaf[j + 1];

			memcpy(a->key + a->n, b->key, b->n * sizeof(*b->key));
			memcpy(a->val + a->n, b->val, b->n * sizeof(*b->val));
			a->n += b->n;
			dmr_leaf_rehint(a);
			gone = b;
			dmr_dir_remove(d, j + 1);
		}
	}
	write_sequnlock_irqrestore(&ix->seq, flags);
	if (gone)
		kfree_rcu(gone, rcu);
out:
	mutex_unlock(&ix->mutex);
	return found;
}
