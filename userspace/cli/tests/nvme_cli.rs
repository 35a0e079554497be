//! Runs the `dmremap` binary against fake sysfs trees and device directories.

use std::path::Path;
use std::process::{Command, Output};

use dmremap_lib::nvme::fake::{FakeSysfs, FakeSysfsController};

fn dmremap(sys: &Path, dev: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmremap"))
        .args(args)
        .env("DMREMAP_SYSFS_ROOT", sys)
        .env("DMREMAP_DEV_DIR", dev)
        .output()
        .expect("run dmremap")
}

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    FakeSysfs::new(dir.path())
        .add(&FakeSysfsController {
            name: "nvme0".into(),
            model: "QEMU NVMe Ctrl".into(),
            serial: "deadbeef".into(),
            firmware_rev: "8.0.0".into(),
            pci_vendor: Some(0x1b36),
            namespaces: vec![("nvme0n1".into(), 2_097_152, 512)],
        })
        .unwrap();
    dir
}

#[test]
fn list_json_and_text() {
    let sys = tree();
    let out = dmremap(sys.path(), sys.path(), &["nvme", "list", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Devices"][0]["DevicePath"], "/dev/nvme0n1");
    assert_eq!(v["Devices"][0]["SerialNumber"], "deadbeef");
    assert_eq!(v["Devices"][0]["PhysicalSize"], 1u64 << 30);

    let out = dmremap(sys.path(), sys.path(), &["--json", "nvme", "list"]);
    assert!(out.status.success(), "global --json before the subcommand");

    let out = dmremap(sys.path(), sys.path(), &["nvme", "list"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("/dev/nvme0n1") && text.contains("QEMU NVMe Ctrl"),
        "{text}"
    );
}

#[test]
fn unknown_device_exits_3_and_names_it() {
    let sys = tree();
    for arg in ["/dev/nvme4", "nvme4n1"] {
        let out = dmremap(sys.path(), sys.path(), &["nvme", "smart", arg]);
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with(&format!("dmremap: {arg}: ")), "{err}");
    }
    let out = dmremap(sys.path(), sys.path(), &["nvme", "smart", "/dev/sda"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn ioctl_failure_names_device_operation_and_cause() {
    let sys = tree();
    let dev = tempfile::tempdir().unwrap();
    // A regular file where the character device should be: open works, the ioctl does not.
    std::fs::write(dev.path().join("nvme0"), b"").unwrap();
    let out = dmremap(
        sys.path(),
        dev.path(),
        &["nvme", "smart", "/dev/nvme0n1", "--json"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("dmremap: nvme0: get log page 0x02: "),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    // Missing character device.
    let empty = tempfile::tempdir().unwrap();
    let out = dmremap(sys.path(), empty.path(), &["nvme", "aws-stats", "nvme0"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("dmremap: nvme0: identify controller: open "),
        "{err}"
    );
}

// `nvme bench` is in the development build only.
#[cfg(feature = "devtools")]
#[test]
fn bench_simulated_writes_json() {
    let sys = tree();
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("bench/nvme.json");
    let out = dmremap(
        sys.path(),
        sys.path(),
        &[
            "nvme",
            "bench",
            "--simulate",
            "10",
            "--cycles",
            "30",
            "--out",
            out_path.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("warm/cold p50 ratio"), "{text}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
    assert_eq!(v["bench"], "nvme");
    assert_eq!(v["unit"], "us");
    assert_eq!(v["mode"], "simulated");
    assert_eq!(v["controllers"], 10);
    let r = v["results"].as_array().unwrap();
    assert_eq!(r[0]["case"], "cold");
    assert_eq!(r[1]["case"], "warm");
    for c in r {
        assert!(c["p50"].as_f64().unwrap() > 0.0);
        assert!(c["p99"].as_f64().unwrap() >= c["p50"].as_f64().unwrap());
        assert!(c["allocs_per_scrape"].as_f64().unwrap() > 0.0);
        assert_eq!(c["cycles"], 30);
    }

    // Real-device mode with a tree whose device nodes cannot take the ioctl: runs, reports the
    // failures, exits 0 with the errors counted.
    let out = dmremap(
        sys.path(),
        sys.path(),
        &["nvme", "bench", "--cycles", "2", "--json"],
    );
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "devices");
    assert_eq!(v["results"][0]["smart_errors"], 2);
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("first error: nvme0: "));

    let empty = tempfile::tempdir().unwrap();
    let out = dmremap(
        empty.path(),
        empty.path(),
        &["nvme", "bench", "--cycles", "1"],
    );
    assert_eq!(out.status.code(), Some(3), "no controllers");
    let out = dmremap(
        empty.path(),
        empty.path(),
        &["nvme", "bench", "--cycles", "0", "--simulate", "1"],
    );
    assert_eq!(out.status.code(), Some(2));
}
