//! Error Information log decoder on arbitrary bytes: never panics, every entry of an accepted
//! buffer decodes and round-trips through the encoder.
#![no_main]

use dmremap_core::nvme::error_log::{ErrorLog, ErrorLogEntry, ERROR_ENTRY_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ErrorLog::new(data) {
        Ok(log) => {
            assert_eq!(data.len() % ERROR_ENTRY_LEN, 0);
            assert_eq!(log.entries().count(), log.len());
            for i in 0..=log.len() {
                match log.entry(i) {
                    Ok(e) => {
                        assert!(i < log.len());
                        let mut out = [0u8; ERROR_ENTRY_LEN];
                        e.encode(&mut out).expect("encode");
                        assert_eq!(ErrorLogEntry::decode(&out).expect("decode"), e);
                        let _ = (
                            e.status_code(),
                            e.status_code_type(),
                            e.dnr(),
                            e.phase_tag(),
                        );
                    }
                    Err(_) => assert_eq!(i, log.len()),
                }
            }
            let _ = log.max_error_count();
        }
        Err(e) => {
            assert!(data.is_empty() || !data.len().is_multiple_of(ERROR_ENTRY_LEN));
            let _ = format!("{e}");
        }
    }
});
