//! SMART / health log decoder on arbitrary bytes: must return Ok or Err, never panic; a page
//! that decodes must encode back to the same defined fields.
#![no_main]

use dmremap_core::nvme::smart::{SmartLog, SMART_LOG_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // The first byte chooses whether to pad/cut the rest to the page length, so most runs reach
    // the field decoding instead of stopping at the length check.
    let Some((&sel, rest)) = input.split_first() else {
        return;
    };
    let mut buf = rest.to_vec();
    if sel & 1 == 1 {
        buf.resize(SMART_LOG_LEN, 0);
    }
    let data = &buf[..];
    match SmartLog::decode(data) {
        Ok(s) => {
            assert_eq!(data.len(), SMART_LOG_LEN);
            let mut out = [0u8; SMART_LOG_LEN];
            s.encode(&mut out).expect("encode a decoded page");
            assert_eq!(SmartLog::decode(&out).expect("decode re-encoded page"), s);
            let _ = s.temperature_celsius();
            let _ = s.bytes_read().wrapping_add(s.bytes_written());
            let _ = s.sensors().count();
        }
        Err(e) => {
            assert_ne!(data.len(), SMART_LOG_LEN);
            let _ = format!("{e}");
        }
    }
});
