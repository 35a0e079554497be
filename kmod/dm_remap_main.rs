// SPDX-License-Identifier: GPL-2.0

//! dm_remap: a device-mapper target that keeps failing disks in service by moving bad blocks of a
//! main device onto a spare device.

use kernel::prelude::*;

mod control;
mod dm;
mod events;
mod target;

// Code shared with userspace, compiled from the same source files as the `dmremap-core` crate.
// Its items are `pub` for userspace; here they are crate-private and not all of them are used.
#[allow(unreachable_pub, dead_code)]
#[path = "../core/src/alloc.rs"]
mod alloc;
#[allow(unreachable_pub, dead_code)]
#[path = "../core/src/crc32c.rs"]
mod crc32c;
#[allow(unreachable_pub, dead_code)]
#[path = "../core/src/metadata/mod.rs"]
mod metadata;
#[allow(unreachable_pub, dead_code)]
#[path = "../core/src/remap.rs"]
mod remap;
#[allow(unreachable_pub, dead_code)]
#[path = "../core/src/table.rs"]
mod table;

module! {
    type: DmRemapModule,
    name: "dm_remap",
    authors: ["dm-remap developers"],
    description: "device-mapper target that remaps bad blocks onto a spare device",
    license: "GPL",
}

#[pin_data]
struct DmRemapModule {
    _target: dm::Registration<target::RemapTarget>,
    _control: dm::PollMiscRegistration<control::Control>,
    /// Dropped last: the targets' module-wide state outlives the registration.
    _globals: dm::Globals,
}

impl kernel::InPlaceModule for DmRemapModule {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let globals = dm::Globals::init();
        try_pin_init!(Self {
            _target: {
                let reg = dm::Registration::register(c"remap", target::VERSION, module)?;
                pr_info!(
                    "target remap {}.{}.{} registered\n",
                    target::VERSION[0],
                    target::VERSION[1],
                    target::VERSION[2]
                );
                reg
            },
            _control: dm::PollMiscRegistration::register(c"dm-remap")?,
            _globals: globals,
        })
    }
}
