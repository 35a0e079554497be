//! Standard device-mapper access for `remap` devices: create, remove, list, table, status and
//! target messages, through the `devicemapper` crate's ioctls on `/dev/mapper/control`.
//!
//! Besides the ioctl wrappers ([`Dm`]) this module holds the pure parts that tests cover without
//! a kernel: the table line a [`RemapSegment`] becomes ([`build_table`]), the checks of a planned
//! segment against the devices it uses ([`plan_segment`]), device and UUID name rules
//! ([`check_name`], [`check_uuid`]), and parsers for the target's answers: the status INFO line
//! ([`RemapStatus`]), the table line ([`RemapTable`]), `list` lines ([`RemapEntry`]), `stats`
//! lines ([`Stats`]) and the answers of `remap` and `unremap`.
//!
//! Device nodes: with udev running, udev creates `/dev/mapper/<name>` (the crate waits for it
//! through the udev cookie on resume and remove). Without udev (`/run/udev/control` absent, the
//! crate's own test), [`Dm::create`] makes the block-special node itself and [`Dm::remove`]
//! deletes it, as libdevmapper does when udev is not managing nodes.

mod blockdev;
mod device;
mod error;
mod ioctl;
mod names;
mod node;
mod parse;
mod plan;

pub use blockdev::*;
pub use device::*;
pub use error::*;
pub use ioctl::*;
pub use names::*;
pub use node::udev_running;
pub use parse::*;
pub use plan::*;

/// The device-mapper target type this module manages.
pub const TARGET_TYPE: &str = "remap";
/// The device-mapper control node.
pub const CONTROL_PATH: &str = "/dev/mapper/control";
/// Where device nodes of device-mapper devices live.
pub const MAPPER_DIR: &str = "/dev/mapper";
/// Longest device name (`DM_NAME_LEN` less the terminating NUL).
pub const NAME_MAX: usize = 127;
/// Longest UUID (`DM_UUID_LEN` less the terminating NUL).
pub const UUID_MAX: usize = 128;
/// Entries asked for per `list` message when paging through all remapped blocks.
pub const LIST_PAGE: u64 = 1000;
