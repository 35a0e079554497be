// SPDX-License-Identifier: GPL-2.0
/*
 * Userspace test of the remap index, kmod/index.c, compiled unmodified over shim.h (run.sh).
 *
 * 1. Randomized operations against a reference model (a value array and a bitmap over a 4 Mi block
 *    space) with four key distributions: random, ascending, a small range, descending. Stores fail
 *    with injected allocation failures now and then; a failed store must leave the index as it was.
 *    The structural invariants of leaves, directory and both hint tables are checked every few
 *    thousand operations, the full contents every few more.
 * 2. Keys spread over the whole 64-bit range (hint tables with large shifts).
 * 3. Draining from the front, then the sole leaf: an empty index goes to one entry and back
 *    without allocating.
 * 4. Allocation failures in dmr_index_new, and in stores that need the first leaf, a split or a
 *    bigger directory.
 * 5. Memory per entry for 1 Mi dense, every-64th and random keys (bounded at 64 bytes).
 * 6. Concurrency: reader threads look up keys that never change and keys that never exist while
 *    a writer splits, merges and grows the directory; frees are deferred until the readers stop.
 */
#include "../../kmod/index.c"

#include <time.h>

#define FAIL(...)                                                                          \
	do {                                                                               \
		fprintf(stderr, "FAIL %s:%d: ", __func__, __LINE__);                      \
		fprintf(stderr, __VA_ARGS__);                                              \
		fprintf(stderr, "\n");                                                     \
		exit(1);                                                                   \
	} while (0)

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond))                                                               \
			FAIL(__VA_ARGS__);                                                 \
	} while (0)

#define VALUE_MASK ((1ull << 62) - 1)
#define ULL(x) ((unsigned long long)(x))

static u64 rng_state = 88172645463325252ull;

static u64 rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* ---- Structural invariants ---------------------------------------------------------------- */

/* Leaf hint table: hint[b] is the first entry whose bucket (key - key[0]) >> shift is >= b. */
static void check_leaf(const struct dmr_leaf *l)
{
	unsigned int b, j = 0;

	CHECK(l->n <= DMR_LEAF_CAP, "leaf holds %u entries", l->n);
	if (!l->n)
		return;
	CHECK((l->key[l->n - 1] - l->key[0]) >> l->shift < DMR_LEAF_HINTS,
	      "leaf span %llu does not fit its buckets (shift %u)",
	      ULL(l->key[l->n - 1] - l->key[0]), l->shift);
	for (b = 0; b <= DMR_LEAF_HINTS; b++) {
		while (j < l->n && (l->key[j] - l->key[0]) >> l->shift < b)
			j++;
		CHECK(l->hint[b] == j, "leaf hint[%u] is %u, expected %u", b, l->hint[b], j);
	}
}

/* Directory hint table: hint[h] is the last leaf whose key is <= h << shift. */
static void check_dir_hints(const struct dmr_dir *d)
{
	unsigned int h, j = 0;

	for (h = 0; h < d->nhint; h++) {
		unsigned __int128 start = (unsigned __int128)h << d->shift;

		while (j < d->n && d->key[j] <= start)
			j++;
		CHECK(d->hint[h] == (j ? j - 1 : 0), "dir hint[%u] is %u, expected %u", h,
		      d->hint[h], j ? j - 1 : 0);
	}
	CHECK(d->hint[d->nhint] == (d->n ? d->n - 1 : 0), "dir hint[nhint] is %u (n %u)",
	      d->hint[d->nhint], d->n);
	CHECK(!d->n || d->key[d->n - 1] >> d->shift < d->nhint,
	      "directory keys beyond the hint buckets");
}

/* Checks the whole structure; returns the number of entries. */
static u64 check_invariants(const struct dmr_index *ix)
{
	const struct dmr_dir *d = ix->dir;
	u64 entries = 0, prev = 0;
	unsigned int i, j;

	CHECK(d->n <= d->cap, "directory n %u > cap %u", d->n, d->cap);
	CHECK(d->nhint >= 4 * d->cap && !(d->nhint & (d->nhint - 1)), "nhint %u for cap %u",
	      d->nhint, d->cap);
	CHECK(!d->n || d->key[0] == 0, "directory key[0] is %llu", ULL(d->key[0]));
	for (i = 0; i < d->n; i++) {
		const struct dmr_leaf *l = d->leaf[i];

		CHECK(l, "leaf %u missing", i);
		CHECK(l->n || d->n == 1, "leaf %u of %u empty", i, d->n);
		CHECK(!i || d->key[i] > d->key[i - 1], "directory keys out of order at %u", i);
		check_leaf(l);
		for (j = 0; j < l->n; j++) {
			u64 k = l->key[j];

			CHECK(k >= d->key[i] && (i + 1 == d->n || k < d->key[i + 1]),
			      "key %llu outside leaf %u's range", ULL(k), i);
			CHECK(!entries || k > prev, "keys out of order: %llu after %llu", ULL(k),
			      ULL(prev));
			CHECK(l->val[j] <= VALUE_MASK, "value beyond 62 bits");
			prev = k;
			entries++;
		}
	}
	for (i = d->n; i < d->cap; i++)
		CHECK(!d->leaf[i], "directory slot %u beyond n %u not NULL", i, d->n);
	check_dir_hints(d);
	return entries;
}

/* ---- Reference model over a block space of SPACE blocks ------------------------------------ */

#define SPACE (1u << 22)

static u64 *model_val;
static u64 *model_bits;
static u64 model_count;

static bool model_has(u64 k)
{
	return k < SPACE && (model_bits[k / 64] >> (k % 64) & 1);
}

static void model_set(u64 k, u64 v)
{
	if (!model_has(k))
		model_count++;
	model_bits[k / 64] |= 1ull << (k % 64);
	model_val[k] = v;
}

static void model_clear(u64 k)
{
	if (model_has(k))
		model_count--;
	model_bits[k / 64] &= ~(1ull << (k % 64));
}

/* The first present block in [first, last], if any. */
static bool model_find(u64 first, u64 last, u64 *block)
{
	u64 w, bits;

	if (first >= SPACE)
		return false;
	w = first / 64;
	bits = model_bits[w] & (~0ull << (first % 64));
	for (;;) {
		if (bits) {
			u64 k = w * 64 + __builtin_ctzll(bits);

			if (k > last)
				return false;
			*block = k;
			return true;
		}
		if (++w >= SPACE / 64 || w * 64 > last)
			return false;
		bits = model_bits[w];
	}
}

static void check_find(struct dmr_index *ix, u64 first, u64 last)
{
	u64 block = 0, value = 0, want = 0;
	bool found = dmr_index_find(ix, first, last, &block, &value);
	bool want_found = model_find(first, last, &want);

	CHECK(found == want_found, "find [%llu, %llu]: found %d, model %d", ULL(first), ULL(last),
	      found, want_found);
	CHECK(!found || (block == want && value == model_val[want]),
	      "find [%llu, %llu]: %llu=%llu, model %llu=%llu", ULL(first), ULL(last), ULL(block),
	      ULL(value), ULL(want), ULL(model_val[want]));
}

/* The index holds exactly the model's entries. */
static void check_contents(struct dmr_index *ix)
{
	u64 next = 0, block, value, want, n = 0;

	while (dmr_index_find(ix, next, ~0ull, &block, &value)) {
		CHECK(model_find(next, ~0ull, &want) && want == block,
		      "walk from %llu: index has %llu, model does not", ULL(next), ULL(block));
		CHECK(value == model_val[block], "walk: value of %llu", ULL(block));
		n++;
		next = block + 1;
	}
	CHECK(!model_find(next, ~0ull, &want), "walk: index lacks %llu", ULL(want));
	CHECK(n == model_count, "walk: %llu entries, model %llu", ULL(n), ULL(model_count));
}

enum dist { RANDOM, ASCENDING, SMALL_RANGE, DESCENDING, NDIST };
static const char *const dist_name[NDIST] = { "random", "ascending", "small range", "descending" };

static u64 pick_key(enum dist dist, u64 step)
{
	switch (dist) {
	case RANDOM:
		return rnd() % SPACE;
	case ASCENDING:
		return step % SPACE;
	case SMALL_RANGE:
		return rnd() % 5000;
	default:
		return SPACE - 1 - step % SPACE;
	}
}

#define OPS_PER_DIST 250000
#define INVARIANTS_EVERY 4000
#define CONTENTS_EVERY 50000

static void test_model(struct dmr_index *ix)
{
	u64 enomem = 0, stores = 0, erased = 0;
	int dist;

	for (dist = 0; dist < NDIST; dist++) {
		u64 step;

		for (step = 0; step < OPS_PER_DIST; step++) {
			u64 k = pick_key(dist, step), v, got;
			unsigned int op = rnd() % 10;

			if (op < 5) {
				int ret;

				v = rnd() & VALUE_MASK;
				shim_fail_one_in = step % 7 == 0 ? 3 : 0;
				ret = dmr_index_store(ix, k, v);
				shim_fail_one_in = 0;
				if (ret == -ENOMEM) {
					/* Nothing changed: not the new entry, nor any other. */
					enomem++;
					CHECK(check_invariants(ix) == model_count,
					      "entry count changed by a failed store of %llu",
					      ULL(k));
					check_find(ix, k, k);
					check_find(ix, k ? k - 1 : 0, k + 1);
					continue;
				}
				CHECK(!ret, "store %llu: %d", ULL(k), ret);
				model_set(k, v);
				stores++;
			} else if (op < 8) {
				/* Near the key: erases in ascending/descending runs hit entries. */
				k = op == 7 && k >= 300 ? k - rnd() % 300 : k;
				got = ~0ull;
				CHECK(dmr_index_erase(ix, k, &got) == model_has(k), "erase %llu",
				      ULL(k));
				CHECK(!model_has(k) || got == model_val[k], "erase %llu: value %llu",
				      ULL(k), ULL(got));
				erased += model_has(k);
				model_clear(k);
			} else {
				u64 len = rnd() % 3 ? rnd() % 8 : rnd() % 100000;

				check_find(ix, k, k + len);
			}
			if (step % INVARIANTS_EVERY == 0)
				CHECK(check_invariants(ix) == model_count, "entry count");
			if (step % CONTENTS_EVERY == 0)
				check_contents(ix);
		}
		CHECK(check_invariants(ix) == model_count, "entry count");
		check_contents(ix);
		printf("  %-11s  entries %7llu  leaves %5u  directory slots %5u\n", dist_name[dist],
		       ULL(model_count), ix->dir->n, ix->dir->cap);
	}
	CHECK(enomem > 50, "only %llu injected failures reached a store", ULL(enomem));
	printf("  %llu stores, %llu erases, %llu stores failed with ENOMEM (index unchanged)\n",
	       ULL(stores), ULL(erased), ULL(enomem));
}

/* Remove everything from the front, as the loader does when a table is replaced. */
static void test_drain(struct dmr_index *ix)
{
	u64 block, value, got, n = 0;

	while (dmr_index_find(ix, 0, ~0ull, &block, &value)) {
		CHECK(model_has(block) && value == model_val[block], "drain: %llu", ULL(block));
		CHECK(dmr_index_erase(ix, block, &got) && got == value, "drain: erase %llu",
		      ULL(block));
		model_clear(block);
		if (++n % 5000 == 0)
			check_invariants(ix);
	}
	CHECK(model_count == 0, "drain: %llu entries left in the model", ULL(model_count));
	CHECK(check_invariants(ix) == 0, "drain: entries left");
	CHECK(ix->dir->n == 1 && ix->dir->leaf[0]->n == 0, "drained index: %u leaves",
	      ix->dir->n);
	printf("  drained %llu entries from the front\n", ULL(n));
}

/* An empty index keeps its sole leaf: one entry in and out allocates nothing. */
static void test_sole_leaf(struct dmr_index *ix)
{
	long allocs = shim_live_allocs;
	u64 block, value, got;
	int r;

	for (r = 0; r < 2000; r++) {
		u64 k = r % 3 ? rnd() % 1000 : rnd();

		CHECK(!dmr_index_find(ix, 0, ~0ull, &block, &value), "empty index finds %llu",
		      ULL(block));
		CHECK(!dmr_index_erase(ix, k, &got), "empty index erases %llu", ULL(k));
		CHECK(!dmr_index_store(ix, k, r), "store %llu", ULL(k));
		CHECK(dmr_index_find(ix, 0, ~0ull, &block, &value) && block == k && value == (u64)r,
		      "one entry");
		CHECK(dmr_index_find(ix, k, k, &block, &value) && block == k, "exact find");
		CHECK(!k || !dmr_index_find(ix, 0, k - 1, &block, &value), "find before");
		CHECK(k == ~0ull || !dmr_index_find(ix, k + 1, ~0ull, &block, &value),
		      "find after");
		CHECK(dmr_index_erase(ix, k, &got) && got == (u64)r, "erase the one entry");
		CHECK(!dmr_index_erase(ix, k, &got), "erase twice");
		CHECK(check_invariants(ix) == 0, "not empty");
	}
	CHECK(shim_live_allocs == allocs, "sole-leaf cycles allocated: %ld -> %ld", allocs,
	      shim_live_allocs);
}

/* Keys over the whole 64-bit range, against a sorted array. */
static int cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

static void test_wide_keys(void)
{
	struct dmr_index *ix = dmr_index_new();
	u64 keys[64 * 12 + 2], block, value, got;
	unsigned int n = 0, i, j;

	CHECK(ix, "dmr_index_new");
	for (i = 0; i < 64; i++)
		for (j = 0; j < 12; j++)
			keys[n++] = (1ull << i) - 6 + j;
	keys[n++] = 0;
	keys[n++] = ~0ull;
	qsort(keys, n, sizeof(*keys), cmp_u64);
	for (i = j = 0; i < n; i++)
		if (!j || keys[i] != keys[j - 1])
			keys[j++] = keys[i];
	n = j;
	/* Insert in a scrambled order. */
	for (i = 0; i < n; i++) {
		u64 k = keys[(i * 389) % n];

		CHECK(!dmr_index_store(ix, k, k & VALUE_MASK), "store %llx", ULL(k));
	}
	CHECK(check_invariants(ix) == n, "entry count");
	for (i = 0; i < n; i++) {
		CHECK(dmr_index_find(ix, keys[i], keys[i], &block, &value) && block == keys[i] &&
			      value == (keys[i] & VALUE_MASK),
		      "find %llx", ULL(keys[i]));
		if (keys[i] == ~0ull)
			continue;
		CHECK(dmr_index_find(ix, keys[i] + 1, ~0ull, &block, &value) &&
			      block == keys[i + 1],
		      "next after %llx", ULL(keys[i]));
		if (keys[i + 1] - keys[i] > 1)
			CHECK(!dmr_index_find(ix, keys[i] + 1, keys[i + 1] - 1, &block, &value),
			      "gap after %llx", ULL(keys[i]));
	}
	for (i = 0; i < n; i++) {
		u64 k = keys[(i * 211) % n];

		CHECK(dmr_index_erase(ix, k, &got) && got == (k & VALUE_MASK), "erase %llx",
		      ULL(k));
		if (i % 50 == 0)
			CHECK(check_invariants(ix) == n - i - 1, "entry count");
	}
	CHECK(check_invariants(ix) == 0, "entries left");
	dmr_index_free(ix);
	printf("  %u keys spread over 64 bits\n", n);
}

/* Failed allocations where a store needs one: the first leaf, a split, a bigger directory. */
static void test_store_fails(void)
{
	struct dmr_index *ix = dmr_index_new();
	u64 i, n = 8 * DMR_LEAF_CAP, block, value;
	long allocs;

	CHECK(ix, "dmr_index_new");
	shim_fail_one_in = 1;
	CHECK(dmr_index_store(ix, 10, 1) == -ENOMEM, "first leaf: allocation failure ignored");
	shim_fail_one_in = 0;
	CHECK(check_invariants(ix) == 0 && !dmr_index_find(ix, 0, ~0ull, &block, &value),
	      "failed first store left an entry");
	/* Ascending keys fill the 8 leaves of the first directory completely. */
	for (i = 0; i < n; i++)
		CHECK(!dmr_index_store(ix, 2 * i, i), "store %llu", ULL(2 * i));
	CHECK(ix->dir->n == 8 && ix->dir->cap == 8, "directory %u/%u", ix->dir->n, ix->dir->cap);
	allocs = shim_live_allocs;
	shim_fail_one_in = 1;
	CHECK(dmr_index_store(ix, 2 * n, 0) == -ENOMEM, "append: allocation failure ignored");
	CHECK(dmr_index_store(ix, 101, 0) == -ENOMEM, "split: allocation failure ignored");
	CHECK(!dmr_index_store(ix, 100, 7), "update without allocating");
	shim_fail_one_in = 0;
	CHECK(shim_live_allocs == allocs, "failed stores changed the allocations");
	CHECK(check_invariants(ix) == n && ix->dir->cap == 8, "failed stores changed the index");
	CHECK(!dmr_index_find(ix, 101, 101, &block, &value), "failed store left its entry");
	CHECK(dmr_index_find(ix, 100, 100, &block, &value) && value == 7, "update lost");
	for (i = 0; i < n; i++)
		CHECK(dmr_index_find(ix, 2 * i, 2 * i, &block, &value) &&
			      value == (i == 50 ? 7 : i),
		      "entry %llu after failed stores", ULL(2 * i));
	CHECK(!dmr_index_store(ix, 101, 0), "split after the failures");
	CHECK(check_invariants(ix) == n + 1 && ix->dir->cap == 16, "directory did not grow");
	dmr_index_free(ix);
}

static void test_new_fails(void)
{
	long allocs = shim_live_allocs;
	int failed = 0, i;

	for (i = 0; i < 200; i++) {
		struct dmr_index *ix;

		shim_fail_one_in = 2;
		ix = dmr_index_new();
		shim_fail_one_in = 0;
		failed += !ix;
		dmr_index_free(ix);
	}
	CHECK(failed > 0 && failed < 200, "dmr_index_new failed %d of 200 times", failed);
	CHECK(shim_live_allocs == allocs, "dmr_index_new leaked after a failure");
}

/* ---- Memory per entry ----------------------------------------------------------------------- */

#define FILL_ENTRIES 1000000
#define MAX_BYTES_PER_ENTRY 64.0

static void test_memory(void)
{
	static const char *const name[] = { "dense", "every 64th", "random" };
	int pat;

	for (pat = 0; pat < 3; pat++) {
		size_t base = shim_live_bytes;
		struct dmr_index *ix = dmr_index_new();
		u64 i, entries;
		double per;

		CHECK(ix, "dmr_index_new");
		rng_state = 7;
		for (i = 0; i < FILL_ENTRIES; i++) {
			u64 k = pat == 0 ? i : pat == 1 ? i * 64 : rnd() % (1ull << 40);

			CHECK(!dmr_index_store(ix, k, i), "store %llu", ULL(k));
		}
		entries = check_invariants(ix);
		per = (double)(shim_live_bytes - base) / (double)entries;
		printf("  %-10s  %7llu entries  %5u leaves  %5.1f bytes/entry\n", name[pat],
		       ULL(entries), ix->dir->n, per);
		CHECK(per <= MAX_BYTES_PER_ENTRY, "%s: %.1f bytes per entry", name[pat], per);
		dmr_index_free(ix);
	}
}

/* ---- Concurrency ---------------------------------------------------------------------------- */

/*
 * Stable keys (multiples of STRIDE) are stored before the readers start and never touched; absent
 * keys (STRIDE / 2 past them) are never stored. The writer stores and erases the keys in between,
 * every value being value_of(key), so any answer a reader gets can be checked.
 */
#define STABLE 256
#define STRIDE 4096ull
#define READERS 2
#define WRITER_OPS 150000
#define READER_MIN 1000

static struct dmr_index *cix;
static int readers_stop;

static u64 value_of(u64 k)
{
	return (k * 0x9e3779b97f4a7c15ull) & VALUE_MASK;
}

static void *reader(void *arg)
{
	u64 state = (uintptr_t)arg * 0x2545f4914f6cdd1dull + 1, lookups = 0, *ret;

	/* At least READER_MIN lookups each, however slowly the readers get scheduled. */
	while (!__atomic_load_n(&readers_stop, __ATOMIC_RELAXED) || lookups < READER_MIN) {
		u64 i, k, block, value;

		state ^= state << 13;
		state ^= state >> 7;
		state ^= state << 17;
		i = state % STABLE;
		k = i * STRIDE;
		CHECK(dmr_index_find(cix, k, k, &block, &value) && block == k &&
			      value == value_of(k),
		      "stable key %llu: found %llu=%llu", ULL(k), ULL(block), ULL(value));
		CHECK(!dmr_index_find(cix, k + STRIDE / 2, k + STRIDE / 2, &block, &value),
		      "absent key %llu: found %llu=%llu", ULL(k + STRIDE / 2), ULL(block),
		      ULL(value));
		/* A range up to the next stable key always finds something consistent. */
		if (i + 1 < STABLE) {
			CHECK(dmr_index_find(cix, k + 1, k + STRIDE, &block, &value),
			      "nothing in (%llu, %llu]", ULL(k), ULL(k + STRIDE));
			CHECK(block > k && block <= k + STRIDE && block != k + STRIDE / 2 &&
				      value == value_of(block),
			      "range after %llu: %llu=%llu", ULL(k), ULL(block), ULL(value));
		}
		lookups++;
	}
	ret = malloc(sizeof(*ret));
	CHECK(ret, "malloc");
	*ret = lookups;
	return ret;
}

static u64 churn_key(u64 x)
{
	u64 k = x % (STABLE * STRIDE);

	if (k % (STRIDE / 2) == 0)
		k++;
	return k;
}

static void writer(void)
{
	u64 op = 0, base = 0, got;
	unsigned int phase;

	for (phase = 0; op < WRITER_OPS; phase = (phase + 1) % 3) {
		u64 n = 2000 + rnd() % 20000, i;

		for (i = 0; i < n && op < WRITER_OPS; i++, op++) {
			u64 k;

			switch (phase) {
			case 0: /* dense ascending run: fills leaves, grows the directory */
				k = churn_key(base + i);
				break;
			case 1: /* random keys: splits in the middle of leaves */
				k = churn_key(rnd());
				break;
			default: /* erase the run again, and random keys: merges */
				k = i % 2 ? churn_key(base + i) : churn_key(rnd());
				break;
			}
			if (phase < 2)
				CHECK(!dmr_index_store(cix, k, value_of(k)), "store %llu", ULL(k));
			else
				dmr_index_erase(cix, k, &got);
		}
		if (phase == 2)
			base = rnd();
	}
}

static void test_concurrency(void)
{
	pthread_t t[READERS];
	u64 total = 0, i, *lookups;
	unsigned int cap;

	shim_defer_frees = true;
	cix = dmr_index_new();
	CHECK(cix, "dmr_index_new");
	for (i = 0; i < STABLE; i++)
		CHECK(!dmr_index_store(cix, i * STRIDE, value_of(i * STRIDE)), "store");
	cap = cix->dir->cap;
	readers_stop = 0;
	for (i = 0; i < READERS; i++)
		CHECK(!pthread_create(&t[i], NULL, reader, (void *)(uintptr_t)(i + 1)), "thread");
	writer();
	__atomic_store_n(&readers_stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < READERS; i++) {
		CHECK(!pthread_join(t[i], (void **)&lookups), "join");
		total += *lookups;
		free(lookups);
	}
	shim_flush_deferred();
	shim_defer_frees = false;
	CHECK(check_invariants(cix) >= STABLE, "entries");
	CHECK(cix->dir->cap > cap, "the directory never grew (cap %u)", cap);
	printf("  %d readers: %llu lookups while the writer made %d changes (directory %u -> %u)\n",
	       READERS, ULL(total), WRITER_OPS, cap, cix->dir->cap);
	dmr_index_free(cix);
}

int main(void)
{
	struct dmr_index *ix;
	time_t t0 = time(NULL);

	model_val = calloc(SPACE, sizeof(*model_val));
	model_bits = calloc(SPACE / 64, sizeof(*model_bits));
	CHECK(model_val && model_bits, "model allocation");
	ix = dmr_index_new();
	CHECK(ix, "dmr_index_new");
	CHECK(check_invariants(ix) == 0, "new index not empty");

	printf("model-based operations:\n");
	test_model(ix);
	printf("drain and sole leaf:\n");
	test_drain(ix);
	test_sole_leaf(ix);
	dmr_index_free(ix);
	printf("wide keys:\n");
	test_wide_keys();
	test_store_fails();
	test_new_fails();
	printf("memory per entry:\n");
	test_memory();
	printf("concurrency:\n");
	test_concurrency();
	CHECK(shim_live_allocs == 0, "%ld allocations left", shim_live_allocs);
	free(model_val);
	free(model_bits);
	printf("index test passed in %ld s\n", (long)(time(NULL) - t0));
	return 0;
}
