//! Userspace access layer shared by the `dmremap` CLI and the `dmremapd` daemon.
