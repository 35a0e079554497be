/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * dm_remap.h - userspace ABI of the dm-remap device-mapper target.
 *
 * This header is the single source of the ABI: userspace generates its Rust types from it with
 * bindgen, and the kernel module checks its own definitions against the sizes and offsets here.
 *
 * Control device: /dev/dm-remap (misc device, CAP_SYS_ADMIN required for every ioctl).
 *
 * Rules for every ioctl structure:
 *  - fixed layout, explicit padding, little-endian on the platforms the module supports;
 *  - the first field is `size`, set by the caller to sizeof(struct); the kernel refuses sizes it
 *    does not know (-EINVAL) and never copies out more than `size` bytes;
 *  - `flags` and `reserved` fields must be zero on input (-EINVAL otherwise) and are zeroed on
 *    output; nothing uninitialised is ever copied to userspace.
 */
#ifndef _UAPI_LINUX_DM_REMAP_H
#define _UAPI_LINUX_DM_REMAP_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define DMR_IOCTL_MAGIC 0xDB

/* Version of this ABI; bumped on any incompatible change. */
#define DMR_ABI_VERSION 1

/* DMR_IOC_VERSION: module and ABI versions. */
struct dmr_version {
	__u32 size;              /* in: sizeof(struct dmr_version) */
	__u32 abi_version;       /* out: DMR_ABI_VERSION */
	__u32 target_version[3]; /* out: version of the "remap" target type */
	__u32 flags;             /* in: 0 */
	__u64 reserved[4];       /* in: 0; out: 0 */
};

/* Operations of the in-kernel microbenchmark. */
enum dmr_bench_op {
	DMR_BENCH_NOOP = 0,   /* ioctl round trip with no work: the control-path floor */
	DMR_BENCH_ALLOC = 1,  /* spare-slot allocation (with free, to keep the pool steady) */
	DMR_BENCH_LOOKUP = 2, /* remap-index lookup of a random block */
	DMR_BENCH_INSERT = 3, /* remap-index insert of a new block (and erase) */
};

#define DMR_BENCH_MAX_ITERATIONS 10000000ULL
#define DMR_BENCH_MAX_ENTRIES 4000000ULL

/*
 * DMR_IOC_BENCH: run `iterations` operations of `op` in the kernel on a private index pre-filled
 * with `entries` remaps (not on any live target) and report per-operation times in nanoseconds,
 * measured with ktime in batches of `batch` operations (each sample is a batch's time / batch).
 */
struct dmr_bench {
	__u32 size;        /* in: sizeof(struct dmr_bench) */
	__u32 op;          /* in: enum dmr_bench_op */
	__u32 flags;       /* in: 0 */
	__u32 batch;       /* in: operations per timed sample, 1..1024 (0 = 16) */
	__u64 iterations;  /* in: 1..DMR_BENCH_MAX_ITERATIONS */
	__u64 entries;     /* in: index size, 0..DMR_BENCH_MAX_ENTRIES */
	__u64 ns_min;      /* out */
	__u64 ns_p50;      /* out */
	__u64 ns_p99;      /* out */
	__u64 ns_max;      /* out */
	__u64 ns_total;    /* out: wall time of the timed part */
	__u64 samples;     /* out: number of samples */
	__u64 reserved[4]; /* in: 0; out: 0 */
};

#define DMR_IOC_VERSION _IOWR(DMR_IOCTL_MAGIC, 0x00, struct dmr_version)
#define DMR_IOC_BENCH   _IOWR(DMR_IOCTL_MAGIC, 0x01, struct dmr_bench)

/*
 * Events. The module keeps one bounded ring of the most recent DMR_EVENT_RING events of all remap
 * targets. Raising an event never blocks I/O: when the ring is full the oldest event is
 * overwritten and counted in `lost`. Every event also bumps device-mapper's event counter of the
 * device (from process context), so DM_DEV_WAIT waiters wake.
 */
#define DMR_EVENT_RING 1024

enum dmr_event_type {
	DMR_EV_REMAP = 1,           /* block moved to the spare: sector, arg = slot */
	DMR_EV_UNREMAP = 2,         /* block moved back to main: sector, arg = freed slot */
	DMR_EV_PENDING = 3,         /* block marked pending (unreadable): sector */
	DMR_EV_SPARE_LOW = 4,       /* free spare slots fell to 10 % or less: arg = free slots */
	DMR_EV_SPARE_EXHAUSTED = 5, /* no free spare slot: sector = block that needed one */
	DMR_EV_META_ERROR = 6,      /* metadata write failed: arg = errno */
	DMR_EV_IO_ERROR = 7,        /* a device failed a bio: sector, arg = block-layer status */
};

#define DMR_EVF_WRITE 0x1 /* the failed bio was a write */
#define DMR_EVF_SPARE 0x2 /* the event concerns the spare device */

struct dmr_event {
	__u64 seq;      /* module-wide sequence number, from 1 */
	__u64 time_ns;  /* CLOCK_MONOTONIC, ns */
	__u32 type;     /* enum dmr_event_type */
	__u32 dev;      /* the device-mapper device: major << 20 | minor */
	__u64 sector;   /* sector of the device-mapper device, when the event has one */
	__u64 arg;      /* see enum dmr_event_type */
	__u32 flags;    /* DMR_EVF_* */
	__u32 reserved; /* 0 */
};

/* DMR_IOC_EVENTS: copy out the events with seq >= since_seq still in the ring. */
struct dmr_events {
	__u32 size;        /* in: sizeof(struct dmr_events) */
	__u32 flags;       /* in: 0 */
	__u64 since_seq;   /* in: first sequence number wanted (0 or 1: from the oldest) */
	__u64 buf;         /* in: user address of an array of `max` struct dmr_event */
	__u32 max;         /* in: 1..DMR_EVENT_RING */
	__u32 count;       /* out: events copied, in sequence order */
	__u64 next_seq;    /* out: since_seq for the next call */
	__u64 oldest_seq;  /* out: oldest sequence number in the ring (events before it are gone) */
	__u64 lost;        /* out: events overwritten in the full ring since the module loaded */
	__u64 reserved[4]; /* in: 0; out: 0 */
};

#define DMR_IOC_EVENTS  _IOWR(DMR_IOCTL_MAGIC, 0x02, struct dmr_events)

#endif /* _UAPI_LINUX_DM_REMAP_H */
