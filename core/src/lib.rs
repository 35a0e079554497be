//! The no_std core of dm-remap, shared by the kernel module and userspace.
//!
//! Every module here is plain `core` Rust with no allocation of its own: callers hand in the
//! storage. The kernel module compiles the same source files through `#[path]` attributes, so
//! what is unit-, property- and fuzz-tested here is what runs in the kernel.
#![no_std]
#![forbid(unsafe_code)]

pub mod alloc;
pub mod crc32c;
pub mod metadata;
pub mod nvme;
pub mod remap;
pub mod table;
