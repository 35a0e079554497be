//! `dmremap fuzz-control` (hidden): bad input for the control device, for the VM tests.
//!
//! Sends random ioctls to `/dev/dm-remap` (random command numbers, directions and sizes, unknown
//! numbers under our magic and a few other magics; the known commands with mutated structures:
//! sizes, flags, reserved fields, operations, limits; bad pointers: NULL, a kernel address,
//! unmapped and non-canonical addresses, buffers that run into an inaccessible page) and random
//! read()s and poll()s. The only failures allowed are EINVAL, EFAULT, ENOTTY and ENODEV (and
//! EAGAIN for a read of the non-blocking file); anything else is reported and the command fails.
//! With `--drop-privileges` it then becomes uid/gid 65534 keeping the open file, and checks that
//! every known ioctl and read() fail with EPERM and that opening the device is refused.
//!
//! Memory safety of the fuzzer itself: every pointer handed to the kernel is either a buffer
//! larger than anything the kernel may write for that call, or an address no mapping of this
//! process can hold (NULL page, kernel half, non-canonical, a page unmapped here, a PROT_NONE
//! guard page). Commands other tools handle in the VFS before the driver (FIONBIO, FIFREEZE,
//! FS_IOC_*, ...) are never generated: only magics the VFS does not know are used.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;

use clap::Args;
use dmremap_lib::control::{uapi, Control, CONTROL_PATH};

use crate::error::CliError;

#[derive(Args, Debug)]
pub struct FuzzArgs {
    /// Calls to make.
    #[arg(long, default_value_t = 20_000)]
    iterations: u64,
    /// Seed of the pseudo-random sequence (the same seed repeats the same calls).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Afterwards become uid/gid 65534 and check that every operation is refused.
    #[arg(long)]
    drop_privileges: bool,
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Size of the valid buffer: more than any ioctl size (14 bits) and a full event array.
const BUF: usize = 256 * 1024;
const PAGE: usize = 4096;

/// Memory the fuzzer points the kernel at.
struct Arena {
    /// BUF bytes, readable and writable.
    buf: *mut u8,
    /// A readable and writable page followed by a PROT_NONE page.
    edge: *mut u8,
    /// An address whose page was unmapped.
    hole: usize,
}

impl Arena {
    fn new() -> Result<Arena, CliError> {
        let map = |len: usize| {
            // SAFETY: an anonymous private mapping; the result is checked.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                Err(CliError::failed(format!(
                    "mmap: {}",
                    std::io::Error::last_os_error()
                )))
            } else {
                Ok(p.cast::<u8>())
            }
        };
        let buf = map(BUF)?;
        let edge = map(2 * PAGE)?;
        let hole = map(PAGE)?;
        // SAFETY: `edge + PAGE` is the second page of the mapping above; `hole` is a page we
        // mapped and no longer use. Results checked.
        let (r1, r2) = unsafe {
            (
                libc::mprotect(edge.add(PAGE).cast(), PAGE, libc::PROT_NONE),
                libc::munmap(hole.cast(), PAGE),
            )
        };
        if r1 != 0 || r2 != 0 {
            return Err(CliError::failed(format!(
                "mprotect/munmap: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(Arena {
            buf,
            edge,
            hole: hole as usize,
        })
    }

    /// The valid buffer as bytes.
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `buf` is a private mapping of BUF bytes owned by this arena for its lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.buf, BUF) }
    }

    /// An address for the kernel to use as an ioctl argument or event buffer, and whether it is
    /// the valid buffer.
    fn pointer(&self, rng: &mut Rng) -> (usize, bool) {
        match rng.below(10) {
            0..=3 => (self.buf as usize, true),
            4 => (0, false),
            5 => (rng.below(PAGE as u64) as usize, false),
            6 => (0xffff_8880_0000_0000 + rng.below(1 << 30) as usize, false),
            7 => (
                0x8000_0000_0000_0000 | (rng.next() as usize & 0x0000_ffff_ffff_fff8),
                false,
            ),
            8 => (self.hole + rng.below(PAGE as u64) as usize, false),
            // Runs from the last bytes of a good page into a PROT_NONE page.
            _ => (
                self.edge as usize + PAGE - 1 - rng.below(120) as usize,
                false,
            ),
        }
    }
}

fn ioc(dir: u64, ty: u64, nr: u64, size: u64) -> u64 {
    (dir << 30) | (size << 16) | (ty << 8) | nr
}

const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;

/// The known commands and their structure sizes.
fn known() -> [(u64, usize); 4] {
    use std::mem::size_of;
    [
        (0x00, size_of::<uapi::dmr_version>()),
        (0x01, size_of::<uapi::dmr_bench>()),
        (0x02, size_of::<uapi::dmr_events>()),
        (0x03, size_of::<uapi::dmr_events_seek>()),
    ]
}

fn known_cmd(nr: u64, size: usize) -> u64 {
    ioc(
        IOC_READ | IOC_WRITE,
        u64::from(uapi::DMR_IOCTL_MAGIC),
        nr,
        size as u64,
    )
}

/// A value for a `u64` field: mostly plausible, sometimes at or past a limit.
fn field(rng: &mut Rng, good: &[u64], limit: u64) -> u64 {
    match rng.below(10) {
        0..=5 => rng.pick(good),
        6 => limit,
        7 => limit.saturating_add(1),
        8 => u64::MAX,
        _ => rng.next(),
    }
}

/// Fill the valid buffer with a structure for command `nr`: valid, then mutated.
fn fill_struct(rng: &mut Rng, arena: &mut Arena, nr: u64, size: usize) {
    let event_ptr = arena.pointer(rng).0 as u64;
    let b = arena.bytes();
    b[..PAGE].fill(0);
    let put32 =
        |b: &mut [u8], off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    let put64 =
        |b: &mut [u8], off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    let size32 = if rng.chance(85) {
        size as u32
    } else {
        rng.pick(&[0, 1, size as u32 - 1, size as u32 + 8, 4096, u32::MAX])
    };
    put32(b, 0, size32);
    match nr {
        0x00 => {
            if rng.chance(15) {
                put32(b, 20, rng.next() as u32); // flags
            }
        }
        0x01 => {
            // Keep the work small: big but legal iteration/entry counts would run for minutes
            // under KASAN; the limits themselves are still crossed.
            put32(
                b,
                4,
                if rng.chance(80) {
                    rng.below(7) as u32
                } else {
                    rng.next() as u32
                },
            ); // op
            if rng.chance(10) {
                put32(b, 8, rng.next() as u32); // flags
            }
            put32(b, 12, rng.pick(&[0, 1, 16, 1024, 1025, u32::MAX])); // batch
            put64(
                b,
                16,
                field(
                    rng,
                    &[0, 1, 100, 1000],
                    u64::from(uapi::DMR_BENCH_MAX_ITERATIONS),
                ),
            ); // iterations
            put64(
                b,
                24,
                field(rng, &[0, 1, 1000], u64::from(uapi::DMR_BENCH_MAX_ENTRIES)),
            ); // entries
            let it = u64::from_ne_bytes(b[16..24].try_into().unwrap_or_default());
            let en = u64::from_ne_bytes(b[24..32].try_into().unwrap_or_default());
            // A legal request with a large count: cut it to a small one.
            if it > 1000 && it <= u64::from(uapi::DMR_BENCH_MAX_ITERATIONS) {
                put64(b, 16, 1000);
            }
            if en > 1000 && en <= u64::from(uapi::DMR_BENCH_MAX_ENTRIES) {
                put64(b, 24, 1000);
            }
        }
        0x02 => {
            if rng.chance(10) {
                put32(b, 4, rng.next() as u32); // flags
            }
            put64(b, 8, rng.pick(&[0, 1, 2, 100, u64::MAX])); // since_seq
            put64(b, 16, event_ptr); // buf
            put32(b, 24, rng.pick(&[0, 1, 7, 1024, 1025, u32::MAX])); // max
            if rng.chance(10) {
                put32(b, 28, 1); // count (must be 0)
            }
        }
        _ => {
            put32(b, 4, rng.pick(&[0, 1, 2, 3, u32::MAX])); // whence
            if rng.chance(10) {
                put32(b, 8, 1); // flags
            }
            put64(b, 16, rng.pick(&[0, 1, 2, 1000, u64::MAX])); // seq
        }
    }
    // Sometimes a non-zero reserved byte or output field anywhere after the header.
    if rng.chance(10) {
        let at = 4 + rng.below(size as u64 - 4) as usize;
        b[at] = b[at].wrapping_add(1 + rng.below(255) as u8);
    }
}

fn errno_name(e: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(e))
}

pub fn run(a: &FuzzArgs, json: bool) -> Result<(), CliError> {
    let ctl = Control::open()?;
    ctl.set_nonblocking(true)?;
    let fd = ctl.file().as_raw_fd();
    let mut arena = Arena::new()?;
    let mut rng = Rng(a.seed.max(1) ^ 0x9E37_79B9_7F4A_7C15);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut unexpected: Vec<String> = Vec::new();
    let allowed = [libc::EINVAL, libc::EFAULT, libc::ENOTTY, libc::ENODEV];
    let magics = [
        u64::from(uapi::DMR_IOCTL_MAGIC),
        0xFD,
        0xDA,
        0xDC,
        0x4E,
        0xAB,
        0x12,
    ];

    for i in 0..a.iterations {
        let kind = rng.below(10);
        let (what, ret, errno, ok_errnos): (String, isize, i32, &[i32]) = if kind < 7 {
            // An ioctl.
            let (cmd, arg) = if kind < 4 {
                let (nr, size) = rng.pick(&known());
                if rng.chance(90) {
                    fill_struct(&mut rng, &mut arena, nr, size);
                } else {
                    rng.next()
                        .to_ne_bytes()
                        .iter()
                        .cycle()
                        .take(PAGE)
                        .zip(arena.bytes().iter_mut())
                        .for_each(|(s, d)| *d = *s);
                }
                let arg = if rng.chance(80) {
                    arena.buf as usize
                } else {
                    arena.pointer(&mut rng).0
                };
                (known_cmd(nr, size), arg)
            } else {
                let ty = if rng.chance(80) {
                    magics[0]
                } else {
                    rng.pick(&magics[1..])
                };
                let nr = if rng.chance(50) {
                    rng.below(8)
                } else {
                    rng.below(256)
                };
                let size = if rng.chance(50) {
                    rng.pick(&[0, 4, 48, 56, 88, 112, 113])
                } else {
                    rng.below(1 << 14)
                };
                let (arg, good) = arena.pointer(&mut rng);
                if good {
                    let seed = rng.next();
                    arena.bytes()[..PAGE]
                        .iter_mut()
                        .enumerate()
                        .for_each(|(j, d)| *d = (seed >> (j % 8 * 8)) as u8);
                }
                (ioc(rng.below(4), ty, nr, size), arg)
            };
            // SAFETY: `arg` is the arena's buffer (larger than any size the kernel may copy for
            // this command, and than any event array it may write) or an address that cannot be
            // mapped in this process (see the module comment); the commands are ours or unknown.
            let r = unsafe { libc::ioctl(fd, cmd as _, arg) };
            let e = if r < 0 {
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
            } else {
                0
            };
            (
                format!("ioctl({cmd:#010x}, {arg:#x})"),
                r as isize,
                e,
                &allowed,
            )
        } else if kind < 9 {
            // A read of a random length into a good or bad buffer.
            let len = rng.pick(&[0usize, 1, 47, 48, 49, 96, 4096, 48 * 1025, 200_000]);
            let (p, good) = arena.pointer(&mut rng);
            let len = if good { len.min(BUF) } else { len };
            // SAFETY: as for the ioctls: a buffer of at least `len` bytes or an unmappable address.
            let r = unsafe { libc::read(fd, p as *mut libc::c_void, len) };
            let e = if r < 0 {
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
            } else {
                0
            };
            (
                format!("read({p:#x}, {len})"),
                r,
                e,
                &[libc::EINVAL, libc::EFAULT, libc::EAGAIN][..],
            )
        } else {
            let r = ctl.wait_events(0).map(|_| 0).unwrap_or(-1);
            let e = if r < 0 { libc::EIO } else { 0 };
            ("poll".to_string(), r, e, &[][..])
        };
        let key = if ret >= 0 {
            "ok".to_string()
        } else {
            errno_name(errno)
        };
        *counts.entry(key.clone()).or_default() += 1;
        if ret < 0 && !ok_errnos.contains(&errno) && unexpected.len() < 50 {
            unexpected.push(format!("#{i} {what}: {key}"));
        }
    }

    // As nobody, with the file still open: everything is refused.
    let mut unprivileged: BTreeMap<&str, String> = BTreeMap::new();
    if a.drop_privileges {
        // SAFETY: plain system calls on this single-threaded process; results checked.
        let r = unsafe {
            (
                libc::setgroups(0, std::ptr::null()),
                libc::setresgid(65534, 65534, 65534),
                libc::setresuid(65534, 65534, 65534),
            )
        };
        if r != (0, 0, 0) {
            return Err(CliError::failed(format!(
                "cannot become uid 65534: {}",
                std::io::Error::last_os_error()
            )));
        }
        for (nr, size) in known() {
            fill_struct(&mut Rng(7 + nr), &mut arena, nr, size);
            let b = arena.bytes();
            b[..PAGE].fill(0);
            b[..4].copy_from_slice(&(size as u32).to_ne_bytes());
            // SAFETY: the arena's buffer, larger than the structure.
            let r = unsafe { libc::ioctl(fd, known_cmd(nr, size) as _, arena.buf) };
            let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            let got = if r < 0 { errno_name(e) } else { "ok".into() };
            if got != "EPERM" {
                unexpected.push(format!("unprivileged ioctl nr {nr}: {got}, want EPERM"));
            }
            unprivileged.insert(
                ["version", "bench", "events", "events_seek"][nr as usize],
                got,
            );
        }
        // SAFETY: the arena's buffer, BUF bytes.
        let r = unsafe { libc::read(fd, arena.buf.cast(), 4096) };
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let got = if r < 0 { errno_name(e) } else { "ok".into() };
        if got != "EPERM" {
            unexpected.push(format!("unprivileged read: {got}, want EPERM"));
        }
        unprivileged.insert("read", got);
        let got = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(CONTROL_PATH)
        {
            Ok(_) => "ok".to_string(),
            Err(e) => errno_name(e.raw_os_error().unwrap_or(0)),
        };
        if got != "EPERM" && got != "EACCES" {
            unexpected.push(format!("unprivileged open: {got}, want EACCES or EPERM"));
        }
        unprivileged.insert("open", got);
    }

    let doc = serde_json::json!({
        "iterations": a.iterations,
        "seed": a.seed,
        "results": counts,
        "unprivileged": unprivileged,
        "unexpected": unexpected,
    });
    if json {
        println!("{doc}");
    } else {
        println!(
            "{} calls (seed {}): {}",
            a.iterations,
            a.seed,
            counts
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if a.drop_privileges {
            println!(
                "as uid 65534: {}",
                unprivileged
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for u in &unexpected {
            println!("unexpected: {u}");
        }
    }
    if unexpected.is_empty() {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "{} unexpected result(s) from {CONTROL_PATH}",
            unexpected.len()
        )))
    }
}
