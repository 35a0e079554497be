//! Runs the `dmremap` binary with arguments that must be refused, and checks the message and the
//! exit code. Everything here is decided before device-mapper is opened, so the tests need no
//! kernel support and touch no block device.

use std::path::Path;
use std::process::{Command, Output};

fn dmremap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmremap"))
        .args(args)
        .output()
        .expect("run dmremap")
}

/// Asserts the exit code, an empty stdout and that stderr contains every one of `parts`.
fn refused(args: &[&str], code: i32, parts: &[&str]) -> String {
    let out = dmremap(args);
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        out.stdout.is_empty(),
        "{args:?} printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    for p in parts {
        assert!(err.contains(p), "{args:?}: stderr lacks {p:?}: {err}");
    }
    err
}

#[test]
fn parser_errors_exit_2() {
    refused(
        &["frobnicate"],
        2,
        &["unrecognized subcommand 'frobnicate'"],
    );
    refused(&["create", "r0", "--spare", "/dev/b"], 2, &["--main <DEV>"]);
    refused(
        &[
            "create",
            "r0",
            "--main",
            "/dev/a",
            "--spare",
            "/dev/b",
            "--offset=-1",
        ],
        2,
        &["invalid value '-1' for '--offset <SECTORS>'"],
    );
    refused(
        &[
            "create",
            "r0",
            "--main",
            "/dev/a",
            "--spare",
            "/dev/b",
            "--block-size",
            "4k",
        ],
        2,
        &["invalid digit"],
    );
    refused(&["remap", "r0", "12x"], 2, &["<SECTOR>"]);
    refused(&["remap", "r0"], 2, &["<SECTOR>"]);
    refused(
        &["unremap", "r0", "18446744073709551616"],
        2,
        &["number too large"],
    );
    refused(&["list-remaps", "r0", "--max", "many"], 2, &["--max"]);
    refused(&["message", "r0"], 2, &["<WORDS>"]);
    refused(&["tune"], 2, &["--check"]);
    refused(&["tune", "--check", "--pid", "x"], 2, &["--pid"]);
    refused(&["completions", "cmd.exe"], 2, &["invalid value 'cmd.exe'"]);
}

#[test]
fn bad_names_exit_2() {
    let long = "n".repeat(128);
    for (name, why) in [
        ("a/b", "contains '/'"),
        ("a b", "contains ' '"),
        ("..", "cannot be a device name"),
        ("control", "cannot be a device name"),
        ("", "the device name is empty"),
        (long.as_str(), "128 characters long, at most 127"),
    ] {
        for cmd in ["status", "remove"] {
            refused(&[cmd, name], 2, &[why]);
        }
        refused(
            &["create", name, "--main", "/dev/a", "--spare", "/dev/b"],
            2,
            &[why],
        );
        refused(&["remap", name, "0"], 2, &[why]);
        refused(&["list-remaps", name], 2, &[why]);
        refused(&["message", name, "ping"], 2, &[why]);
    }
    refused(
        &[
            "create",
            "r0",
            "--uuid",
            "has space",
            "--main",
            "/dev/a",
            "--spare",
            "/dev/b",
        ],
        2,
        &["r0: the UUID `has space` contains ' '"],
    );
}

#[test]
fn bad_sizes_exit_2() {
    let base = ["create", "r0", "--main", "/dev/a", "--spare", "/dev/b"];
    for (extra, msg) in [
        (
            &["--block-size", "3000"][..],
            "r0: block size 3000 is not a power of two from 512 to 1048576 bytes",
        ),
        (
            &["--block-size", "256"],
            "block size 256 is not a power of two",
        ),
        (
            &["--block-size", "2097152"],
            "block size 2097152 is not a power of two",
        ),
        (&["--block-size", "0"], "block size 0"),
        (
            &["--read-retries", "17"],
            "r0: read retries 17 is out of range (0 to 16)",
        ),
    ] {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        refused(&args, 2, &[msg]);
    }
}

#[test]
fn missing_and_non_block_devices() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("disk.img");
    std::fs::write(&file, vec![0u8; 4096]).unwrap();
    let missing = dir.path().join("nvme9n1");
    let (f, m, d) = (
        file.to_str().unwrap(),
        missing.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    );

    refused(
        &["create", "r0", "--main", m, "--spare", f],
        3,
        &[&format!(
            "dmremap: main device {m}: No such file or directory"
        )],
    );
    refused(
        &["create", "r0", "--main", f, "--spare", f],
        2,
        &[&format!(
            "dmremap: main device {f} is not a block device (it is a regular file)"
        )],
    );
    refused(
        &["create", "r0", "--main", "/dev/null", "--spare", f],
        2,
        &["main device /dev/null is not a block device (it is a character device)"],
    );
    if Path::new("/dev/null").exists() {
        // The spare is checked too, after the main device; use a directory as main to see the
        // main check first.
        refused(
            &["create", "r0", "--main", d, "--spare", "/dev/null"],
            2,
            &["is not a block device (it is a directory)"],
        );
    }
}

#[test]
fn message_words_are_checked() {
    refused(
        &["message", "r0", "list", ""],
        2,
        &["r0: message words must be non-empty"],
    );
    refused(&["message", "r0", "list 0"], 2, &["contain no white space"]);
}

#[test]
fn tune_check_of_missing_process_exits_3() {
    // pid_max is at most 2^22: this pid cannot exist.
    refused(
        &["tune", "--check", "--pid", "2000000000"],
        3,
        &["pid 2000000000: no such process"],
    );
    refused(
        &["tune", "--check", "--pid=-4"],
        2,
        &["pid -4: not a process id"],
    );
}

#[test]
fn tune_check_reads_this_process() {
    let out = dmremap(&["tune", "--check", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pid = v["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(
        v["threads"][0]["tid"].as_i64(),
        Some(pid),
        "main thread first"
    );
    assert!(v["capabilities"]["effective"].is_string());
}

#[test]
fn generated_completions_and_manpages() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = dmremap(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let s = String::from_utf8(out.stdout).unwrap();
        assert!(
            s.contains("list-remaps") && s.contains("read-retries"),
            "{shell}"
        );
    }
    let out = dmremap(&["manpage"]);
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH dmremap 1"),
        "{page}"
    );
    assert!(page.contains("Exit codes"));

    let dir = tempfile::tempdir().unwrap();
    let out = dmremap(&["manpage", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    for page in [
        "dmremap.1",
        "dmremap-create.1",
        "dmremap-list-remaps.1",
        "dmremap-nvme-smart.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    let create = std::fs::read_to_string(dir.path().join("dmremap-create.1")).unwrap();
    assert!(create.contains("block\\-size"), "{create}");
}

/// Without `/dev/mapper/control` (a machine or container without device-mapper) the device
/// commands say so and exit with 4; with it, a caller without permission gets 5 and root gets 3
/// for a name that cannot exist. Only the case that applies here is checked.
#[test]
fn device_commands_without_device_mapper_or_device() {
    let name = "dmremap-test-no-such-device-7f3a";
    let out = dmremap(&["status", name]);
    let err = String::from_utf8(out.stderr).unwrap();
    if !Path::new("/dev/mapper/control").exists() {
        assert_eq!(out.status.code(), Some(4), "{err}");
        assert!(
            err.contains("cannot open /dev/mapper/control") && err.contains("modprobe dm_mod"),
            "{err}"
        );
    } else if std::fs::File::open("/dev/mapper/control").is_err() {
        assert_eq!(out.status.code(), Some(5), "{err}");
        assert!(
            err.contains("Permission denied") && err.contains("needs root"),
            "{err}"
        );
    } else {
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(
            err.contains(&format!("{name}: no such device-mapper device")),
            "{err}"
        );
    }
}
