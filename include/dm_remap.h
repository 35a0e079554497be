/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * dm_remap.h - userspace ABI of the dm-remap device-mapper target.
 *
 * This header is the single source of the ABI: userspace generates its Rust types from it with
 * bindgen, and the kernel module checks its own definitions against the sizes and offsets here.
 *
 * Control device: /dev/dm-remap (misc device, mode 0600; open, every ioctl and read() require
 * CAP_SYS_ADMIN and fail with -EPERM without it). Unknown ioctl numbers: -ENOTTY.
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
	DMR_BENCH_ALLOC_FULL = 4, /* spare with `entries` slots taken and one free: allocate it,
				   * fail an allocation on the full spare, free it */
	DMR_BENCH_FILL_DENSE = 5, /* inserts filling an empty index with `entries` consecutive blocks */
	DMR_BENCH_FILL_SCATTERED = 6, /* the same with every 64th block */
};

#define DMR_BENCH_MAX_ITERATIONS 10000000ULL
#define DMR_BENCH_MAX_ENTRIES 4000000ULL

/*
 * DMR_IOC_BENCH: run `iterations` operations of `op` in the kernel on a private index pre-filled
 * with `entries` remaps (not on any live target) and report per-operation times in nanoseconds,
 * measured with ktime in batches of `batch` operations (each sample is a batch's time / batch).
 * The fill operations time the `entries` inserts themselves (`iterations` is not used) and report
 * in `index_bytes` the kernel memory (slab and vmalloc, system-wide counters) that grew meanwhile.
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
	__u64 index_bytes; /* in: 0; out: fill operations: memory of the filled index, else 0 */
	__u64 reserved[3]; /* in: 0; out: 0 */
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
	DMR_EV_OVERFLOW = 8,        /* read() only, not a ring event: this reader fell behind and the
	                             * events seq .. seq + arg - 1 were overwritten before it read
	                             * them (arg = how many); the next record has seq + arg */
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

/*
 * Reading events with read() and poll().
 *
 * Every open file of /dev/dm-remap has its own cursor: the sequence number of the next event its
 * read() returns. It starts at the oldest event still in the ring when the file is opened;
 * DMR_IOC_EVENTS_SEEK moves it (to the oldest event, to "now" = the next event to be raised, or
 * to a given sequence number).
 *
 *  - read(fd, buf, len) copies whole struct dmr_event records, as many as fit in len and are
 *    available, in sequence order, and returns their total size. len smaller than one record:
 *    -EINVAL. Nothing to read: blocks until an event is raised, or fails with -EAGAIN when the
 *    file is O_NONBLOCK (a signal interrupts the wait: -EINTR or a restart).
 *  - When events were overwritten in the ring before this file read them, read() first returns
 *    one record of type DMR_EV_OVERFLOW (seq = first lost sequence number, arg = number lost,
 *    dev = sector = flags = 0, time_ns = when it was noticed), then continues with the oldest
 *    event still held. Sequence numbers therefore always continue: after a record with seq s the
 *    next has s + 1, or s + arg after an overflow record.
 *  - poll()/select()/epoll report EPOLLIN | EPOLLRDNORM while read() would return a record; they
 *    wake when an event is raised (from any context, including I/O completion).
 *  - read() requires CAP_SYS_ADMIN, like the ioctls. The file position is not used.
 */
enum dmr_seek_whence {
	DMR_SEEK_OLDEST = 0, /* the oldest event still in the ring */
	DMR_SEEK_NOW = 1,    /* the next event raised: only events from now on */
	DMR_SEEK_SEQ = 2,    /* sequence number `seq` (1 .. the next one to be raised) */
};

/* DMR_IOC_EVENTS_SEEK: move this file's read() cursor. */
struct dmr_events_seek {
	__u32 size;        /* in: sizeof(struct dmr_events_seek) */
	__u32 whence;      /* in: enum dmr_seek_whence */
	__u32 flags;       /* in: 0 */
	__u32 reserved0;   /* in: 0; out: 0 */
	__u64 seq;         /* in: with DMR_SEEK_SEQ; otherwise 0 */
	__u64 cursor;      /* out: the cursor after the call (the seq read() returns next) */
	__u64 reserved[2]; /* in: 0; out: 0 */
};

#define DMR_IOC_EVENTS_SEEK _IOWR(DMR_IOCTL_MAGIC, 0x03, struct dmr_events_seek)

/*
 * ============================================================================================
 * On-disk metadata (on the spare device)
 * ============================================================================================
 *
 * Implemented once, in core/src/metadata.rs (kernel module and userspace share that code).
 * All integers are little-endian; all positions are in 512-byte sectors from the start of the
 * spare; every metadata block is 4096 bytes and 4096-byte aligned.
 *
 * Layout of a spare of S sectors (E = S rounded down to a multiple of 8):
 *
 *   sector 0             copy A: superblock, then record blocks 0..R-1 (meta_sectors in all)
 *   meta_a_start + meta_sectors .. data_start   padding up to a multiple of max(block, 4 KiB)
 *   data_start           data area: data_slots slots of block_size bytes (slot n at
 *                        data_start + n * block_size / 512)
 *   .. meta_b_start      unused gap
 *   meta_b_start         copy B: record blocks 0..R-1, then its superblock
 *   E - 8                copy B's superblock: the last whole 4 KiB block of the spare
 *
 * R = ceil(record_capacity / DMR_MD_RECORDS_PER_BLOCK); record_capacity = data_slots plus an
 * allowance for pending records chosen at format time; data_slots is the largest count for
 * which  data_start + data_slots * block_sectors + meta_sectors <= E. The metadata copies and the
 * data area never overlap. Both superblocks can be found from the spare's size alone.
 *
 * A copy ("checkpoint") is its superblock plus the first ceil(nr_records / 252) record blocks.
 * Records are sorted by main block number, strictly increasing, across the blocks of a copy. A
 * checkpoint writes a whole copy with seq = N + 1 over the copy NOT holding the newest valid
 * seq N (ping-pong), so the other copy stays intact.
 *
 * Journal (version 3): the rest of the newest copy's record area (record blocks
 * ceil(nr_records / 252) .. R-1, at the same sectors as record blocks) holds the commits made
 * since that copy was written. A commit of k changes is ceil(k / 252) journal blocks (struct
 * dmr_md_journal_block) written at the journal's head with one write with PREFLUSH and FUA; its
 * seq is above every seq before it. Loading replays, on top of the winning copy (version 3 only),
 * the commits found from its first unused record block on, in order, as long as each is valid:
 * all its blocks have the right magic and crc, base_seq = the copy's seq, prev_seq = the previous
 * commit's seq (the copy's seq for the first), seq > prev_seq and equal in all its blocks, index
 * 0..blocks-1, the same blocks and commit_crc, count 252 except in the last block (1..252), zero
 * unused entries, every entry with a known state, a block below the main device's block count and
 * a slot inside the data area; and commit_crc = crc32c over the entry areas (bytes 0x040..0x1000)
 * of its blocks in order. The first commit that is not valid (a torn commit, never acknowledged)
 * ends the journal; an all-zero block, or an intact block that is not a journal block of this copy
 * (base_seq differs), ends it cleanly. Entries are applied in order: the block's record becomes
 * the entry's (remapped or pending), or is removed (DMR_MD_STATE_REMOVED). A slot freed by a
 * removal may be used again only by a later commit. The journal never wraps: when it is full (the
 * kernel checkpoints once it is half of max(256, 2 * the copy's record blocks) or when a commit
 * does not fit), a checkpoint writes the whole index as the other copy with a new seq, and the
 * journal restarts behind that copy. The next commit uses a seq above every superblock's whose
 * magic and crc are intact and every replayed journal commit's.
 *
 * A copy is valid when: its superblock is valid (every field below checked, crc over the whole
 * block), and each of its record blocks has the right magic, crc, the superblock's seq and uuid,
 * its copy id, its own index, the expected count (252 except in the last block), zero reserved
 * bytes and zero unused entries; every record has a known state, a block number below the main
 * device's block count, a slot inside the data area used by no other record of the copy; the
 * counts match nr_remapped/nr_pending; and the crc32c over the record blocks' crc fields (each
 * as 4 little-endian bytes, in index order) equals records_crc. Loading validates both copies,
 * uses the valid one with the highest seq (A on a tie) and reports the other as bad if it is
 * not valid. A spare whose two superblock blocks are all zeros is blank (may be formatted);
 * anything else without a valid copy is damaged and is never formatted over.
 * The next commit uses a seq above every superblock whose magic and crc are intact.
 *
 * crc fields: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, initial value and final
 * xor 0xFFFFFFFF) of the whole 4096-byte block with the crc field itself taken as zero.
 */
#define DMR_MD_VERSION            3   /* written; versions 1 to 3 are read (3: journal) */
#define DMR_MD_VERSION_MIN        1
#define DMR_MD_SB_MAGIC           0x4D524D44U /* bytes "DMRM" on disk */
#define DMR_MD_RB_MAGIC           0x52524D44U /* bytes "DMRR" on disk */
#define DMR_MD_JB_MAGIC           0x4A524D44U /* bytes "DMRJ" on disk */
#define DMR_MD_BLOCK_SIZE         4096
#define DMR_MD_COPY_A             0x41U       /* 'A' */
#define DMR_MD_COPY_B             0x42U       /* 'B' */
#define DMR_MD_RECORDS_PER_BLOCK  252
#define DMR_MD_UUID_LEN           16
#define DMR_MD_MAIN_ID_LEN        256
#define DMR_MD_MAIN_ID_V1_LEN     64
#define DMR_MD_NAME_LEN           128

/* dmr_md_record.state_slot: state in bits 63..56, slot in bits 55..0. */
#define DMR_MD_STATE_SHIFT        56
#define DMR_MD_STATE_REMAPPED     1ULL        /* block lives in spare slot (bits 55..0) */
#define DMR_MD_STATE_PENDING      2ULL        /* unreadable block without a slot; bits 55..0 = 0 */
#define DMR_MD_STATE_REMOVED      3ULL        /* journal only: the block's record is removed; bits 55..0 = 0 */
#define DMR_MD_SLOT_MASK          ((1ULL << DMR_MD_STATE_SHIFT) - 1)

/* Feature bits: none are defined in versions 1 to 3. Unknown incompat bits make a copy invalid;
 * unknown compat bits are ignored. */
#define DMR_MD_FEATURES_INCOMPAT_SUPPORTED 0U

/*
 * Superblock: 4096 bytes; copy A at sector 0, copy B at sector E - 8.
 * Identical in both copies except copy, seq, the counts and records_crc (a commit of a renamed
 * device or of a migrated spare differs in main_id/name from the older copy until that copy is
 * rewritten).
 *
 * Version 2 (written now) identifies the main device by its stable identity, main_id at 0x0e0:
 * the table option main_id:<id> (dmremap create passes the disk's WWID / EUI-64 / NGUID /
 * serial as sysfs shows it), and records the device-mapper name (name at 0x0e0 + 256) for
 * activation, with the target's place in it (target_begin, target_len). Version 1 named the main device by its kernel name (main_id_v1 at 0x040; 0x0e0 on
 * zero). A version 1 spare is checked against the main device's kernel name and rewritten as
 * version 3 before the table goes live. main_sectors and main_offset are checked in both.
 * Version 3 (written now) has version 2's superblock; it says that a journal may follow the copy.
 * A version 2 spare is loaded without a journal and rewritten as version 3 (a checkpoint) before
 * the table goes live.
 */
struct dmr_md_superblock {
	__le32 magic;             /* 0x000 DMR_MD_SB_MAGIC */
	__le32 crc;               /* 0x004 crc32c of the block with this field zero */
	__le32 version;           /* 0x008 DMR_MD_VERSION */
	__le32 copy;              /* 0x00c DMR_MD_COPY_A or DMR_MD_COPY_B: must match location */
	__le64 seq;               /* 0x010 commit sequence number, > 0, increases per commit */
	__le32 features_compat;   /* 0x018 */
	__le32 features_incompat; /* 0x01c must be within DMR_MD_FEATURES_INCOMPAT_SUPPORTED */
	__u8   uuid[16];          /* 0x020 UUID of the remap set, not all zero */
	__le64 main_sectors;      /* 0x030 size of the main device, > 0 */
	__le64 main_offset;       /* 0x038 main sector of remap block 0 (table <main_offset>), < main_sectors */
	__u8   main_id_v1[64];    /* 0x040 version 1: the main device's kernel name, 1..64 bytes,
	                           *       NUL-padded, no NUL inside; version 2: zero */
	__le32 block_size;        /* 0x080 remap block = slot size in bytes, power of two, 512..1 MiB */
	__le32 md_block_size;     /* 0x084 DMR_MD_BLOCK_SIZE */
	__le64 spare_sectors;     /* 0x088 size of the spare at format time; must equal its size */
	__le64 meta_a_start;      /* 0x090 first sector of copy A: 0 */
	__le64 meta_b_start;      /* 0x098 first sector of copy B: E - meta_sectors */
	__le64 meta_sectors;      /* 0x0a0 sectors of each copy: 8 * (1 + R) */
	__le64 data_start;        /* 0x0a8 first sector of the data area */
	__le64 data_slots;        /* 0x0b0 slots in the data area, >= 1, <= 2^56 */
	__le64 record_capacity;   /* 0x0b8 records a copy can hold, >= data_slots */
	__le64 nr_records;        /* 0x0c0 records in this copy, <= record_capacity, <= main blocks */
	__le64 nr_remapped;       /* 0x0c8 of which remapped, <= data_slots */
	__le64 nr_pending;        /* 0x0d0 of which pending; nr_remapped + nr_pending = nr_records */
	__le32 records_crc;       /* 0x0d8 crc32c over the record blocks' crc fields, in order */
	__le32 record_blocks;     /* 0x0dc ceil(nr_records / 252): record blocks in this copy */
	/* From here on version 1 has zeros (its reserved[484]). */
	__u8   main_id[256];      /* 0x0e0 main device's stable identity (table option main_id),
	                           *       1..256 bytes, NUL-padded, no NUL inside */
	__u8   name[128];         /* 0x1e0 device-mapper name at the last commit, 0..127 bytes,
	                           *       NUL-padded (all zero: none) */
	__le64 target_begin;      /* 0x260 the target's <start> in the mapped device at the last commit */
	__le64 target_len;        /* 0x268 the target's <length> (sectors) at the last commit */
	__le64 reserved[434];     /* 0x270 zero */
};                                /* 0x1000 */

/* Record: 16 bytes. */
struct dmr_md_record {
	__le64 block;             /* 0x0 main block number (units of block_size from main_offset) */
	__le64 state_slot;        /* 0x8 DMR_MD_STATE_* << 56 | slot */
};

/*
 * Record block: 4096 bytes; record block i of copy A at sector 8 + 8 * i, of copy B at
 * meta_b_start + 8 * i.
 */
struct dmr_md_record_block {
	__le32 magic;             /* 0x000 DMR_MD_RB_MAGIC */
	__le32 crc;               /* 0x004 crc32c of the block with this field zero */
	__le64 seq;               /* 0x008 seq of the superblock of the same commit */
	__u8   uuid[16];          /* 0x010 uuid of the set */
	__le32 copy;              /* 0x020 DMR_MD_COPY_A or DMR_MD_COPY_B */
	__le32 index;             /* 0x024 i: position of the block in its copy */
	__le32 count;             /* 0x028 records used: min(252, nr_records - 252 * i) */
	__le32 reserved0;         /* 0x02c zero */
	__le64 reserved[2];       /* 0x030 zero */
	struct dmr_md_record records[252]; /* 0x040 entries past count are zero */
};                                /* 0x1000 */

/*
 * Journal block (version 3): 4096 bytes at a record block's place behind the newest copy's
 * records. Entries are records (block, state_slot), with DMR_MD_STATE_REMOVED allowed.
 */
struct dmr_md_journal_block {
	__le32 magic;             /* 0x000 DMR_MD_JB_MAGIC */
	__le32 crc;               /* 0x004 crc32c of the block with this field zero */
	__le64 seq;               /* 0x008 seq of the commit (same in all its blocks) */
	__u8   uuid[16];          /* 0x010 uuid of the set */
	__le64 base_seq;          /* 0x020 seq of the copy this journal follows */
	__le64 prev_seq;          /* 0x028 seq of the previous commit of the journal, or base_seq */
	__le32 index;             /* 0x030 position of the block in its commit, 0..blocks-1 */
	__le32 blocks;            /* 0x034 blocks of the commit, >= 1 */
	__le32 count;             /* 0x038 entries used: 252 except in the last block (1..252) */
	__le32 commit_crc;        /* 0x03c crc32c over bytes 0x040..0x1000 of the commit's blocks */
	struct dmr_md_record entries[252]; /* 0x040 entries past count are zero */
};                                /* 0x1000 */

#endif /* _UAPI_LINUX_DM_REMAP_H */
