//! NVMe controller and namespace discovery from sysfs (`<root>/class/nvme/*`).
//!
//! The root is a parameter (normally `/sys`) so tests can point discovery at a fake tree.
//! For each controller `nvmeN` the attributes `model`, `serial`, `firmware_rev` are read
//! (required), plus `transport`, `state`, `cntlid` and the PCI `device/vendor` when present.
//! Namespaces are the controller directory's `nvmeXnY` entries (one block device per namespace)
//! and, with native multipath, its `nvmeXcYnZ` path entries, whose block device is `nvmeXnZ`.
//! For each namespace `size` (512-byte sectors), `queue/logical_block_size` and `nsid` are read.
//! The number after `n` in a namespace's name is the kernel's instance number for it, not its
//! NSID: namespaces are scanned concurrently, so a controller's NSID 2 can be `nvme9n1` and its
//! NSID 1 `nvme9n2`. The NSID comes from the `nsid` attribute; the name's number is used only
//! when the attribute is missing.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// One NVMe namespace (or multipath path to a namespace) of a controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// sysfs name: `nvme0n1`, or `nvme0c1n1` for a multipath path.
    pub name: String,
    /// Name of the block device under /dev that carries the namespace (`nvme0n1`).
    pub block_device: String,
    /// Namespace identifier.
    pub nsid: u32,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Logical block size in bytes.
    pub logical_block_size: u32,
}

impl Namespace {
    /// Number of logical blocks (size / logical block size; 0 if the block size is unknown).
    pub fn logical_blocks(&self) -> u64 {
        self.size_bytes
            .checked_div(u64::from(self.logical_block_size))
            .unwrap_or(0)
    }
}

/// One NVMe controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Controller {
    /// Controller name (`nvme0`); its character device is `/dev/nvme0`.
    pub name: String,
    /// Controller instance number (the `0` of `nvme0`).
    pub instance: u32,
    /// Model number.
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// Firmware revision.
    pub firmware_rev: String,
    /// Transport (`pcie`, `tcp`, `rdma`, `fc`, `loop`), if exposed.
    pub transport: Option<String>,
    /// Controller state (`live`, `resetting`, ...), if exposed.
    pub state: Option<String>,
    /// Controller ID, if exposed.
    pub cntlid: Option<u16>,
    /// PCI vendor id of the device, for PCIe controllers.
    pub pci_vendor: Option<u16>,
    /// Namespaces, sorted by namespace id then name.
    pub namespaces: Vec<Namespace>,
}

/// Parse `nvme<digits>`; returns the instance.
pub fn parse_controller_name(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("nvme")?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// Parse a namespace name `nvmeXnY` or `nvmeXcYnZ`; returns (block device name, the number
/// after `n`). That number is the namespace's instance, which usually but not always equals its
/// NSID (see the module documentation).
pub fn parse_namespace_name(name: &str) -> Option<(String, u32)> {
    let rest = name.strip_prefix("nvme")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (head, nsid) = rest.split_once('n')?;
    if !digits(nsid) {
        return None;
    }
    let nsid: u32 = nsid.parse().ok()?;
    let subsys = match head.split_once('c') {
        Some((x, y)) if digits(x) && digits(y) => x,
        None if digits(head) => head,
        _ => return None,
    };
    Some((format!("nvme{subsys}n{nsid}"), nsid))
}

/// Read an attribute, trimmed of padding and the trailing newline.
///
/// Discovery runs every scrape cycle and reads about a dozen attributes per controller, so this
/// costs three system calls (open, one read into a page-sized stack buffer, close) where
/// `fs::read_to_string` takes five (it also stats the file and reads again to find EOF): sysfs
/// returns a whole attribute, at most a page, in the first read. A read that fills the buffer
/// is continued to EOF, so longer (regular) files are still read whole.
fn read_attr(dir: &Path, name: &str) -> io::Result<String> {
    let p = dir.join(name);
    let annotate = |e: io::Error| io::Error::new(e.kind(), format!("{}: {}", p.display(), e));
    let mut f = File::open(&p).map_err(annotate)?;
    let mut page = [0u8; 4096];
    let n = loop {
        match f.read(&mut page) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r.map_err(annotate)?,
        }
    };
    let long;
    let bytes = if n < page.len() {
        &page[..n]
    } else {
        let mut v = page.to_vec();
        f.read_to_end(&mut v).map_err(annotate)?;
        long = v;
        &long[..]
    };
    let text = std::str::from_utf8(bytes).map_err(|_| {
        annotate(io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })?;
    Ok(text
        .trim_end_matches(['\n', ' ', '\0'])
        .trim_start_matches(' ')
        .to_string())
}

fn read_opt(dir: &Path, name: &str) -> Option<String> {
    read_attr(dir, name).ok()
}

fn parse_num<T: std::str::FromStr>(dir: &Path, name: &str, s: &str) -> io::Result<T> {
    s.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a number: {:?}", dir.join(name).display(), s),
        )
    })
}

fn parse_hex_u16(s: &str) -> Option<u16> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    u16::from_str_radix(t, 16).ok()
}

fn read_namespace(dir: &Path, name: &str) -> io::Result<Namespace> {
    let (block_device, parsed_nsid) = parse_namespace_name(name).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name}: not a namespace name"),
        )
    })?;
    let nsid = match read_opt(dir, "nsid") {
        Some(s) => parse_num(dir, "nsid", &s)?,
        None => parsed_nsid,
    };
    let sectors: u64 = parse_num(dir, "size", &read_attr(dir, "size")?)?;
    let size_bytes = sectors.checked_mul(512).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: size overflows", dir.display()),
        )
    })?;
    let lbs_path = "queue/logical_block_size";
    let logical_block_size = parse_num(dir, lbs_path, &read_attr(dir, lbs_path)?)?;
    Ok(Namespace {
        name: name.to_string(),
        block_device,
        nsid,
        size_bytes,
        logical_block_size,
    })
}

/// Read one controller directory (`<root>/class/nvme/<name>`).
pub fn read_controller(root: &Path, name: &str) -> io::Result<Controller> {
    let instance = parse_controller_name(name).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name}: not a controller name"),
        )
    })?;
    let dir = class_dir(root).join(name);
    let mut namespaces = Vec::new();
    for ent in fs::read_dir(&dir).map_err(|e| annotate(&dir, e))? {
        let ent = ent.map_err(|e| annotate(&dir, e))?;
        let Some(ns_name) = ent.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if parse_namespace_name(&ns_name).is_some() {
            namespaces.push(read_namespace(&dir.join(&ns_name), &ns_name)?);
        }
    }
    namespaces.sort_by(|a, b| (a.nsid, &a.name).cmp(&(b.nsid, &b.name)));
    let cntlid = match read_opt(&dir, "cntlid") {
        Some(s) => Some(parse_num(&dir, "cntlid", &s)?),
        None => None,
    };
    Ok(Controller {
        name: name.to_string(),
        instance,
        model: read_attr(&dir, "model")?,
        serial: read_attr(&dir, "serial")?,
        firmware_rev: read_attr(&dir, "firmware_rev")?,
        transport: read_opt(&dir, "transport"),
        state: read_opt(&dir, "state"),
        cntlid,
        pci_vendor: read_opt(&dir, "device/vendor")
            .as_deref()
            .and_then(parse_hex_u16),
        namespaces,
    })
}

fn annotate(p: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {}", p.display(), e))
}

/// `<root>/class/nvme`.
pub fn class_dir(root: &Path) -> PathBuf {
    root.join("class").join("nvme")
}

/// All controllers under `<root>/class/nvme`, sorted by instance. A missing class directory
/// (no NVMe driver loaded) yields an empty list; an unreadable controller is an error.
pub fn discover(root: &Path) -> io::Result<Vec<Controller>> {
    let dir = class_dir(root);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(annotate(&dir, e)),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| annotate(&dir, e))?;
        let Some(name) = ent.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if parse_controller_name(&name).is_some() {
            out.push(read_controller(root, &name)?);
        }
    }
    out.sort_by_key(|c| c.instance);
    Ok(out)
}

/// Whether `list` (from [`discover`]) still describes the controllers under `root`: the same
/// controller names, each with the same serial number and the same namespace entries. It reads
/// one directory plus, per controller, one directory and one attribute, far less than a full
/// [`discover`], so a scraper can keep its list between cycles and still notice a controller or
/// volume being replaced.
pub fn still_current(root: &Path, list: &[Controller]) -> io::Result<bool> {
    let dir = class_dir(root);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(list.is_empty()),
        Err(e) => return Err(annotate(&dir, e)),
    };
    let mut seen = 0;
    for ent in rd {
        let ent = ent.map_err(|e| annotate(&dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if parse_controller_name(name).is_none() {
            continue;
        }
        let Some(c) = list.iter().find(|c| c.name == name) else {
            return Ok(false);
        };
        seen += 1;
        let cdir = dir.join(name);
        match read_attr(&cdir, "serial") {
            Ok(serial) if serial == c.serial => {}
            _ => return Ok(false),
        }
        let mut namespaces = 0;
        for ent in fs::read_dir(&cdir).map_err(|e| annotate(&cdir, e))? {
            let ent = ent.map_err(|e| annotate(&cdir, e))?;
            if ent
                .file_name()
                .to_str()
                .and_then(parse_namespace_name)
                .is_some()
            {
                namespaces += 1;
            }
        }
        if namespaces != c.namespaces.len() {
            return Ok(false);
        }
    }
    Ok(seen == list.len())
}

/// Turn a user's device argument (`/dev/nvme0`, `/dev/nvme0n1`, `nvme0`, `nvme0n1`,
/// `nvme0c0n1`) into the name of the controller that owns it, using the discovered list.
///
/// A namespace argument is matched against the namespaces' sysfs and block device names; when
/// several controllers reach the same namespace (multipath) the first one is returned.
pub fn resolve_controller<'a>(
    controllers: &'a [Controller],
    arg: &str,
) -> Result<&'a Controller, String> {
    let name = arg.strip_prefix("/dev/").unwrap_or(arg);
    if parse_controller_name(name).is_some() {
        return controllers
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| format!("{arg}: no such NVMe controller"));
    }
    if parse_namespace_name(name).is_some() {
        return controllers
            .iter()
            .find(|c| {
                c.namespaces
                    .iter()
                    .any(|n| n.name == name || n.block_device == name)
            })
            .ok_or_else(|| format!("{arg}: no NVMe controller has this namespace"));
    }
    Err(format!(
        "{arg}: not an NVMe device (expected /dev/nvmeN, /dev/nvmeNnM or nvmeN)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvme::fake::{FakeSysfs, FakeSysfsController};

    #[test]
    fn name_parsing() {
        assert_eq!(parse_controller_name("nvme0"), Some(0));
        assert_eq!(parse_controller_name("nvme12"), Some(12));
        for bad in [
            "nvme",
            "nvme0n1",
            "nvme-fabrics",
            "nvmex",
            "sda",
            "nvme0c0n1",
        ] {
            assert_eq!(parse_controller_name(bad), None, "{bad}");
        }
        assert_eq!(parse_namespace_name("nvme0n1"), Some(("nvme0n1".into(), 1)));
        assert_eq!(
            parse_namespace_name("nvme3c1n12"),
            Some(("nvme3n12".into(), 12))
        );
        for bad in [
            "nvme0",
            "nvme0n",
            "nvmen1",
            "nvme0c0",
            "nvme0cxn1",
            "nvme0n1p1",
            "nvme0c0n1x",
        ] {
            assert_eq!(parse_namespace_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn discovers_controllers_and_namespaces_from_fake_tree() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FakeSysfs::new(dir.path());
        fs.add(&FakeSysfsController {
            name: "nvme1".into(),
            model: "Amazon Elastic Block Store".into(),
            serial: "vol0abc".into(),
            firmware_rev: "2.0".into(),
            pci_vendor: Some(0x1d0f),
            namespaces: vec![("nvme1n1".into(), 2_097_152, 512)],
        })
        .unwrap();
        fs.add(&FakeSysfsController {
            name: "nvme0".into(),
            model: "QEMU NVMe Ctrl".into(),
            serial: "deadbeef".into(),
            firmware_rev: "8.0.0".into(),
            pci_vendor: Some(0x1b36),
            namespaces: vec![("nvme0n2".into(), 16, 4096), ("nvme0c0n1".into(), 8, 512)],
        })
        .unwrap();
        // Entries that are not controllers are ignored.
        std::fs::create_dir_all(dir.path().join("class/nvme/nvme-fabrics")).unwrap();

        // nvme2's NSID 2 is the block device nvme2n3 (instance numbers follow scan order).
        fs.add(&FakeSysfsController {
            name: "nvme2".into(),
            model: "QEMU NVMe Ctrl".into(),
            serial: "two-ns".into(),
            firmware_rev: "7.2".into(),
            pci_vendor: Some(0x1b36),
            namespaces: vec![("nvme2n3".into(), 64, 4096), ("nvme2n1".into(), 128, 512)],
        })
        .unwrap();
        std::fs::write(dir.path().join("class/nvme/nvme2/nvme2n3/nsid"), "2\n").unwrap();

        let ctrls = discover(dir.path()).unwrap();
        assert_eq!(ctrls.len(), 3);
        let c2 = &ctrls[2];
        let got: Vec<_> = c2
            .namespaces
            .iter()
            .map(|n| (n.nsid, n.block_device.as_str(), n.logical_block_size))
            .collect();
        assert_eq!(got, [(1, "nvme2n1", 512), (2, "nvme2n3", 4096)]);
        assert_eq!(
            resolve_controller(&ctrls, "/dev/nvme2n3").unwrap().name,
            "nvme2"
        );
        let c0 = &ctrls[0];
        assert_eq!(c0.name, "nvme0");
        assert_eq!(c0.instance, 0);
        assert_eq!(c0.model, "QEMU NVMe Ctrl", "trailing padding trimmed");
        assert_eq!(c0.serial, "deadbeef");
        assert_eq!(c0.firmware_rev, "8.0.0");
        assert_eq!(c0.pci_vendor, Some(0x1b36));
        assert_eq!(c0.transport.as_deref(), Some("pcie"));
        assert_eq!(c0.cntlid, Some(0));
        assert_eq!(c0.namespaces.len(), 2);
        let ns = &c0.namespaces[0];
        assert_eq!(
            (ns.name.as_str(), ns.block_device.as_str(), ns.nsid),
            ("nvme0c0n1", "nvme0n1", 1)
        );
        assert_eq!(ns.size_bytes, 8 * 512);
        assert_eq!(ns.logical_blocks(), 8);
        let ns2 = &c0.namespaces[1];
        assert_eq!(
            (ns2.nsid, ns2.logical_block_size, ns2.size_bytes),
            (2, 4096, 16 * 512)
        );
        assert_eq!(ns2.logical_blocks(), 2);
        assert_eq!(ctrls[1].name, "nvme1");
        assert_eq!(ctrls[1].pci_vendor, Some(0x1d0f));

        // Device arguments in every accepted form.
        assert_eq!(
            resolve_controller(&ctrls, "/dev/nvme1").unwrap().name,
            "nvme1"
        );
        assert_eq!(resolve_controller(&ctrls, "nvme1").unwrap().name, "nvme1");
        assert_eq!(
            resolve_controller(&ctrls, "/dev/nvme1n1").unwrap().name,
            "nvme1"
        );
        assert_eq!(
            resolve_controller(&ctrls, "nvme0n1").unwrap().name,
            "nvme0",
            "via multipath path"
        );
        assert_eq!(
            resolve_controller(&ctrls, "nvme0c0n1").unwrap().name,
            "nvme0"
        );
        assert!(resolve_controller(&ctrls, "/dev/nvme7")
            .unwrap_err()
            .contains("no such NVMe controller"));
        assert!(resolve_controller(&ctrls, "/dev/nvme9n1")
            .unwrap_err()
            .contains("no NVMe controller"));
        assert!(resolve_controller(&ctrls, "/dev/sda")
            .unwrap_err()
            .contains("not an NVMe device"));
    }

    #[test]
    fn missing_class_dir_is_empty_and_bad_attributes_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(discover(dir.path()).unwrap().is_empty());

        let fs = FakeSysfs::new(dir.path());
        fs.add(&FakeSysfsController {
            name: "nvme0".into(),
            model: "M".into(),
            serial: "S".into(),
            firmware_rev: "F".into(),
            pci_vendor: None,
            namespaces: vec![("nvme0n1".into(), 8, 512)],
        })
        .unwrap();
        std::fs::write(dir.path().join("class/nvme/nvme0/nvme0n1/size"), "lots\n").unwrap();
        let err = discover(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("nvme0n1/size"), "{err}");

        std::fs::write(dir.path().join("class/nvme/nvme0/nvme0n1/size"), "8\n").unwrap();
        // An attribute longer than one read buffer is still read whole.
        let long = "M".repeat(5000);
        std::fs::write(
            dir.path().join("class/nvme/nvme0/model"),
            format!("{long}  \n"),
        )
        .unwrap();
        assert_eq!(discover(dir.path()).unwrap()[0].model, long);
        std::fs::write(dir.path().join("class/nvme/nvme0/model"), b"\xff\xfe\n").unwrap();
        let err = discover(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("nvme0/model"), "{err}");
        std::fs::write(dir.path().join("class/nvme/nvme0/model"), "M\n").unwrap();
        std::fs::remove_file(dir.path().join("class/nvme/nvme0/serial")).unwrap();
        let err = discover(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("nvme0/serial"), "{err}");
    }
}
