//! Userspace access layer shared by the `dmremap` CLI and the `dmremapd` daemon.

pub mod bufpool;
pub mod control;
pub mod dm;
pub mod event;
pub mod ident;
pub mod nvme;
pub mod stats;
pub mod tune;
