//! `dmremap`: create and control dm-remap devices.
//!
//! Built with the `devtools` cargo feature (VM tests and benchmarks only) it also has the hidden
//! `fuzz-control`, `bench storm`, `nvme bench` and a counting global allocator.
//!
//! Exit codes: see [`error`].

mod activate;
#[cfg(feature = "devtools")]
mod alloc_count;
mod bench;
mod dmcmd;
mod error;
mod events;
#[cfg(feature = "devtools")]
mod fuzz;
mod inspect;
mod man_and_completions;
mod nvme;
#[cfg(feature = "devtools")]
mod nvme_bench;
#[cfg(feature = "devtools")]
mod storm;
mod tunecmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Exit codes, shown by `--help` and in the manual page.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the operation failed (I/O or ioctl error, the kernel refused the table or message,
     device busy, name taken)
  2  bad command line or an argument that cannot be right (bad name, size, offset, sector;
     a path that is not a block device)
  3  the named device does not exist (no such device-mapper device, no such path or process)
  4  not supported: the device has no `remap` target, or the kernel lacks device-mapper or the
     `remap` target type (load it: `modprobe dm_remap` or `insmod dm_remap.ko`)
  5  permission denied (device-mapper needs root / CAP_SYS_ADMIN)";

#[derive(Parser, Debug)]
#[command(
    name = "dmremap",
    version,
    about = "Create and control dm-remap devices",
    after_long_help = EXIT_CODES
)]
struct Cli {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a dm-remap device over a main and a spare block device.
    Create(dmcmd::CreateArgs),
    /// Remove a dm-remap device.
    Remove {
        /// Device name.
        name: String,
    },
    /// Create the devices recorded on spares, finding each main device by its stable identity.
    Activate(activate::ActivateArgs),
    /// Remove a device brought up by `activate` (same as `remove`).
    Deactivate {
        /// Device name.
        name: String,
    },
    /// For the udev rule: print DMREMAP_SET=<uuid> when DEVNODE completes a remap set.
    #[command(hide = true)]
    UdevScan {
        /// The device node of the udev event.
        devnode: PathBuf,
    },
    /// List the device-mapper devices that have a `remap` target.
    List,
    /// Show the table, counters and state of a dm-remap device.
    Status {
        /// Device name.
        name: String,
    },
    /// Move blocks to the spare device (data stays the same; the `remap` message).
    Remap {
        /// Device name.
        name: String,
        /// Device sector inside the first block to move.
        sector: u64,
        /// Number of blocks to move.
        #[arg(long, default_value_t = 1)]
        count: u64,
    },
    /// Move a remapped block back to the main device and free its spare slot.
    Unremap {
        /// Device name.
        name: String,
        /// Device sector inside the block.
        sector: u64,
    },
    /// List remapped and pending blocks: sector, block, spare slot, state.
    ListRemaps {
        /// Device name.
        name: String,
        /// Start at the block holding this device sector.
        #[arg(long, default_value_t = 0, value_name = "SECTOR")]
        from: u64,
        /// Report at most this many blocks (default: all).
        #[arg(long, value_name = "N")]
        max: Option<u64>,
    },
    /// Show the target's counters (the `stats` message).
    Stats {
        /// Device name.
        name: String,
        /// Reset the error and operation counters after reading them.
        #[arg(long)]
        clear: bool,
    },
    /// Send a raw target message and print the answer (like `dmsetup message`).
    Message {
        /// Device name.
        name: String,
        /// Sector that selects the target (segment) receiving the message.
        #[arg(long, default_value_t = 0)]
        sector: u64,
        /// The message, e.g. `ping` or `list 0 10`.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
        words: Vec<String>,
    },
    /// Read back the scheduling and I/O settings of a process's threads.
    Tune {
        /// Read back and print (the only mode: applying settings is the daemon's job).
        #[arg(long, required = true)]
        check: bool,
        /// Process to inspect (default: this one).
        #[arg(long)]
        pid: Option<i32>,
    },
    /// Print a shell completion script.
    Completions {
        /// Shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command into a directory.
    Manpage {
        /// Write dmremap.1, dmremap-create.1, ... into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// NVMe controllers: health log, error log, Amazon statistics, scrape benchmark.
    #[command(subcommand)]
    Nvme(nvme::NvmeCmd),
    /// Benchmarks through the control device.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Events from the kernel's event ring (remaps, spare low/exhausted, I/O errors); with
    /// --json in the event schema of the daemon's events.jsonl.
    Events(events::EventsArgs),
    /// Decode and check the metadata on a spare device or image file (offline, read-only).
    Inspect(inspect::InspectArgs),
    /// Test aid: random bad ioctls, reads and polls on /dev/dm-remap (see fuzz.rs).
    #[cfg(feature = "devtools")]
    #[command(hide = true)]
    FuzzControl(fuzz::FuzzArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let result = match &cli.cmd {
        Cmd::Create(a) => dmcmd::create(a, json),
        Cmd::Remove { name } => dmcmd::remove(name, json),
        Cmd::Activate(a) => activate::activate(a, json),
        Cmd::Deactivate { name } => activate::deactivate(name, json),
        Cmd::UdevScan { devnode } => activate::udev_scan(devnode),
        Cmd::List => dmcmd::list(json),
        Cmd::Status { name } => dmcmd::status(name, json),
        Cmd::Remap {
            name,
            sector,
            count,
        } => dmcmd::remap(name, *sector, *count, json),
        Cmd::Unremap { name, sector } => dmcmd::unremap(name, *sector, json),
        Cmd::ListRemaps { name, from, max } => dmcmd::list_remaps(name, *from, *max, json),
        Cmd::Stats { name, clear } => dmcmd::stats(name, *clear, json),
        Cmd::Message {
            name,
            sector,
            words,
        } => dmcmd::message(name, *sector, words, json),
        Cmd::Tune { check: _, pid } => tunecmd::check(*pid, json),
        Cmd::Completions { shell } => man_and_completions::completions(Cli::command(), *shell),
        Cmd::Manpage { dir } => man_and_completions::manpage(Cli::command(), dir.as_deref()),
        Cmd::Nvme(c) => nvme::run(c, json),
        Cmd::Bench(c) => bench::run(c, json),
        Cmd::Events(a) => events::run(a, json),
        Cmd::Inspect(a) => inspect::run(a, json),
        #[cfg(feature = "devtools")]
        Cmd::FuzzControl(a) => fuzz::run(a, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dmremap: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_device_commands() {
        let c = Cli::try_parse_from([
            "dmremap",
            "create",
            "r0",
            "--main",
            "/dev/a",
            "--spare",
            "/dev/b",
            "--offset",
            "8",
            "--block-size",
            "65536",
            "--read-retries",
            "0",
            "--length",
            "1024",
            "--json",
        ])
        .unwrap();
        assert!(c.json);
        match c.cmd {
            Cmd::Create(a) => {
                assert_eq!(a.name, "r0");
                assert_eq!(a.main, PathBuf::from("/dev/a"));
                assert_eq!(
                    (a.offset, a.block_size, a.read_retries, a.length),
                    (8, Some(65536), Some(0), Some(1024))
                );
            }
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from(["dmremap", "message", "r0", "list", "0", "10"]).unwrap();
        match c.cmd {
            Cmd::Message { words, sector, .. } => {
                assert_eq!(words, ["list", "0", "10"]);
                assert_eq!(sector, 0);
            }
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from([
            "dmremap",
            "list-remaps",
            "r0",
            "--from",
            "4096",
            "--max",
            "3",
        ])
        .unwrap();
        assert!(matches!(
            c.cmd,
            Cmd::ListRemaps {
                from: 4096,
                max: Some(3),
                ..
            }
        ));
    }

    #[test]
    fn refuses_bad_numbers_at_parse_time() {
        for args in [
            &[
                "dmremap", "create", "r0", "--main", "/dev/a", "--spare", "/dev/b", "--offset",
                "-8",
            ][..],
            &[
                "dmremap",
                "create",
                "r0",
                "--main",
                "/dev/a",
                "--spare",
                "/dev/b",
                "--block-size",
                "4k",
            ],
            &["dmremap", "create", "r0", "--main", "/dev/a"],
            &["dmremap", "remap", "r0", "abc"],
            &["dmremap", "remap", "r0", "8", "--count", "x"],
            &["dmremap", "message", "r0"],
            &["dmremap", "tune"],
            &["dmremap", "completions", "cmd.exe"],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn events_and_hidden_commands_parse() {
        assert!(Cli::try_parse_from(["dmremap", "events", "--follow", "--new"]).is_ok());
        assert!(Cli::try_parse_from(["dmremap", "events", "--since", "9", "--follow"]).is_ok());
        for args in [
            &["dmremap", "events", "--new"][..],
            &["dmremap", "events", "--follow", "--new", "--since", "3"],
            &["dmremap", "events", "--since", "x"],
            &["dmremap", "bench", "control"],
            &[
                "dmremap",
                "bench",
                "control",
                "--device",
                "r0",
                "--iterations",
                "0",
            ],
        ] {
            assert_eq!(
                Cli::try_parse_from(args).unwrap_err().exit_code(),
                2,
                "{args:?}"
            );
        }
        let fuzz = Cli::try_parse_from([
            "dmremap",
            "fuzz-control",
            "--seed",
            "3",
            "--drop-privileges",
        ]);
        // The test aid exists only in the development build.
        #[cfg(feature = "devtools")]
        assert!(fuzz.is_ok());
        #[cfg(not(feature = "devtools"))]
        assert_eq!(fuzz.unwrap_err().exit_code(), 2);
        let mut help = Vec::new();
        Cli::command().write_long_help(&mut help).unwrap();
        assert!(
            !String::from_utf8(help).unwrap().contains("fuzz-control"),
            "the test aid is hidden"
        );
    }

    #[test]
    fn manpage_and_completions_come_from_the_definitions() {
        let mut out = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut out)
            .unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(
            page.contains(".TH dmremap 1"),
            "{}",
            &page[..200.min(page.len())]
        );
        for sub in [
            "create",
            "list\\-remaps",
            "unremap",
            "completions",
            "manpage",
            "tune",
        ] {
            assert!(page.contains(sub), "man page lacks {sub}");
        }
        assert!(page.contains("Exit codes"));
        let mut out = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "dmremap",
            &mut out,
        );
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("list-remaps") && script.contains("--block-size"));
    }
}
