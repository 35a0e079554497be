//! Identify Controller decoder on arbitrary bytes: never panics; decode → encode → decode is
//! stable.
#![no_main]

use dmremap_core::nvme::identify::{IdentifyController, IDENTIFY_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // The first byte chooses whether to pad/cut the rest to the page length, so most runs reach
    // the field decoding instead of stopping at the length check.
    let Some((&sel, rest)) = input.split_first() else {
        return;
    };
    let mut buf = rest.to_vec();
    if sel & 1 == 1 {
        buf.resize(IDENTIFY_LEN, 0);
    }
    let data = &buf[..];
    if let Ok(id) = IdentifyController::decode(data) {
        assert_eq!(data.len(), IDENTIFY_LEN);
        let mut out = vec![0u8; IDENTIFY_LEN];
        id.encode(&mut out).expect("encode");
        assert_eq!(IdentifyController::decode(&out).expect("decode"), id);
        let _ = format!("{} {} {}", id.sn, id.mn, id.fr);
        let _ = (id.mn.as_str(), id.error_log_entries(), id.version_major());
    }
});
