/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers for dm_remap: static inline functions and macros of the block layer that Rust cannot
 * call directly. Each is a one-line wrapper; the logic lives in Rust, except for the remap index
 * (dmr_index_*, in index.c), a small data structure built on the kernel's RCU and seqlock
 * primitives.
 */
#ifndef DM_REMAP_HELPERS_H
#define DM_REMAP_HELPERS_H

#include <linux/types.h>

struct bio;
struct bio_list;
struct dm_dev;
struct dm_target;
struct queue_limits;

void dmr_bio_set_dev(struct bio *bio, struct dm_dev *dev);
unsigned int dmr_bio_op(const struct bio *bio);
bool dmr_bio_is_write(const struct bio *bio);
bool dmr_bio_is_empty_flush(const struct bio *bio);
unsigned long long dmr_dev_nr_sectors(const struct dm_dev *dev);
unsigned int dmr_dev_logical_block_size(const struct dm_dev *dev);
dev_t dmr_dev_devt(const struct dm_dev *dev);
const char *dmr_dev_name(const struct dm_dev *dev);
void dmr_limits_raise_io_min(struct queue_limits *limits, unsigned int bytes);
void dmr_submit_bio_remap(struct bio *bio);
#define DMR_RW_WRITE 1u
#define DMR_RW_FUA 2u
#define DMR_RW_PREFLUSH 4u
int dmr_dev_rw(struct dm_dev *dev, sector_t sector, void *buf, unsigned int len, unsigned int flags);
void dmr_dev_disk_name(const struct dm_dev *dev, char *buf, unsigned int len);
void dmr_random_bytes(void *buf, unsigned int len);

/* A bio's data position, saved at map time (struct bvec_iter). */
struct dmr_iter {
	u64 sector;
	u32 size;
	u32 idx;
	u32 done;
	u32 pad;
};
int dmr_bio_copy(struct bio *bio, const struct dmr_iter *saved, unsigned int off, void *buf,
		 unsigned int len, bool to_bio);
void dmr_bio_end(struct bio *bio, u8 status);
bool dmr_bio_is_read(const struct bio *bio);
bool dmr_bio_is_data_write(const struct bio *bio);
bool dmr_bio_may_split(const struct dm_target *ti, const struct bio *bio);

/*
 * Kinds of blk_status_t, numbered by this module (the kernel's numbers are not ABI): the Rust
 * side sees only these.
 */
#define DMR_STS_OK 0u
#define DMR_STS_NOTSUPP 1u
#define DMR_STS_TIMEOUT 2u
#define DMR_STS_NOSPC 3u
#define DMR_STS_TRANSPORT 4u
#define DMR_STS_TARGET 5u
#define DMR_STS_RESV_CONFLICT 6u
#define DMR_STS_MEDIUM 7u
#define DMR_STS_PROTECTION 8u
#define DMR_STS_RESOURCE 9u
#define DMR_STS_IOERR 10u
#define DMR_STS_DM_REQUEUE 11u
#define DMR_STS_AGAIN 12u
#define DMR_STS_DEV_RESOURCE 13u
#define DMR_STS_ZONE_OPEN_RESOURCE 14u
#define DMR_STS_ZONE_ACTIVE_RESOURCE 15u
#define DMR_STS_OFFLINE 16u
#define DMR_STS_DURATION_LIMIT 17u
#define DMR_STS_INVAL 18u
#define DMR_STS_UNKNOWN 255u
unsigned int dmr_sts_kind(u8 status);
u8 dmr_sts_ioerr(void);
int dmr_dev_flush(struct dm_dev *dev);
void dmr_cond_resched(void);
u64 dmr_ktime_ns(void);
unsigned int dmr_noio_save(void);
void dmr_noio_restore(unsigned int flags);
unsigned int dmr_current_cpu(void);
dev_t dmr_target_devt(struct dm_target *ti);
void dmr_target_md_name(struct dm_target *ti, char *buf, unsigned int len);
bool dmr_bio_dev_is(const struct bio *bio, const struct dm_dev *dev);

struct dmr_notifier;
struct dmr_notifier *dmr_notifier_new(struct dm_target *ti);
void dmr_notifier_raise(struct dmr_notifier *n);
void dmr_notifier_free(struct dmr_notifier *n);

void dmr_bio_list_init(struct bio_list *bl);
void dmr_bio_list_add(struct bio_list *bl, struct bio *bio);
struct bio *dmr_bio_list_pop(struct bio_list *bl);

struct dmr_index;
struct dmr_index *dmr_index_new(void);
void dmr_index_free(struct dmr_index *ix);
bool dmr_index_find(struct dmr_index *ix, u64 first, u64 last, u64 *block, u64 *value);
int dmr_index_store(struct dmr_index *ix, u64 block, u64 value);
bool dmr_index_erase(struct dmr_index *ix, u64 block, u64 *value);
unsigned long dmr_kernel_mem_bytes(void);
void dmr_rcu_barrier(void);

struct dmr_worker;
struct dmr_worker *dmr_worker_new(struct dm_target *ti, void (*fn)(struct dm_target *ti));
void dmr_worker_kick(struct dmr_worker *w);
void dmr_worker_free(struct dmr_worker *w);

/* Control device: event wait queue, and a misc device whose fops add poll (see helpers.c). */
void dmr_event_publish(u64 next_seq);
u64 dmr_event_published(void);
int dmr_event_wait(u64 cursor);
bool dmr_file_nonblock(const void *kiocb);
struct dmr_misc;
struct dmr_misc *dmr_misc_register(const void *tmpl, unsigned int (*poll)(void *file), int *err);
void dmr_misc_deregister(struct dmr_misc *m);

#endif
