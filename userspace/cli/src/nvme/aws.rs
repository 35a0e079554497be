//! `dmremap nvme aws-stats`: the Amazon EBS / EC2 instance-store statistics page.

use serde::Serialize;

use dmremap_core::nvme::aws::{expected_kind, IoSizeBin, LatencyBin};
use dmremap_core::nvme::identify::IDENTIFY_LEN;
use dmremap_lib::nvme::admin::{identify_controller, read_aws_stats, unsupported, IoctlTransport};
use dmremap_lib::nvme::scraper::{AwsSnapshot, IoSizeSnapshot};
use dmremap_lib::nvme::AdminTransport;

use super::{dev_dir, device_error, print_json, resolve};
use crate::error::CliError;

/// I/O size as the Amazon plugin prints it: `max`, `0`, `<n>M`, `<n>K` or bytes.
fn format_io_size(size: u32) -> String {
    if size == u32::MAX {
        "max".into()
    } else if size == 0 {
        "0".into()
    } else if size.is_multiple_of(1024 * 1024) {
        format!("{}M", size / (1024 * 1024))
    } else if size.is_multiple_of(1024) {
        format!("{}K", size / 1024)
    } else {
        size.to_string()
    }
}

#[derive(Serialize)]
struct BinJson {
    lower: u64,
    upper: u64,
    count: u64,
}

#[derive(Serialize)]
struct HistJson {
    num_bins: u64,
    bins: Vec<BinJson>,
}

impl From<&LatencyBin> for BinJson {
    fn from(b: &LatencyBin) -> Self {
        BinJson {
            lower: b.lower,
            upper: b.upper,
            count: u64::from(b.count),
        }
    }
}

impl From<&IoSizeBin> for BinJson {
    fn from(b: &IoSizeBin) -> Self {
        BinJson {
            lower: b.lower,
            upper: b.upper,
            count: b.count,
        }
    }
}

impl HistJson {
    fn of<'a, B>(bins: &'a [B]) -> Self
    where
        BinJson: From<&'a B>,
    {
        HistJson {
            num_bins: bins.len() as u64,
            bins: bins.iter().map(BinJson::from).collect(),
        }
    }
}

#[derive(Serialize)]
struct IoHistJson {
    io_size_low: String,
    io_size_high: String,
    read_io_latency_histogram: HistJson,
    write_io_latency_histogram: HistJson,
}

impl From<&IoSizeSnapshot> for IoHistJson {
    fn from(h: &IoSizeSnapshot) -> Self {
        IoHistJson {
            io_size_low: format_io_size(h.io_size_low),
            io_size_high: format_io_size(h.io_size_high),
            read_io_latency_histogram: HistJson::of(&h.read),
            write_io_latency_histogram: HistJson::of(&h.write),
        }
    }
}

#[derive(Serialize)]
struct DetailJson {
    num_of_hists: u64,
    io_histograms: Vec<IoHistJson>,
}

/// The Amazon plugin's `stats -o json` layout (with `--details` for instance store), plus
/// `device_type`.
#[derive(Serialize)]
struct AwsJson {
    device_type: &'static str,
    total_read_ops: u64,
    total_write_ops: u64,
    total_read_bytes: u64,
    total_write_bytes: u64,
    total_read_time: u64,
    total_write_time: u64,
    ebs_volume_performance_exceeded_iops: u64,
    ebs_volume_performance_exceeded_tp: u64,
    ec2_instance_ebs_performance_exceeded_iops: u64,
    ec2_instance_ebs_performance_exceeded_tp: u64,
    volume_queue_length: u64,
    read_io_latency_histogram: HistJson,
    write_io_latency_histogram: HistJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_histograms: Option<DetailJson>,
}

impl From<&AwsSnapshot> for AwsJson {
    fn from(s: &AwsSnapshot) -> Self {
        let h = &s.header;
        let detail = (s.kind == dmremap_core::nvme::aws::AwsDeviceKind::InstanceStore
            && h.version == dmremap_core::nvme::aws::DETAIL_IO_VERSION)
            .then(|| DetailJson {
                num_of_hists: s.io_size.len() as u64,
                io_histograms: s.io_size.iter().map(IoHistJson::from).collect(),
            });
        AwsJson {
            device_type: s.kind.name(),
            total_read_ops: h.total_read_ops,
            total_write_ops: h.total_write_ops,
            total_read_bytes: h.total_read_bytes,
            total_write_bytes: h.total_write_bytes,
            total_read_time: h.total_read_time,
            total_write_time: h.total_write_time,
            ebs_volume_performance_exceeded_iops: h.ebs_volume_performance_exceeded_iops,
            ebs_volume_performance_exceeded_tp: h.ebs_volume_performance_exceeded_tp,
            ec2_instance_ebs_performance_exceeded_iops: h
                .ec2_instance_ebs_performance_exceeded_iops,
            ec2_instance_ebs_performance_exceeded_tp: h.ec2_instance_ebs_performance_exceeded_tp,
            volume_queue_length: h.volume_queue_length,
            read_io_latency_histogram: HistJson::of(&s.read),
            write_io_latency_histogram: HistJson::of(&s.write),
            latency_histograms: detail,
        }
    }
}

fn aws_text(name: &str, s: &AwsSnapshot) -> String {
    use dmremap_core::nvme::aws::AwsDeviceKind;
    use std::fmt::Write;
    let h = &s.header;
    let mut o = String::new();
    let _ = writeln!(o, "Amazon statistics for {name} ({})", s.kind.name());
    let _ = writeln!(
        o,
        "Total Ops:        read {:>14}  write {:>14}",
        h.total_read_ops, h.total_write_ops
    );
    let _ = writeln!(
        o,
        "Total Bytes:      read {:>14}  write {:>14}",
        h.total_read_bytes, h.total_write_bytes
    );
    let _ = writeln!(
        o,
        "Total Time (us):  read {:>14}  write {:>14}",
        h.total_read_time, h.total_write_time
    );
    match s.kind {
        AwsDeviceKind::InstanceStore => {
            let _ = writeln!(
                o,
                "Instance store performance exceeded (us): IOPS {}  throughput {}",
                h.ec2_instance_ebs_performance_exceeded_iops,
                h.ec2_instance_ebs_performance_exceeded_tp
            );
        }
        AwsDeviceKind::Ebs => {
            let _ = writeln!(
                o,
                "EBS volume performance exceeded (us):     IOPS {}  throughput {}",
                h.ebs_volume_performance_exceeded_iops, h.ebs_volume_performance_exceeded_tp
            );
            let _ = writeln!(
                o,
                "EC2 instance EBS performance exceeded (us): IOPS {}  throughput {}",
                h.ec2_instance_ebs_performance_exceeded_iops,
                h.ec2_instance_ebs_performance_exceeded_tp
            );
        }
    }
    let _ = writeln!(o, "Queue length (point in time): {}", h.volume_queue_length);
    for (title, bins) in [("Read", &s.read), ("Write", &s.write)] {
        let _ = writeln!(o, "\n{title} I/O latency histogram (us)");
        for b in bins.iter() {
            let _ = writeln!(o, "  [{:>10} - {:>10}) => {}", b.lower, b.upper, b.count);
        }
    }
    for hs in &s.io_size {
        let _ = writeln!(
            o,
            "\nI/O size ({} .. {}]",
            format_io_size(hs.io_size_low),
            format_io_size(hs.io_size_high)
        );
        for (title, bins) in [("read", &hs.read), ("write", &hs.write)] {
            let counts: Vec<String> = bins.iter().map(|b| b.count.to_string()).collect();
            let _ = writeln!(o, "  {title:<5}: {}", counts.join(" "));
        }
    }
    o
}

pub(super) fn cmd_aws_stats(dev: &str, json: bool) -> Result<(), CliError> {
    let name = resolve(dev)?;
    let mut t = IoctlTransport::new(dev_dir());
    let snap = aws_snapshot(&mut t, &name)?;
    if json {
        print_json(&AwsJson::from(&snap))
    } else {
        print!("{}", aws_text(&name, &snap));
        Ok(())
    }
}

/// Identify the controller, check it is an Amazon EBS / instance-store device, read and
/// validate its statistics page.
fn aws_snapshot<T: AdminTransport>(t: &mut T, name: &str) -> Result<AwsSnapshot, CliError> {
    let mut idbuf = vec![0u8; IDENTIFY_LEN];
    let id = identify_controller(t, name, &mut idbuf).map_err(device_error)?;
    let kind = expected_kind(id.vid, id.mn.as_bytes()).ok_or_else(|| {
        device_error(unsupported(
            name,
            "get log page 0xd0",
            format!(
                "not an Amazon EBS or EC2 instance-store device (vendor {:#06x}, model \"{}\")",
                id.vid, id.mn
            ),
        ))
    })?;
    let mut buf = vec![0u8; kind.page_len()];
    let stats = read_aws_stats(t, name, kind, &mut buf).map_err(device_error)?;
    Ok(AwsSnapshot::from_stats(&stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;

    use dmremap_core::nvme::aws::AwsDeviceKind;
    use dmremap_lib::nvme::fake::{FakeController, FakeTransport};

    #[test]
    fn io_sizes_format_like_the_plugin() {
        assert_eq!(format_io_size(u32::MAX), "max");
        assert_eq!(format_io_size(0), "0");
        assert_eq!(format_io_size(4096), "4K");
        assert_eq!(format_io_size(1 << 20), "1M");
        assert_eq!(format_io_size(3 << 20), "3M");
        assert_eq!(format_io_size(1536), "1536");
        assert_eq!(format_io_size(512), "512");
    }

    #[test]
    fn aws_stats_via_fake_devices() {
        let mut t = FakeTransport::new();
        t.insert("nvme0", FakeController::generic("x"));
        t.insert("nvme1", FakeController::ebs("vol1"));
        t.insert("nvme2", FakeController::instance_store("is"));

        let err = aws_snapshot(&mut t, "nvme0").unwrap_err();
        assert_eq!(err.kind, Kind::Unsupported);
        assert_eq!(
            err.msg,
            "nvme0: get log page 0xd0: not an Amazon EBS or EC2 instance-store device (vendor 0x1b36, model \"QEMU NVMe Ctrl\")"
        );

        let ebs = aws_snapshot(&mut t, "nvme1").unwrap();
        assert_eq!(ebs.kind, AwsDeviceKind::Ebs);
        let v = serde_json::to_value(AwsJson::from(&ebs)).unwrap();
        assert_eq!(v["device_type"], "ebs");
        assert_eq!(v["total_read_ops"], 1000);
        assert_eq!(v["read_io_latency_histogram"]["num_bins"], 20);
        assert_eq!(v["read_io_latency_histogram"]["bins"][2]["lower"], 4);
        assert_eq!(v["read_io_latency_histogram"]["bins"][2]["count"], 9);
        assert!(v.get("latency_histograms").is_none());

        let is = aws_snapshot(&mut t, "nvme2").unwrap();
        let v = serde_json::to_value(AwsJson::from(&is)).unwrap();
        let d = &v["latency_histograms"];
        assert_eq!(d["num_of_hists"], 3);
        assert_eq!(d["io_histograms"][0]["io_size_low"], "0");
        assert_eq!(d["io_histograms"][0]["io_size_high"], "4K");
        assert_eq!(d["io_histograms"][2]["io_size_high"], "max");
        assert_eq!(
            d["io_histograms"][1]["write_io_latency_histogram"]["bins"][3]["count"],
            103
        );
        let text = aws_text("nvme2", &is);
        assert!(
            text.contains("Instance store performance exceeded (us): IOPS 9  throughput 10"),
            "{text}"
        );
        assert!(text.contains("I/O size (4K .. 64K]"), "{text}");

        // A device that answers with an invalid status.
        t.controllers.get_mut("nvme1").unwrap().aws_nsid = Some(7);
        let err = aws_snapshot(&mut t, "nvme1").unwrap_err();
        assert_eq!(err.kind, Kind::Failed);
        assert_eq!(
            err.msg,
            "nvme1: get log page 0xd0: Invalid Field in Command (status 0x4002)"
        );
    }
}
