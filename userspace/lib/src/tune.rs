//! Linux scheduling and I/O tuning for worker threads, and a read-back of what is in effect.
//!
//! Every setter works on one thread (`tid`, where `0` means the calling thread): Linux keeps CPU
//! affinity, nice value and I/O priority per thread, so a worker pool can give each worker its own
//! settings. [`apply_current_thread`] applies a [`WorkerTuning`] step by step and never fails: a step
//! the kernel refuses for lack of privilege (no `CAP_SYS_NICE`/`CAP_SYS_ADMIN`) is recorded as
//! denied, a real-time I/O priority falls back to the best-effort class, and the caller gets one
//! summary line to log ([`TuneReport::warning`]). [`check`] reads back, from the kernel, what every
//! thread of a process really runs with (`sched_getaffinity`, `getpriority`, `ioprio_get`,
//! `sched_getscheduler`).

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::RawFd;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

const IOPRIO_CLASS_SHIFT: u32 = 13;
const IOPRIO_PRIO_MASK: i32 = (1 << IOPRIO_CLASS_SHIFT) - 1;
const IOPRIO_WHO_PROCESS: libc::c_int = 1;

/// Capability numbers from `<linux/capability.h>`.
const CAP_SYS_RAWIO: u32 = 17;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_NICE: u32 = 23;

/// The calling thread's kernel thread id.
pub fn current_tid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

// ---------------------------------------------------------------------------------------------
// CPU affinity

/// CPUs the system has online, from `/sys/devices/system/cpu/online` (falls back to the calling
/// thread's allowed set when that file cannot be read).
pub fn online_cpus() -> io::Result<Vec<usize>> {
    match fs::read_to_string("/sys/devices/system/cpu/online") {
        Ok(s) => {
            parse_cpu_list(s.trim()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        }
        Err(_) => get_affinity(0),
    }
}

/// Parses a kernel CPU list such as `0-3,6,8-9`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    if s.is_empty() {
        return Ok(out);
    }
    for part in s.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let lo: usize = lo
            .parse()
            .map_err(|_| format!("bad CPU number `{lo}` in `{s}`"))?;
        let hi: usize = hi
            .parse()
            .map_err(|_| format!("bad CPU number `{hi}` in `{s}`"))?;
        if hi < lo {
            return Err(format!("bad CPU range `{part}` in `{s}`"));
        }
        out.extend(lo..=hi);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Formats CPUs as a compact kernel-style list (`0-3,6`).
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

/// Pins thread `tid` (0 = calling thread) to `cpus`.
pub fn set_affinity(tid: i32, cpus: &[usize]) -> io::Result<()> {
    if cpus.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty CPU set"));
    }
    // SAFETY: cpu_set_t is plain data; all-zero is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    for &c in cpus {
        if c >= max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU {c} out of range"),
            ));
        }
        // SAFETY: c < CPU_SETSIZE, checked above.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: set is a valid cpu_set_t of the size passed.
    cvt(unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) })?;
    Ok(())
}

/// CPUs thread `tid` (0 = calling thread) may run on.
pub fn get_affinity(tid: i32) -> io::Result<Vec<usize>> {
    // SAFETY: as in set_affinity.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a writable cpu_set_t of the size passed.
    cvt(unsafe { libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) })?;
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: i < CPU_SETSIZE.
    Ok((0..max)
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// nice

/// Sets the nice value (-20..=19) of thread `tid` (0 = calling thread). Lowering it below the
/// current value needs `CAP_SYS_NICE` (or a matching `RLIMIT_NICE`).
pub fn set_nice(tid: i32, nice: i32) -> io::Result<()> {
    if !(-20..=19).contains(&nice) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("nice {nice} not in -20..=19"),
        ));
    }
    // SAFETY: plain syscall wrapper.
    cvt(unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) })?;
    Ok(())
}

/// The nice value of thread `tid` (0 = calling thread).
pub fn get_nice(tid: i32) -> io::Result<i32> {
    // getpriority may legitimately return -1, so errno tells failure apart.
    // SAFETY: errno location is thread-local and valid.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: plain syscall wrapper.
    let v = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    if v == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error().unwrap_or(0) != 0 {
            return Err(e);
        }
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// I/O priority

/// I/O scheduling class (`ioprio_set(2)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoprioClass {
    /// No class set: the kernel derives a best-effort level from the nice value.
    None,
    /// Real time (needs `CAP_SYS_NICE` or `CAP_SYS_ADMIN`).
    RealTime,
    /// Best effort.
    BestEffort,
    /// Idle: served only when nobody else uses the disk.
    Idle,
}

/// An I/O priority: class plus level (0 = highest .. 7 = lowest; ignored for idle/none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ioprio {
    pub class: IoprioClass,
    pub level: u8,
}

impl Ioprio {
    pub const IDLE: Ioprio = Ioprio {
        class: IoprioClass::Idle,
        level: 0,
    };

    pub fn best_effort(level: u8) -> Ioprio {
        Ioprio {
            class: IoprioClass::BestEffort,
            level,
        }
    }

    pub fn real_time(level: u8) -> Ioprio {
        Ioprio {
            class: IoprioClass::RealTime,
            level,
        }
    }

    /// The raw value passed to `ioprio_set`.
    pub fn to_raw(self) -> i32 {
        let class = match self.class {
            IoprioClass::None => 0,
            IoprioClass::RealTime => 1,
            IoprioClass::BestEffort => 2,
            IoprioClass::Idle => 3,
        };
        (class << IOPRIO_CLASS_SHIFT) | (self.level as i32 & IOPRIO_PRIO_MASK)
    }

    /// Decodes a value returned by `ioprio_get`.
    pub fn from_raw(raw: i32) -> Ioprio {
        let class = match raw >> IOPRIO_CLASS_SHIFT {
            1 => IoprioClass::RealTime,
            2 => IoprioClass::BestEffort,
            3 => IoprioClass::Idle,
            _ => IoprioClass::None,
        };
        Ioprio {
            class,
            level: (raw & IOPRIO_PRIO_MASK & 0xff) as u8,
        }
    }
}

impl fmt::Display for Ioprio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.class {
            IoprioClass::None => write!(f, "none"),
            IoprioClass::Idle => write!(f, "idle"),
            IoprioClass::RealTime => write!(f, "rt:{}", self.level),
            IoprioClass::BestEffort => write!(f, "be:{}", self.level),
        }
    }
}

impl FromStr for Ioprio {
    type Err = String;

    /// Accepts `none`, `idle`, `be:N`, `rt:N` (N in 0..=7; `be`/`rt` alone mean level 4).
    fn from_str(s: &str) -> Result<Self, String> {
        let (class, level) = match s.split_once(':') {
            Some((c, l)) => (c, Some(l)),
            None => (s, None),
        };
        let level = match level {
            Some(l) => {
                let v: u8 = l
                    .parse()
                    .map_err(|_| format!("bad level `{l}` (expected 0..=7)"))?;
                if v > 7 {
                    return Err(format!("level {v} not in 0..=7"));
                }
                Some(v)
            }
            None => None,
        };
        match (class, level) {
            ("none", None) => Ok(Ioprio {
                class: IoprioClass::None,
                level: 0,
            }),
            ("idle", None) => Ok(Ioprio::IDLE),
            ("be", l) => Ok(Ioprio::best_effort(l.unwrap_or(4))),
            ("rt", l) => Ok(Ioprio::real_time(l.unwrap_or(4))),
            ("none" | "idle", Some(_)) => Err(format!("`{class}` takes no level")),
            _ => Err(format!(
                "unknown I/O class `{class}` (expected none, idle, be[:N], rt[:N])"
            )),
        }
    }
}

/// Sets the I/O priority of thread `tid` (0 = calling thread).
pub fn set_ioprio(tid: i32, prio: Ioprio) -> io::Result<()> {
    if prio.level > 7 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "ioprio level not in 0..=7",
        ));
    }
    // SAFETY: ioprio_set(which, who, ioprio) takes three integers.
    cvt_long(unsafe {
        libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, tid, prio.to_raw())
    })?;
    Ok(())
}

/// The I/O priority of thread `tid` (0 = calling thread), as the kernel reports it.
pub fn get_ioprio(tid: i32) -> io::Result<Ioprio> {
    // SAFETY: ioprio_get(which, who) takes two integers.
    let raw = cvt_long(unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, tid) })?;
    Ok(Ioprio::from_raw(raw as i32))
}

/// The I/O priority the kernel actually uses for a thread: with class `none`, best effort at
/// level `(nice + 20) / 5` (see `ioprio(7)`).
pub fn effective_ioprio(set: Ioprio, nice: i32) -> Ioprio {
    match set.class {
        IoprioClass::None => Ioprio::best_effort(((nice.clamp(-20, 19) + 20) / 5) as u8),
        _ => set,
    }
}

// ---------------------------------------------------------------------------------------------
// Scheduling policy (read only)

/// The scheduling policy name of thread `tid` (`other`, `fifo`, `rr`, `batch`, `idle`, `deadline`).
pub fn get_sched_policy(tid: i32) -> io::Result<String> {
    // SAFETY: plain syscall wrapper.
    let p = cvt(unsafe { libc::sched_getscheduler(tid) })?;
    let name = match p & !libc::SCHED_RESET_ON_FORK {
        libc::SCHED_OTHER => "other",
        libc::SCHED_FIFO => "fifo",
        libc::SCHED_RR => "rr",
        libc::SCHED_BATCH => "batch",
        libc::SCHED_IDLE => "idle",
        6 => "deadline",
        _ => return Ok(format!("policy-{p}")),
    };
    Ok(name.to_string())
}

// ---------------------------------------------------------------------------------------------
// Memory and file advice

/// `madvise` advice for large buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemAdvice {
    /// Pages will be read sequentially (`MADV_SEQUENTIAL`).
    Sequential,
    /// Pages will be needed soon (`MADV_WILLNEED`).
    WillNeed,
    /// Back the range with transparent huge pages where possible (`MADV_HUGEPAGE`).
    HugePage,
    /// Leave the range out of core dumps (`MADV_DONTDUMP`).
    DontDump,
}

/// Applies `advice` to the whole pages inside `buf` (a buffer that covers no whole page is left
/// alone and `Ok` is returned).
pub fn madvise(buf: &mut [u8], advice: MemAdvice) -> io::Result<()> {
    let page = page_size();
    let start = buf.as_mut_ptr() as usize;
    let end = start + buf.len();
    let a = start.div_ceil(page) * page;
    let b = end / page * page;
    if b <= a {
        return Ok(());
    }
    let adv = match advice {
        MemAdvice::Sequential => libc::MADV_SEQUENTIAL,
        MemAdvice::WillNeed => libc::MADV_WILLNEED,
        MemAdvice::HugePage => libc::MADV_HUGEPAGE,
        MemAdvice::DontDump => libc::MADV_DONTDUMP,
    };
    // SAFETY: [a, b) lies inside buf, which we borrow mutably; these advices do not discard data.
    cvt(unsafe { libc::madvise(a as *mut libc::c_void, b - a, adv) })?;
    Ok(())
}

/// `posix_fadvise` advice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileAdvice {
    Normal,
    Sequential,
    WillNeed,
    DontNeed,
    NoReuse,
}

/// Gives the kernel advice about how `fd` will be read in `[offset, offset + len)` (`len` 0 = to
/// the end of the file).
pub fn fadvise(fd: RawFd, offset: u64, len: u64, advice: FileAdvice) -> io::Result<()> {
    let adv = match advice {
        FileAdvice::Normal => libc::POSIX_FADV_NORMAL,
        FileAdvice::Sequential => libc::POSIX_FADV_SEQUENTIAL,
        FileAdvice::WillNeed => libc::POSIX_FADV_WILLNEED,
        FileAdvice::DontNeed => libc::POSIX_FADV_DONTNEED,
        FileAdvice::NoReuse => libc::POSIX_FADV_NOREUSE,
    };
    // SAFETY: plain syscall wrapper; posix_fadvise returns the error number instead of setting errno.
    let r = unsafe { libc::posix_fadvise(fd, offset as libc::off_t, len as libc::off_t, adv) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

// ---------------------------------------------------------------------------------------------
// Applying a worker's tuning with graceful degradation

/// What one worker thread asks for. `None`/empty fields are left as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerTuning {
    /// CPUs to pin to; empty = no pinning.
    #[serde(default)]
    pub cpus: Vec<usize>,
    /// Nice value.
    #[serde(default)]
    pub nice: Option<i32>,
    /// I/O priority. A real-time class the kernel refuses falls back to best effort, same level.
    #[serde(default)]
    pub ioprio: Option<Ioprio>,
}

/// The outcome of one tuning step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepStatus {
    /// The kernel accepted the setting.
    Applied,
    /// Refused for lack of privilege; `fallback` says what is in effect instead, if anything was set.
    Denied {
        needs: String,
        fallback: Option<String>,
    },
    /// Refused for another reason (bad CPU number, ...).
    Failed { error: String },
}

/// One step of [`apply_current_thread`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TuneStep {
    /// `affinity`, `nice` or `ioprio`.
    pub what: String,
    /// The requested value, human readable.
    pub requested: String,
    #[serde(flatten)]
    pub status: StepStatus,
}

/// Everything [`apply_current_thread`] did for one thread.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TuneReport {
    pub tid: i32,
    pub steps: Vec<TuneStep>,
}

impl TuneReport {
    /// True when every requested step was applied as asked.
    pub fn fully_applied(&self) -> bool {
        self.steps.iter().all(|s| s.status == StepStatus::Applied)
    }

    /// The steps that were refused for lack of privilege.
    pub fn denied(&self) -> impl Iterator<Item = &TuneStep> {
        self.steps
            .iter()
            .filter(|s| matches!(s.status, StepStatus::Denied { .. }))
    }

    /// One line describing what was not applied, or `None` when everything was.
    pub fn warning(&self) -> Option<String> {
        let parts: Vec<String> = self
            .steps
            .iter()
            .filter_map(|s| match &s.status {
                StepStatus::Applied => None,
                StepStatus::Denied { needs, fallback } => Some(match fallback {
                    Some(fb) => format!(
                        "{} {} denied (needs {needs}; using {fb})",
                        s.what, s.requested
                    ),
                    None => format!(
                        "{} {} denied (needs {needs}; left unchanged)",
                        s.what, s.requested
                    ),
                }),
                StepStatus::Failed { error } => {
                    Some(format!("{} {} failed: {error}", s.what, s.requested))
                }
            })
            .collect();
        if parts.is_empty() {
            None
        } else {
            Some(parts.join("; "))
        }
    }
}

fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

/// Applies `t` to the calling thread, one step at a time; never fails (see [`TuneReport`]).
pub fn apply_current_thread(t: &WorkerTuning) -> TuneReport {
    let tid = current_tid();
    let mut steps = Vec::new();

    if !t.cpus.is_empty() {
        let requested = format_cpu_list(&t.cpus);
        let status = match online_cpus() {
            Ok(online) if t.cpus.iter().any(|c| !online.contains(c)) => StepStatus::Failed {
                error: format!(
                    "CPU list {requested} is not within the online CPUs {}",
                    format_cpu_list(&online)
                ),
            },
            _ => match set_affinity(0, &t.cpus) {
                Ok(()) => StepStatus::Applied,
                Err(e) if is_permission(&e) => StepStatus::Denied {
                    needs: "CAP_SYS_NICE".into(),
                    fallback: None,
                },
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => StepStatus::Failed {
                    error: format!("no CPU of {requested} is allowed for this process (cpuset)"),
                },
                Err(e) => StepStatus::Failed {
                    error: e.to_string(),
                },
            },
        };
        steps.push(TuneStep {
            what: "affinity".into(),
            requested,
            status,
        });
    }

    if let Some(nice) = t.nice {
        let status = match set_nice(0, nice) {
            Ok(()) => StepStatus::Applied,
            Err(e) if is_permission(&e) => StepStatus::Denied {
                needs: "CAP_SYS_NICE".into(),
                fallback: get_nice(0).ok().map(|n| format!("nice {n}")),
            },
            Err(e) => StepStatus::Failed {
                error: e.to_string(),
            },
        };
        steps.push(TuneStep {
            what: "nice".into(),
            requested: nice.to_string(),
            status,
        });
    }

    if let Some(prio) = t.ioprio {
        let status = match set_ioprio(0, prio) {
            Ok(()) => StepStatus::Applied,
            Err(e) if is_permission(&e) && prio.class == IoprioClass::RealTime => {
                let fb = Ioprio::best_effort(prio.level);
                match set_ioprio(0, fb) {
                    Ok(()) => StepStatus::Denied {
                        needs: "CAP_SYS_NICE".into(),
                        fallback: Some(fb.to_string()),
                    },
                    Err(_) => StepStatus::Denied {
                        needs: "CAP_SYS_NICE".into(),
                        fallback: None,
                    },
                }
            }
            Err(e) if is_permission(&e) => StepStatus::Denied {
                needs: "CAP_SYS_NICE".into(),
                fallback: None,
            },
            Err(e) => StepStatus::Failed {
                error: e.to_string(),
            },
        };
        steps.push(TuneStep {
            what: "ioprio".into(),
            requested: prio.to_string(),
            status,
        });
    }

    TuneReport { tid, steps }
}

// ---------------------------------------------------------------------------------------------
// Read-back

/// What the kernel reports for one thread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadState {
    pub tid: i32,
    /// `/proc/<pid>/task/<tid>/comm`.
    pub name: String,
    /// Allowed CPUs (`sched_getaffinity`).
    pub cpus: Vec<usize>,
    /// The same, as a kernel-style list.
    pub cpu_list: String,
    /// `getpriority(PRIO_PROCESS, tid)`.
    pub nice: i32,
    /// `ioprio_get(IOPRIO_WHO_PROCESS, tid)` as set.
    pub ioprio: Ioprio,
    /// The I/O priority the kernel applies (class `none` resolves to best effort from nice).
    pub ioprio_effective: Ioprio,
    /// Scheduling policy (`sched_getscheduler`).
    pub policy: String,
}

/// Capabilities that matter for tuning, from `CapEff` in `/proc/<pid>/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub cap_sys_nice: bool,
    pub cap_sys_admin: bool,
    pub cap_sys_rawio: bool,
    /// The raw `CapEff` mask, hex.
    pub effective: String,
}

/// What is really in effect for a process and its threads, read back from the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TuneCheck {
    pub pid: i32,
    pub online_cpus: Vec<usize>,
    pub capabilities: Capabilities,
    pub threads: Vec<ThreadState>,
}

/// Reads the capability mask of a process (`pid`) or, with `tid`, of one of its threads.
pub fn capabilities(pid: i32, tid: Option<i32>) -> io::Result<Capabilities> {
    let path = match tid {
        Some(t) => format!("/proc/{pid}/task/{t}/status"),
        None => format!("/proc/{pid}/status"),
    };
    let status = fs::read_to_string(&path)?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|s| s.trim().to_string())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{path}: no CapEff line"),
            )
        })?;
    let mask = u64::from_str_radix(&hex, 16).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: bad CapEff `{hex}`"),
        )
    })?;
    Ok(Capabilities {
        cap_sys_nice: mask & (1 << CAP_SYS_NICE) != 0,
        cap_sys_admin: mask & (1 << CAP_SYS_ADMIN) != 0,
        cap_sys_rawio: mask & (1 << CAP_SYS_RAWIO) != 0,
        effective: hex,
    })
}

/// Reads one thread's state. `pid` only locates `comm`.
pub fn thread_state(pid: i32, tid: i32) -> io::Result<ThreadState> {
    let name = fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default();
    let cpus = get_affinity(tid)?;
    let nice = get_nice(tid)?;
    let ioprio = get_ioprio(tid)?;
    Ok(ThreadState {
        tid,
        name,
        cpu_list: format_cpu_list(&cpus),
        cpus,
        nice,
        ioprio,
        ioprio_effective: effective_ioprio(ioprio, nice),
        policy: get_sched_policy(tid)?,
    })
}

/// Reads back, for process `pid` and each of its threads, the CPU affinity, nice value, I/O
/// priority and scheduling policy the kernel holds. Threads that exit while being read are
/// skipped.
pub fn check(pid: i32) -> io::Result<TuneCheck> {
    let dir = format!("/proc/{pid}/task");
    let mut tids: Vec<i32> = fs::read_dir(&dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{dir}: {e}")))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    let mut threads = Vec::with_capacity(tids.len());
    for tid in tids {
        match thread_state(pid, tid) {
            Ok(t) => threads.push(t),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => continue,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("thread {tid} of pid {pid}: {e}"),
                ))
            }
        }
    }
    Ok(TuneCheck {
        pid,
        online_cpus: online_cpus()?,
        capabilities: capabilities(pid, None)?,
        threads,
    })
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Runs `f` on a fresh thread so that per-thread settings do not leak into other tests.
    fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().expect("test thread panicked")
    }

    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const CAP_V3: u32 = 0x2008_0522;

    /// Clears CAP_SYS_NICE and CAP_SYS_ADMIN from the calling thread's effective set (Linux keeps
    /// capabilities per thread). Only for threads that exit right after.
    fn drop_nice_caps_on_this_thread() {
        let mut hdr = CapHeader {
            version: CAP_V3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        // SAFETY: header and two data words as capget(2) expects for version 3.
        let r = unsafe {
            libc::syscall(
                libc::SYS_capget,
                &mut hdr as *mut CapHeader,
                data.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0, "capget: {}", io::Error::last_os_error());
        data[0].effective &= !((1 << CAP_SYS_NICE) | (1 << CAP_SYS_ADMIN));
        // SAFETY: as above; lowering the effective set is always allowed.
        let r =
            unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
        assert_eq!(r, 0, "capset: {}", io::Error::last_os_error());
    }

    #[test]
    fn cpu_list_round_trip() {
        assert_eq!(
            parse_cpu_list("0-3,6,8-9").unwrap(),
            vec![0, 1, 2, 3, 6, 8, 9]
        );
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<usize>::new());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
    }

    #[test]
    fn ioprio_parse_and_encode() {
        assert_eq!("rt:2".parse::<Ioprio>().unwrap(), Ioprio::real_time(2));
        assert_eq!("be".parse::<Ioprio>().unwrap(), Ioprio::best_effort(4));
        assert_eq!("idle".parse::<Ioprio>().unwrap(), Ioprio::IDLE);
        assert!("be:8".parse::<Ioprio>().is_err());
        assert!("idle:3".parse::<Ioprio>().is_err());
        assert!("fast".parse::<Ioprio>().is_err());
        for p in [Ioprio::real_time(0), Ioprio::best_effort(7), Ioprio::IDLE] {
            assert_eq!(Ioprio::from_raw(p.to_raw()), p);
            assert_eq!(p.to_string().parse::<Ioprio>().unwrap(), p);
        }
        assert_eq!(Ioprio::best_effort(3).to_raw(), (2 << 13) | 3);
    }

    #[test]
    fn affinity_set_and_read_back_per_thread() {
        let allowed = get_affinity(0).unwrap();
        assert!(!allowed.is_empty());
        let target = *allowed.last().unwrap();
        let got = on_thread(move || {
            set_affinity(0, &[target]).unwrap();
            get_affinity(current_tid()).unwrap()
        });
        assert_eq!(got, vec![target]);
        // The test thread itself was not pinned.
        assert_eq!(get_affinity(0).unwrap(), allowed);
        // A CPU that cannot exist is refused.
        assert!(set_affinity(0, &[100_000]).is_err());
    }

    #[test]
    fn nice_is_per_thread_and_reads_back() {
        let before = get_nice(0).unwrap();
        let want = (before + 3).min(19);
        let got = on_thread(move || {
            set_nice(0, want).unwrap();
            get_nice(current_tid()).unwrap()
        });
        assert_eq!(got, want);
        assert_eq!(
            get_nice(0).unwrap(),
            before,
            "raising another thread's nice changed ours"
        );
        assert!(set_nice(0, 25).is_err());
    }

    #[test]
    fn ioprio_set_and_read_back() {
        let (idle, be) = on_thread(|| {
            set_ioprio(0, Ioprio::IDLE).unwrap();
            let idle = get_ioprio(0).unwrap();
            set_ioprio(0, Ioprio::best_effort(6)).unwrap();
            (idle, get_ioprio(current_tid()).unwrap())
        });
        assert_eq!(idle, Ioprio::IDLE);
        assert_eq!(be, Ioprio::best_effort(6));

        // Real time needs CAP_SYS_NICE: expect success exactly when this thread holds it.
        let (has_cap, res) = on_thread(|| {
            let caps = capabilities(std::process::id() as i32, Some(current_tid())).unwrap();
            let r = set_ioprio(0, Ioprio::real_time(3)).map(|_| get_ioprio(0).unwrap());
            (caps.cap_sys_nice || caps.cap_sys_admin, r)
        });
        if has_cap {
            assert_eq!(res.unwrap(), Ioprio::real_time(3));
        } else {
            assert!(is_permission(&res.unwrap_err()));
        }
    }

    #[test]
    fn unprivileged_thread_degrades_with_one_warning() {
        let (report, nice_after, ioprio_after) = on_thread(|| {
            // Root or not, this thread ends up without CAP_SYS_NICE/CAP_SYS_ADMIN.
            drop_nice_caps_on_this_thread();
            let before = get_nice(0).unwrap();
            let t = WorkerTuning {
                cpus: vec![],
                nice: Some(before - 5),
                ioprio: Some(Ioprio::real_time(2)),
            };
            let report = apply_current_thread(&t);
            (
                report,
                get_nice(0).unwrap() - before,
                get_ioprio(0).unwrap(),
            )
        });
        assert!(!report.fully_applied());
        assert_eq!(report.denied().count(), 2, "{report:?}");
        assert_eq!(nice_after, 0, "nice must be left unchanged");
        assert_eq!(
            ioprio_after,
            Ioprio::best_effort(2),
            "rt must fall back to be at the same level"
        );
        let w = report.warning().expect("a warning");
        assert!(w.contains("CAP_SYS_NICE") && w.contains("be:2"), "{w}");
        assert_eq!(w.lines().count(), 1);
    }

    #[test]
    fn permitted_steps_report_applied() {
        let report = on_thread(|| {
            let cpu = *get_affinity(0).unwrap().first().unwrap();
            let nice = (get_nice(0).unwrap() + 1).min(19);
            apply_current_thread(&WorkerTuning {
                cpus: vec![cpu],
                nice: Some(nice),
                ioprio: Some(Ioprio::IDLE),
            })
        });
        assert!(report.fully_applied(), "{report:?}");
        assert_eq!(report.steps.len(), 3);
        assert!(report.warning().is_none());

        let bad = on_thread(|| {
            apply_current_thread(&WorkerTuning {
                cpus: vec![4095],
                ..Default::default()
            })
        });
        assert!(
            matches!(bad.steps[0].status, StepStatus::Failed { .. }),
            "{bad:?}"
        );
    }

    #[test]
    fn check_reads_back_a_tuned_thread() {
        let (tx, rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let cpu = *get_affinity(0).unwrap().last().unwrap();
        let h = std::thread::Builder::new()
            .name("tune-probe".into())
            .spawn(move || {
                set_affinity(0, &[cpu]).unwrap();
                set_nice(0, 7.max(get_nice(0).unwrap())).unwrap();
                set_ioprio(0, Ioprio::IDLE).unwrap();
                tx.send(current_tid()).unwrap();
                done_rx.recv().unwrap();
            })
            .unwrap();
        let tid = rx.recv().unwrap();
        let c = check(std::process::id() as i32).unwrap();
        done_tx.send(()).unwrap();
        h.join().unwrap();

        let t = c
            .threads
            .iter()
            .find(|t| t.tid == tid)
            .expect("tuned thread listed");
        assert_eq!(t.name, "tune-probe");
        assert_eq!(t.cpus, vec![cpu]);
        assert!(t.nice >= 7);
        assert_eq!(t.ioprio, Ioprio::IDLE);
        assert_eq!(t.ioprio_effective, Ioprio::IDLE);
        assert_eq!(t.policy, "other");
        assert!(c.threads.len() >= 2);
        assert!(!c.online_cpus.is_empty());
    }

    #[test]
    fn effective_ioprio_from_nice() {
        let none = Ioprio {
            class: IoprioClass::None,
            level: 0,
        };
        assert_eq!(effective_ioprio(none, 0), Ioprio::best_effort(4));
        assert_eq!(effective_ioprio(none, -20), Ioprio::best_effort(0));
        assert_eq!(effective_ioprio(none, 19), Ioprio::best_effort(7));
        assert_eq!(effective_ioprio(Ioprio::IDLE, -20), Ioprio::IDLE);
    }

    #[test]
    fn advice_on_buffers_and_files() {
        let page = page_size();
        let mut v = vec![0u8; 4 * page + 123];
        madvise(&mut v, MemAdvice::Sequential).unwrap();
        madvise(&mut v, MemAdvice::DontDump).unwrap();
        madvise(&mut v[..10], MemAdvice::WillNeed).unwrap(); // no whole page: no-op
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        use std::os::fd::AsRawFd;
        fadvise(f.as_raw_fd(), 0, 0, FileAdvice::Sequential).unwrap();
        fadvise(f.as_raw_fd(), 0, 4096, FileAdvice::WillNeed).unwrap();
        assert!(fadvise(-1, 0, 0, FileAdvice::Normal).is_err());
    }
}
