//! Generate the Rust types of the control ABI from include/dm_remap.h, the single source of the ABI.

fn main() {
    let header = concat!(env!("CARGO_MANIFEST_DIR"), "/../../include/dm_remap.h");
    println!("cargo:rerun-if-changed={header}");
    let bindings = bindgen::Builder::default()
        .header(header)
        .allowlist_type("dmr_.*")
        .allowlist_var("DMR_.*")
        .derive_default(true)
        .layout_tests(true)
        .generate()
        .expect("bindgen failed on include/dm_remap.h");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("uapi.rs");
    bindings.write_to_file(out).expect("cannot write uapi.rs");
}
