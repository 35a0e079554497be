/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Input to bindgen for the device-mapper bindings of dm_remap. The kernel crate's bindings have no
 * device-mapper items, so the module generates its own at build time from this header with the
 * kernel's own bindgen command line (see gen-bindings.sh).
 */
#include <linux/device-mapper.h>
#include <linux/bio.h>
#include <linux/blkdev.h>
#include "helpers.h"
#include "../include/dm_remap.h"
