// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for dm_remap: static inline functions and macros of the block layer that Rust cannot
 * call directly. The remap index (dmr_index_*) is in index.c.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/dm-ioctl.h>
#include <linux/random.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/task_stack.h>
#include <linux/mm.h>
#include <linux/rcupdate.h>
#include <linux/vmalloc.h>
#include <linux/vmstat.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>
#include <linux/workqueue.h>
#include "helpers.h"

void dmr_bio_set_dev(struct bio *bio, struct dm_dev *dev)
{
	bio_set_dev(bio, dev->bdev);
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

/*
 * Synchronous I/O of `len` bytes (a multiple of 512) at `buf`; process context only. `flags`:
 * DMR_RW_WRITE, plus for writes DMR_RW_FUA (durable on completion) and DMR_RW_PREFLUSH
 * (everything completed before is made durable first).
 *
 * bdev_rw_virt() needs memory of the kernel's direct mapping (kmalloc, page allocator). Any other
 * buffer (vmalloc, a stack, a buffer not aligned for the device's DMA) goes through a kmalloc'd
 * bounce buffer, one piece at a time: the preflush goes with the first piece, FUA with each.
 */
static bool dmr_direct_ok(struct block_device *bdev, const void *buf, unsigned int len)
{
	return !is_vmalloc_addr(buf) && !object_is_on_stack(buf) && virt_addr_valid(buf) &&
	       virt_addr_valid(buf + len - 1) &&
	       !((unsigned long)buf & bdev_dma_alignment(bdev));
}

int dmr_dev_rw(struct dm_dev *dev, sector_t sector, void *buf, unsigned int len, unsigned int flags)
{
	struct block_device *bdev = dev->bdev;
	bool write = flags & DMR_RW_WRITE;
	blk_opf_t op = REQ_OP_READ;
	unsigned int chunk, done, n;
	void *bounce;
	int ret = 0;

	if (!len || len % SECTOR_SIZE)
		return -EINVAL;
	if (write) {
		op = REQ_OP_WRITE | REQ_SYNC;
		if (flags & DMR_RW_FUA)
			op |= REQ_FUA;
		if (flags & DMR_RW_PREFLUSH)
			op |= REQ_PREFLUSH;
	}
	if (dmr_direct_ok(bdev, buf, len))
		return bdev_rw_virt(bdev, sector, buf, len, (__force enum req_op)op);

	/* A power of two, a multiple of the logical block size: kmalloc aligns it naturally. */
	chunk = max_t(unsigned int, PAGE_SIZE, bdev_logical_block_size(bdev));
	bounce = kmalloc(chunk, GFP_NOIO);
	if (!bounce)
		return -ENOMEM;
	for (done = 0; done < len && !ret; done += n) {
		n = min(chunk, len - done);
		if (write)
			memcpy(bounce, buf + done, n);
		ret = bdev_rw_virt(bdev, sector + done / SECTOR_SIZE, bounce, n,
				   (__force enum req_op)op);
		if (!ret && !write)
			memcpy(buf + done, bounce, n);
		op &= ~REQ_PREFLUSH;
	}
	kfree(bounce);
	return ret;
}

int dmr_dev_flush(struct dm_dev *dev)
{
	return blkdev_issue_flush(dev->bdev);
}

/* The kernel's name of the device ("nvme0n1", "vda1"), NUL-terminated in `buf`. */
void dmr_dev_disk_name(const struct dm_dev *dev, char *buf, unsigned int len)
{
	snprintf(buf, len, "%pg", dev->bdev);
}

void dmr_random_bytes(void *buf, unsigned int len)
{
	get_random_bytes(buf, len);
}

/*
 * Copy `len` bytes between the bio's data (as saved by Bio::save_data in dm.rs), starting `off` bytes
 * in, and `buf`. Returns -EINVAL if the range is outside the saved data.
 */
int dmr_bio_copy(struct bio *bio, const struct dmr_iter *saved, unsigned int off, void *buf,
		 unsigned int len, bool to_bio)
{
	struct bvec_iter iter = {
		.bi_sector = saved->sector,
		.bi_size = saved->size,
		.bi_idx = saved->idx,
		.bi_offset = saved->done,
	};
	struct bvec_iter it;
	struct bio_vec bv;
	char *p = buf;

	if (off > saved->size || len > saved->size - off)
		return -EINVAL;
	bvec_iter_advance(bio->bi_io_vec, &iter, off);
	iter.bi_size = len;
	__bio_for_each_segment(bv, bio, it, iter) {
		if (to_bio)
			memcpy_to_bvec(&bv, p);
		else
			memcpy_from_bvec(p, &bv);
		p += bv.bv_len;
	}
	return 0;
}

/* Complete a bio the target took over (from map or end_io) with `status`. */
void dmr_bio_end(struct bio *bio, u8 status)
{
	bio->bi_status = status;
	bio_endio(bio);
}

bool dmr_bio_is_read(const struct bio *bio)
{
	return bio_op(bio) == REQ_OP_READ;
}

bool dmr_bio_is_data_write(const struct bio *bio)
{
	return bio_op(bio) == REQ_OP_WRITE;
}

/*
 * Whether dm_accept_partial_bio() may be called on a bio being mapped by `ti`: it must have data,
 * not be a duplicate (flushes, and discards/write-zeroes when the target asks for several
 * copies), not be atomic and not be on a zoned device (dm_accept_partial_bio BUGs on those).
 */
bool dmr_bio_may_split(const struct dm_target *ti, const struct bio *bio)
{
	if (!bio_sectors(bio) || (bio->bi_opf & (REQ_ATOMIC | REQ_PREFLUSH)) ||
	    bdev_is_zoned(bio->bi_bdev))
		return false;
	switch (bio_op(bio)) {
	case REQ_OP_READ:
	case REQ_OP_WRITE:
		return true;
	case REQ_OP_DISCARD:
		return ti->num_discard_bios <= 1;
	case REQ_OP_SECURE_ERASE:
		return ti->num_secure_erase_bios <= 1;
	case REQ_OP_WRITE_ZEROES:
		return ti->num_write_zeroes_bios <= 1;
	default:
		return false;
	}
}

/* The kind (DMR_STS_*) of a block-layer status: the one table of the kernel's numbers. */
unsigned int dmr_sts_kind(u8 status)
{
	switch ((__force blk_status_t)status) {
	case BLK_STS_OK: return DMR_STS_OK;
	case BLK_STS_NOTSUPP: return DMR_STS_NOTSUPP;
	case BLK_STS_TIMEOUT: return DMR_STS_TIMEOUT;
	case BLK_STS_NOSPC: return DMR_STS_NOSPC;
	case BLK_STS_TRANSPORT: return DMR_STS_TRANSPORT;
	case BLK_STS_TARGET: return DMR_STS_TARGET;
	case BLK_STS_RESV_CONFLICT: return DMR_STS_RESV_CONFLICT;
	case BLK_STS_MEDIUM: return DMR_STS_MEDIUM;
	case BLK_STS_PROTECTION: return DMR_STS_PROTECTION;
	case BLK_STS_RESOURCE: return DMR_STS_RESOURCE;
	case BLK_STS_IOERR: return DMR_STS_IOERR;
	case BLK_STS_DM_REQUEUE: return DMR_STS_DM_REQUEUE;
	case BLK_STS_AGAIN: return DMR_STS_AGAIN;
	case BLK_STS_DEV_RESOURCE: return DMR_STS_DEV_RESOURCE;
	case BLK_STS_ZONE_OPEN_RESOURCE: return DMR_STS_ZONE_OPEN_RESOURCE;
	case BLK_STS_ZONE_ACTIVE_RESOURCE: return DMR_STS_ZONE_ACTIVE_RESOURCE;
	case BLK_STS_OFFLINE: return DMR_STS_OFFLINE;
	case BLK_STS_DURATION_LIMIT: return DMR_STS_DURATION_LIMIT;
	case BLK_STS_INVAL: return DMR_STS_INVAL;
	default: return DMR_STS_UNKNOWN;
	}
}

u8 dmr_sts_ioerr(void)
{
	return (__force u8)BLK_STS_IOERR;
}

void dmr_cond_resched(void)
{
	cond_resched();
}

unsigned int dmr_current_cpu(void)
{
	return raw_smp_processor_id();
}

unsigned int dmr_noio_save(void)
{
	return memalloc_noio_save();
}

void dmr_noio_restore(unsigned int flags)
{
	memalloc_noio_restore(flags);
}

u64 dmr_ktime_ns(void)
{
	return ktime_get_ns();
}

dev_t dmr_target_devt(struct dm_target *ti)
{
	return disk_devt(dm_disk(dm_table_get_md(ti->table)));
}

/* The user-visible name of the target's mapped device (dm_device_name() is "major:minor"). */
void dmr_target_md_name(struct dm_target *ti, char *buf, unsigned int len)
{
	char name[DM_NAME_LEN];

	if (!len)
		return;
	buf[0] = 0;
	if (!dm_copy_name_and_uuid(dm_table_get_md(ti->table), name, NULL))
		strscpy(buf, name, len);
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

/* Kernel memory in slab caches and vmalloc areas, in bytes (global counters). */
unsigned long dmr_kernel_mem_bytes(void)
{
	return (global_node_page_state_pages(NR_SLAB_RECLAIMABLE_B) +
		global_node_page_state_pages(NR_SLAB_UNRECLAIMABLE_B) +
		global_node_page_state(NR_VMALLOC)) << PAGE_SHIFT;
}

void dmr_rcu_barrier(void)
{
	rcu_barrier();
}

/*
 * A per-target work item on its own WQ_MEM_RECLAIM workqueue (the target handles bios there, so
 * it must make progress under memory pressure). `fn(ti)` runs in process context.
 */
struct dmr_worker {
	struct work_struct work;
	struct workqueue_struct *wq;
	struct dm_target *ti;
	void (*fn)(struct dm_target *ti);
};

static void dmr_worker_fn(struct work_struct *work)
{
	struct dmr_worker *w = container_of(work, struct dmr_worker, work);

	w->fn(w->ti);
}

struct dmr_worker *dmr_worker_new(struct dm_target *ti, void (*fn)(struct dm_target *ti))
{
	struct dmr_worker *w = kzalloc(sizeof(*w), GFP_KERNEL);

	if (!w)
		return NULL;
	w->wq = alloc_workqueue("dm_remap", WQ_MEM_RECLAIM | WQ_UNBOUND, 1);
	if (!w->wq) {
		kfree(w);
		return NULL;
	}
	INIT_WORK(&w->work, dmr_worker_fn);
	w->ti = ti;
	w->fn = fn;
	return w;
}

/* Any context. */
void dmr_worker_kick(struct dmr_worker *w)
{
	queue_work(w->wq, &w->work);
}

void dmr_worker_free(struct dmr_worker *w)
{
	cancel_work_sync(&w->work);
	destroy_workqueue(w->wq);
	kfree(w);
}

/*
 * ============================================================================================
 * Control device: the event wait queue and a misc device with poll.
 * ============================================================================================
 *
 * The event ring (events.rs) publishes the sequence number of its next event here after each
 * raise; readers of /dev/dm-remap sleep on, and poll, one wait queue woken by that. Both sides
 * are safe in any context: publishing is an atomic store plus a wake-up (irq-safe spinlock).
 */
#include <linux/miscdevice.h>
#include <linux/poll.h>
#include <linux/wait.h>

static DECLARE_WAIT_QUEUE_HEAD(dmr_event_wq);
static atomic64_t dmr_event_next = ATOMIC64_INIT(1);

/* Any context. Callers publish in sequence order (under the ring's lock). */
void dmr_event_publish(u64 next_seq)
{
	atomic64_set(&dmr_event_next, next_seq);
	/* wq_has_sleeper() orders the store above before its check of the queue. */
	if (wq_has_sleeper(&dmr_event_wq))
		wake_up_interruptible_poll(&dmr_event_wq, EPOLLIN | EPOLLRDNORM);
}

u64 dmr_event_published(void)
{
	return atomic64_read(&dmr_event_next);
}

/* Process context: sleep until an event with seq >= cursor has been raised, or a signal. */
int dmr_event_wait(u64 cursor)
{
	return wait_event_interruptible(dmr_event_wq, (u64)atomic64_read(&dmr_event_next) > cursor);
}

bool dmr_file_nonblock(const void *kiocb)
{
	const struct kiocb *k = kiocb;

	return (k->ki_filp->f_flags & O_NONBLOCK) || (k->ki_flags & IOCB_NOWAIT);
}

/*
 * The kernel crate's misc device has no poll. dmr_misc registers a copy of a miscdevice built by
 * the kernel crate (its file operations included) with a poll that waits on the event queue and
 * then asks the Rust callback whether the file can be read. The copy lives until deregistration
 * at module exit; open files hold a reference to the module (fops.owner), so none outlives it.
 */
struct dmr_misc {
	struct miscdevice misc;
	struct file_operations fops;
	unsigned int (*poll)(void *file);
};

static __poll_t dmr_misc_poll(struct file *file, struct poll_table_struct *pt)
{
	const struct dmr_misc *m = container_of_const(file->f_op, struct dmr_misc, fops);

	poll_wait(file, &dmr_event_wq, pt);
	/* Pairs with the barrier in wq_has_sleeper() of dmr_event_publish(). */
	smp_mb();
	return m->poll(file) ? EPOLLIN | EPOLLRDNORM : 0;
}

struct dmr_misc *dmr_misc_register(const void *tmpl, unsigned int (*poll)(void *file), int *err)
{
	const struct miscdevice *t = tmpl;
	struct dmr_misc *m = kzalloc(sizeof(*m), GFP_KERNEL);

	if (!m) {
		*err = -ENOMEM;
		return NULL;
	}
	m->fops = *t->fops;
	m->fops.poll = dmr_misc_poll;
	m->poll = poll;
	m->misc = *t;
	m->misc.fops = &m->fops;
	*err = misc_register(&m->misc);
	if (*err) {
		kfree(m);
		return NULL;
	}
	return m;
}

void dmr_misc_deregister(struct dmr_misc *m)
{
	misc_deregister(&m->misc);
	kfree(m);
}
