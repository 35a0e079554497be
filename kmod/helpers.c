// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for dm_remap: static inline functions and macros of the block layer that Rust cannot
 * call directly.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
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
