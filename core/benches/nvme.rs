//! Decode cost of each NVMe page codec, on pages built with the crate's own encoders.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dmremap_core::nvme::aws::{
    AwsDeviceKind, AwsStats, AwsStatsHeader, AwsStatsWriter, Direction, LatencyBin,
};
use dmremap_core::nvme::error_log::{ErrorLog, ErrorLogEntry, ERROR_ENTRY_LEN};
use dmremap_core::nvme::identify::{IdentifyController, IDENTIFY_LEN};
use dmremap_core::nvme::smart::{SmartLog, SMART_LOG_LEN};
use dmremap_core::nvme::AsciiField;

fn smart_page() -> Vec<u8> {
    let s = SmartLog {
        critical_warning: 0x04,
        temperature: 311,
        avail_spare: 100,
        spare_thresh: 10,
        percent_used: 2,
        data_units_read: 123_456_789,
        data_units_written: 987_654_321,
        host_read_commands: 1 << 40,
        host_write_commands: 1 << 41,
        power_on_hours: 12_345,
        temp_sensors: [311, 315, 0, 0, 0, 0, 0, 0],
        ..SmartLog::default()
    };
    let mut buf = vec![0u8; SMART_LOG_LEN];
    s.encode(&mut buf).expect("encode smart");
    buf
}

fn error_log_page(entries: usize) -> Vec<u8> {
    let mut buf = vec![0u8; entries * ERROR_ENTRY_LEN];
    for (i, chunk) in buf
        .chunks_exact_mut(ERROR_ENTRY_LEN)
        .enumerate()
        .take(entries / 2)
    {
        let e = ErrorLogEntry {
            error_count: (entries - i) as u64,
            sqid: 1,
            cmdid: i as u16,
            status_field: 0x0281 << 1,
            lba: 4096 * i as u64,
            nsid: 1,
            opcode: 0x02,
            ..ErrorLogEntry::default()
        };
        e.encode(chunk).expect("encode error entry");
    }
    buf
}

fn identify_page() -> Vec<u8> {
    let id = IdentifyController {
        vid: 0x1D0F,
        ssvid: 0x1D0F,
        sn: AsciiField::from_raw(b"vol0123456789abcdef0"),
        mn: AsciiField::from_raw(b"Amazon Elastic Block Store"),
        fr: AsciiField::from_raw(b"2.0"),
        ver: 0x0001_0400,
        elpe: 63,
        nn: 1,
        subnqn: AsciiField::from_raw(b"nqn.2014.08.org.nvmexpress:1d0f1d0fvol0123"),
        ..IdentifyController::default()
    };
    let mut buf = vec![0u8; IDENTIFY_LEN];
    id.encode(&mut buf).expect("encode identify");
    buf
}

fn aws_page(kind: AwsDeviceKind) -> Vec<u8> {
    let mut buf = vec![0u8; kind.page_len()];
    let mut w = AwsStatsWriter::new(&mut buf, kind).expect("writer");
    w.header(&AwsStatsHeader {
        version: 1,
        total_read_ops: 1 << 30,
        total_write_ops: 1 << 29,
        num_of_hists: 8,
        hist_io_sizes: [512, 4096, 8192, 16384, 65536, 131072, 262144, u32::MAX],
        ..AwsStatsHeader::default()
    })
    .expect("header");
    let bins: Vec<LatencyBin> = (0..32u64)
        .map(|i| LatencyBin {
            lower: i * 64,
            upper: (i + 1) * 64,
            count: (i * 7) as u32,
        })
        .collect();
    w.histogram(Direction::Read, &bins).expect("read bins");
    w.histogram(Direction::Write, &bins).expect("write bins");
    if kind == AwsDeviceKind::InstanceStore {
        let counts: Vec<u64> = (0..32u64).collect();
        for h in 0..8 {
            w.io_size_counts(h, Direction::Read, &counts)
                .expect("counts");
            w.io_size_counts(h, Direction::Write, &counts)
                .expect("counts");
        }
    }
    buf
}

fn codecs(c: &mut Criterion) {
    let smart = smart_page();
    let mut g = c.benchmark_group("nvme");
    g.throughput(Throughput::Bytes(smart.len() as u64));
    g.bench_function("smart_decode", |b| {
        b.iter(|| SmartLog::decode(black_box(&smart)).expect("smart"))
    });

    let errors = error_log_page(64);
    g.throughput(Throughput::Bytes(errors.len() as u64));
    g.bench_function("error_log_decode_64", |b| {
        b.iter(|| {
            let log = ErrorLog::new(black_box(&errors)).expect("error log");
            log.non_empty().fold(0u64, |a, e| a ^ e.error_count ^ e.lba)
        })
    });

    let id = identify_page();
    g.throughput(Throughput::Bytes(id.len() as u64));
    g.bench_function("identify_decode", |b| {
        b.iter(|| IdentifyController::decode(black_box(&id)).expect("identify"))
    });

    for kind in [AwsDeviceKind::Ebs, AwsDeviceKind::InstanceStore] {
        let page = aws_page(kind);
        g.throughput(Throughput::Bytes(page.len() as u64));
        g.bench_function(format!("aws_{}_decode_all_bins", kind.name()), |b| {
            b.iter(|| {
                let s = AwsStats::parse(black_box(&page)).expect("aws");
                let mut sum = s.histogram(Direction::Read).total();
                sum = sum.wrapping_add(s.histogram(Direction::Write).total());
                for h in s.io_size_histograms() {
                    for bin in h.bins(Direction::Read).chain(h.bins(Direction::Write)) {
                        sum = sum.wrapping_add(bin.count);
                    }
                }
                sum
            })
        });
    }
    g.finish();
}

criterion_group!(benches, codecs);
criterion_main!(benches);
