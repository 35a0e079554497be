// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for dm_remap: static inline functions and macros of the block layer that Rust cannot
 * call directly.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>
#include "helpers.h"

void dmr_bio_set_dev(struct bio *bio, struct dm_dev *dev)
{
	bio_set_dev(bio, dev->bdev);
}

sector_t dmr_bio_sector(const struct bio *bio)
{
	return bio->bi_iter.bi_sector;
}

void dmr_bio_set_sector(struct bio *bio, sector_t sector)
{
	bio->bi_iter.bi_sector = sector;
}

unsigned int dmr_bio_sectors(const struct bio *bio)
{
	return bio_sectors(bio);
}

unsigned int dmr_bio_op(const struct bio *bio)
{
	return (unsigned int)bio_op(bio);
}

bool dmr_bio_is_write(const struct bio *bio)
{
	return op_is_write(bio_op(bio));
}

bool dmr_bio_is_empty_flush(const struct bio *bio)
{
	return (bio->bi_opf & REQ_PREFLUSH) && !bio_sectors(bio);
}

unsigned long long dmr_dev_nr_sectors(const struct dm_dev *dev)
{
	return bdev_nr_sectors(dev->bdev);
}

unsigned int dmr_dev_logical_block_size(const struct dm_dev *dev)
{
	return bdev_logical_block_size(dev->bdev);
}

dev_t dmr_dev_devt(const struct dm_dev *dev)
{
	return dev->bdev->bd_dev;
}

const char *dmr_dev_name(const struct dm_dev *dev)
{
	return dev->name;
}

void dmr_limits_raise_io_min(struct queue_limits *limits, unsigned int bytes)
{
	if (limits->io_min < bytes)
		limits->io_min = bytes;
}

void dmr_submit_bio_remap(struct bio *bio)
{
	dm_submit_bio_remap(bio, NULL);
}

/* Synchronous I/O of a kmalloc'd buffer; process context only. */
int dmr_dev_rw(struct dm_dev *dev, sector_t sector, void *buf, unsigned int len, bool write)
{
	return bdev_rw_virt(dev->bdev, sector, buf, len,
			    write ? REQ_OP_WRITE | REQ_SYNC : REQ_OP_READ);
}

int dmr_dev_flush(struct dm_dev *dev)
{
	return blkdev_issue_flush(dev->bdev);
}

void dmr_cond_resched(void)
{
	cond_resched();
}

unsigned int dmr_current_cpu(void)
{
	return raw_smp_processor_id();
}

u64 dmr_ktime_ns(void)
{
	return ktime_get_ns();
}

dev_t dmr_target_devt(struct dm_target *ti)
{
	return disk_devt(dm_disk(dm_table_get_md(ti->table)));
}

bool dmr_bio_dev_is(const struct bio *bio, const struct dm_dev *dev)
{
	return bio->bi_bdev == dev->bdev;
}

/*
 * dm_table_event() takes a mutex, so targets raise it from a work item. The work is cancelled
 * (synchronously) before the target, and so its table, goes away.
 */
struct dmr_notifier {
	struct work_struct work;
	struct dm_table *table;
};

static void dmr_notifier_fn(struct work_struct *work)
{
	struct dmr_notifier *n = container_of(work, struct dmr_notifier, work);

	dm_table_event(n->table);
}

struct dmr_notifier *dmr_notifier_new(struct dm_target *ti)
{
	struct dmr_notifier *n = kzalloc(sizeof(*n), GFP_KERNEL);

	if (!n)
		return NULL;
	INIT_WORK(&n->work, dmr_notifier_fn);
	n->table = ti->table;
	return n;
}

/* Any context. */
void dmr_notifier_raise(struct dmr_notifier *n)
{
	schedule_work(&n->work);
}

void dmr_notifier_free(struct dmr_notifier *n)
{
	cancel_work_sync(&n->work);
	kfree(n);
}

void dmr_bio_list_init(struct bio_list *bl)
{
	bio_list_init(bl);
}

void dmr_bio_list_add(struct bio_list *bl, struct bio *bio)
{
	bio_list_add(bl, bio);
}

struct bio *dmr_bio_list_pop(struct bio_list *bl)
{
	return bio_list_pop(bl);
}

/*
 * The remap index: an xarray of value entries (no allocation per entry beyond the tree nodes).
 * Loads and finds are lock-free (RCU inside xa_load/xa_find); stores and erases take the xarray's
 * own spinlock and may allocate nodes, so they run in process context only.
 */
void dmr_xa_init(struct xarray *xa)
{
	xa_init(xa);
}

void dmr_xa_destroy(struct xarray *xa)
{
	xa_destroy(xa);
}

int dmr_xa_store(struct xarray *xa, unsigned long index, unsigned long value)
{
	return xa_err(xa_store(xa, index, xa_mk_value(value), GFP_KERNEL));
}

bool dmr_xa_load(struct xarray *xa, unsigned long index, unsigned long *value)
{
	void *entry = xa_load(xa, index);

	if (!xa_is_value(entry))
		return false;
	*value = xa_to_value(entry);
	return true;
}

bool dmr_xa_find(struct xarray *xa, unsigned long *index, unsigned long max, unsigned long *value)
{
	void *entry = xa_find(xa, index, max, XA_PRESENT);

	if (!xa_is_value(entry))
		return false;
	*value = xa_to_value(entry);
	return true;
}

bool dmr_xa_erase(struct xarray *xa, unsigned long index, unsigned long *value)
{
	void *entry = xa_erase(xa, index);

	if (!xa_is_value(entry))
		return false;
	*value = xa_to_value(entry);
	return true;
}
