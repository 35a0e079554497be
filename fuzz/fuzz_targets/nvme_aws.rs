//! Amazon statistics page decoder on arbitrary bytes. The first byte picks which magic to
//! stamp over the input (so both page kinds get past the magic check), the rest is the page.
//! Never panics; every bin of an accepted page is readable.
#![no_main]

use dmremap_core::nvme::aws::{
    AwsDeviceKind, AwsStats, Direction, EBS_MAGIC, INSTANCE_STORE_MAGIC,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&sel, rest)) = input.split_first() else {
        return;
    };
    let mut data = rest.to_vec();
    if data.len() >= 4 {
        let magic = match sel % 3 {
            0 => Some(EBS_MAGIC),
            1 => Some(INSTANCE_STORE_MAGIC),
            _ => None,
        };
        if let Some(m) = magic {
            data[..4].copy_from_slice(&m.to_le_bytes());
        }
        if sel & 0x80 != 0 {
            // Also try the page padded or cut to the expected length of that kind.
            let want = if sel % 3 == 0 { 4096 } else { 8192 };
            data.resize(want, 0);
        }
    }
    match AwsStats::parse(&data) {
        Ok(s) => {
            assert_eq!(data.len(), s.kind().page_len());
            for dir in [Direction::Read, Direction::Write] {
                let h = s.histogram(dir);
                assert_eq!(h.bins().count(), h.len());
                assert!(h.bin(h.len()).is_err());
                let _ = h.total();
            }
            let n = s.io_size_histogram_count();
            assert_eq!(s.io_size_histograms().count(), n);
            for hs in s.io_size_histograms() {
                assert_eq!(hs.bins(Direction::Read).count(), hs.len());
                assert_eq!(hs.bins(Direction::Write).count(), hs.len());
            }
            assert!(s.io_size_histogram(n).is_err());
            let expect = s.kind();
            assert!(AwsStats::parse_expecting(&data, expect).is_ok());
            let other = match expect {
                AwsDeviceKind::Ebs => AwsDeviceKind::InstanceStore,
                AwsDeviceKind::InstanceStore => AwsDeviceKind::Ebs,
            };
            assert!(AwsStats::parse_expecting(&data, other).is_err());
        }
        Err(e) => {
            let _ = format!("{e}");
        }
    }
});
