//! `dmremap nvme list`: controllers and their namespaces, from sysfs.

use std::path::Path;

use serde::Serialize;

use dmremap_lib::nvme::sysfs::Controller;

use super::{discover_all, print_json};
use crate::error::CliError;

#[derive(Serialize)]
struct ListDevice {
    #[serde(rename = "NameSpace")]
    namespace: u32,
    #[serde(rename = "DevicePath")]
    device_path: String,
    #[serde(rename = "Firmware")]
    firmware: String,
    #[serde(rename = "ModelNumber")]
    model: String,
    #[serde(rename = "SerialNumber")]
    serial: String,
    #[serde(rename = "MaximumLBA")]
    maximum_lba: u64,
    #[serde(rename = "PhysicalSize")]
    physical_size: u64,
    #[serde(rename = "SectorSize")]
    sector_size: u32,
    /// Not in nvme-cli: the controller the namespace was found under.
    #[serde(rename = "Controller")]
    controller: String,
}

#[derive(Serialize)]
struct ListJson {
    #[serde(rename = "Devices")]
    devices: Vec<ListDevice>,
}

fn list_devices(ctrls: &[Controller]) -> Vec<ListDevice> {
    let mut out: Vec<ListDevice> = Vec::new();
    for c in ctrls {
        for n in &c.namespaces {
            let path = format!("/dev/{}", n.block_device);
            // With multipath several controllers reach one namespace: list it once.
            if out.iter().any(|d| d.device_path == path) {
                continue;
            }
            out.push(ListDevice {
                namespace: n.nsid,
                device_path: path,
                firmware: c.firmware_rev.clone(),
                model: c.model.clone(),
                serial: c.serial.clone(),
                maximum_lba: n.logical_blocks(),
                physical_size: n.size_bytes,
                sector_size: n.logical_block_size,
                controller: c.name.clone(),
            });
        }
    }
    out
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.2} {}", UNITS[i])
}

pub(super) fn cmd_list(root: &Path, json: bool) -> Result<(), CliError> {
    let ctrls = discover_all(root)?;
    if json {
        return print_json(&ListJson {
            devices: list_devices(&ctrls),
        });
    }
    if ctrls.is_empty() {
        println!("No NVMe controllers found.");
        return Ok(());
    }
    println!(
        "{:<16} {:<8} {:<20} {:<40} {:<9} {:<12} {:<8} {:<8}",
        "Node", "Ctrl", "SN", "Model", "Namespace", "Size", "Format", "FW Rev"
    );
    println!("{}", "-".repeat(16 + 8 + 20 + 40 + 9 + 12 + 8 + 8 + 7));
    for c in &ctrls {
        if c.namespaces.is_empty() {
            println!(
                "{:<16} {:<8} {:<20} {:<40} {:<9} {:<12} {:<8} {:<8}",
                "-", c.name, c.serial, c.model, "-", "-", "-", c.firmware_rev
            );
        }
        for n in &c.namespaces {
            println!(
                "{:<16} {:<8} {:<20} {:<40} {:<9} {:<12} {:<8} {:<8}",
                format!("/dev/{}", n.block_device),
                c.name,
                c.serial,
                c.model,
                n.nsid,
                human_size(n.size_bytes),
                format!("{} B", n.logical_block_size),
                c.firmware_rev
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvme::keys;
    use dmremap_lib::nvme::sysfs::discover;

    use dmremap_lib::nvme::fake::{FakeSysfs, FakeSysfsController};

    #[test]
    fn list_json_from_fake_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FakeSysfs::new(dir.path());
        for (name, ns) in [("nvme0", "nvme0c0n1"), ("nvme1", "nvme0c1n1")] {
            fs.add(&FakeSysfsController {
                name: name.into(),
                model: "Multipath Ctrl".into(),
                serial: "MP1".into(),
                firmware_rev: "1.0".into(),
                pci_vendor: None,
                namespaces: vec![(ns.into(), 2048, 4096)],
            })
            .unwrap();
        }
        let ctrls = discover(dir.path()).unwrap();
        let v = serde_json::to_value(ListJson {
            devices: list_devices(&ctrls),
        })
        .unwrap();
        let devs = v["Devices"].as_array().unwrap();
        assert_eq!(devs.len(), 1, "two paths to one namespace are listed once");
        let d = &devs[0];
        assert_eq!(
            keys(d),
            [
                "NameSpace",
                "DevicePath",
                "Firmware",
                "ModelNumber",
                "SerialNumber",
                "MaximumLBA",
                "PhysicalSize",
                "SectorSize",
                "Controller"
            ]
        );
        assert_eq!(d["DevicePath"], "/dev/nvme0n1");
        assert_eq!(d["PhysicalSize"], 2048 * 512);
        assert_eq!(d["MaximumLBA"], 2048 * 512 / 4096);
        assert_eq!(d["SectorSize"], 4096);
        assert_eq!(d["Controller"], "nvme0");
    }
}
