#!/usr/bin/env python3
"""Turn raw benchmark output into target/bench/<name>.json (printed on stdout)."""
import json
import os
import statistics
import sys


def kernel(vm_json, criterion_dir, icount_json=None):
    vm = json.loads(vm_json)
    if icount_json:
        ic = json.loads(icount_json)
        vm["icount"] = {"environment": "same in-kernel benchmark in an icount VM (1 vCPU): guest ns = instructions executed, so values are instructions per operation",
                        "unit": "instructions", "results": ic["results"]}
    native = []
    for root, _dirs, files in os.walk(criterion_dir):
        if "estimates.json" in files and os.path.basename(root) == "new":
            case = os.path.relpath(os.path.dirname(root), criterion_dir)
            if not case.startswith("engine"):
                continue
            with open(os.path.join(root, "estimates.json")) as f:
                est = json.load(f)
            native.append({"case": case, "mean_ns": round(est["mean"]["point_estimate"], 2),
                           "median_ns": round(est["median"]["point_estimate"], 2)})
    native.sort(key=lambda r: r["case"])
    vm["environment"] = "in-kernel, release kernel under QEMU TCG (MTTCG, 2 vCPUs); ns per op"
    vm["native"] = {"environment": "same core code (allocator, bio planning over a BTreeMap index) under criterion on the host",
                    "results": native}
    goal = 50
    vm["goal_p50_ns"] = goal
    return vm


def io(raw_nullb, raw_nvme):
    cases = json.loads(raw_nullb) + json.loads(raw_nvme)
    results, ratio = [], {}
    for c in cases:
        lin, rmp = c["linear_iops"], c["remap_iops"]
        reps = [r / l for r, l in zip(rmp, lin) if l]
        entry = {
            "case": c["case"], "disk": c["disk"], "rw": c["rw"], "remaps": c["remaps"],
            "linear_iops_mean": round(statistics.mean(lin)), "remap_iops_mean": round(statistics.mean(rmp)),
            "linear_iops": lin, "remap_iops": rmp,
            "ratio_per_rep": [round(x, 3) for x in reps],
            "ratio_mean": round(statistics.mean(reps), 3) if reps else None,
            "ratio_stdev": round(statistics.stdev(reps), 3) if len(reps) > 1 else None,
        }
        results.append(entry)
        ratio[c["case"]] = entry["ratio_mean"]
    return {"bench": "io", "unit": "IOPS",
            "method": "fio 4K libaio qd16 over the first GiB, dm-linear and dm-remap over the same device, runs interleaved with alternating order, release kernel; "
                      "null_blk cases in an icount VM (1 vCPU, guest time = instructions: ratios measure the target's CPU cost; "
                      "slab_min_order=3, see tests/scenarios/bench_io_nullb.sh); 100K remaps spread over the I/O range, "
                      "1M remaps (null_blk) in one run after it; "
                      "NVMe cases under MTTCG with 2 vCPUs (end to end; with remaps, remapped reads go to the virtio spare)",
            "goal_ratio": 0.97, "results": results, "ratio": ratio}


def nvme(raw):
    doc = json.loads(raw)
    goal_us = 5000
    doc["environment"] = ("dmremap nvme bench on the release kernel under QEMU TCG (MTTCG, 2 vCPUs), "
                          f"{doc['controllers']} emulated NVMe controllers; microseconds per scrape cycle")
    doc["goal_p99_us"] = goal_us
    doc["goal_met_p99"] = {r["case"]: r["p99"] <= goal_us for r in doc["results"]}
    doc["goal_met_p50"] = {r["case"]: r["p50"] <= goal_us for r in doc["results"]}
    # Share of each cycle spent in sysfs discovery rather than in admin commands.
    doc["discovery_share_p50"] = {r["case"]: round(r["discovery_p50"] / r["p50"], 3) if r["p50"] else None
                                  for r in doc["results"]}
    return doc


def control(raw):
    doc = json.loads(raw)
    goal = 1000
    doc["environment"] = ("release kernel under QEMU TCG (MTTCG, 2 vCPUs); each round trip timed from userspace "
                          "with CLOCK_MONOTONIC, except kernel_noop (timed in the kernel with ktime, one op per sample: "
                          "the clock-read floor)")
    doc["goal_ratio"] = goal
    r = doc["ratio"].get("dmsetup_over_own_ioctl_p50")
    doc["goal_met"] = r is not None and r >= goal
    return doc


def storm(raw, at_lines, load_raw):
    """The storm document: the group/single case of `raw` (NVMe main, virtio spare), then per
    number of existing remaps (`at_lines`: "N {json}" each) the single-remap latency and metadata
    bytes and the group-commit rate, and the 1M-remap load time (`load_raw`). Prints the goals
    and whether they are met on stderr (figures, not a test)."""
    doc = json.loads(raw)
    at = {}
    for line in at_lines:
        n, _, js = line.partition(" ")
        at[n] = json.loads(js)
    load = json.loads(load_raw)
    doc["scale"] = {
        "environment": ("release kernel under QEMU TCG (MTTCG, 2 vCPUs); main /dev/nullb0, spare a linear "
                        "device: 128 MiB of virtio disk at each end (the metadata copies), null_blk (writes "
                        "dropped) for the data slots between; 4 KiB blocks"),
        "method": ("per number of existing remaps: `dmremap bench storm` group commit (remaps in "
                   "`remap <sector> 1024` messages) then single remaps (one `remap <sector> 1` message each = one "
                   "commit), each message timed from userspace; metadata bytes per single remap = sectors "
                   "written to the spare (its /sys/block/dm-N/stat) during the single remaps x 512, less one "
                   "4 KiB data block per remap, divided by the remaps"),
        "results": at,
    }
    doc["single_latency_p50_us"] = {n: r["single_latency_p50_us"] for n, r in at.items()}
    doc["single_latency_p99_us"] = {n: r["single_latency_p99_us"] for n, r in at.items()}
    doc["metadata_bytes_per_remap"] = {n: r["metadata_bytes_per_remap"] for n, r in at.items()}
    doc["group_remaps_per_s"] = {n: r["remaps_per_s"] for n, r in at.items()}
    doc["single_samples"] = {n: r["results"][1]["remaps"] for n, r in at.items()}
    doc["load_1m_remaps_s"] = load["seconds"]
    doc["load_remaps"] = load["remaps"]
    doc["goals"] = {"single_latency_p50_at_1m_over_0": 2.0, "metadata_bytes_per_remap": 8192,
                    "group_remaps_per_s": 5000}
    p50 = doc["single_latency_p50_us"]
    ratio = round(p50["1000000"] / p50["0"], 2) if p50.get("0") and "1000000" in p50 else None
    doc["single_latency_p50_at_1m_over_0"] = ratio
    met = {
        "single_latency_p50_at_1m_over_0": ratio is not None and ratio <= 2.0,
        "metadata_bytes_per_remap": all(v is not None and v <= 8192 for v in doc["metadata_bytes_per_remap"].values()),
        "group_remaps_per_s": all(v >= 5000 for v in doc["group_remaps_per_s"].values()),
    }
    doc["goal_met"] = met
    w = sys.stderr.write
    w("storm at N existing remaps:     " + "".join(f"{n:>12}" for n in at) + "\n")
    for key, unit in (("single_latency_p50_us", "us"), ("single_latency_p99_us", "us"),
                      ("metadata_bytes_per_remap", "B"), ("group_remaps_per_s", "/s")):
        w(f"{key + ' (' + unit + ')':<31}" + "".join(f"{str(doc[key][n]):>12}" for n in at) + "\n")
    w(f"load of {load['remaps']} remaps at table creation: {load['seconds']} s\n")
    w(f"goal latency p50 at 1M <= 2x at 0: {ratio}x -> {'met' if met['single_latency_p50_at_1m_over_0'] else 'NOT met'}\n")
    w(f"goal <= 8192 metadata bytes per single remap: {'met' if met['metadata_bytes_per_remap'] else 'NOT met'}\n")
    w(f"goal >= 5000 group-commit remaps/s at every N: {'met' if met['group_remaps_per_s'] else 'NOT met'}\n")
    return doc


def scrub(raw, tmpfs_path=None):
    vm = json.loads(raw)
    res = vm["results"]
    p50 = {r["case"]: r["p50"] for r in res}
    # Median of the per-repetition ratios (each scrub ran back to back with its fio run).
    ratios = {f"scrub_over_fio_{r['case'][len('scrub_'):]}": r["ratio_to_fio"]
              for r in res if r["case"].startswith("scrub_")}
    ratio_of_medians = {f"scrub_over_fio_{kb}": round(p50[f"scrub_{kb}"] / p50[f"fio_seq_read_{kb}"], 3)
                        for kb in ("1024KiB", "4096KiB") if p50.get(f"fio_seq_read_{kb}")}
    doc = {
        "bench": "scrub",
        "unit": "MB/s",
        "environment": ("release kernel under QEMU TCG (MTTCG, 2 vCPUs): `dmremapd scrub` of the whole "
                        f"emulated NVMe disk {vm['device']} ({vm['bytes'] >> 20} MiB) vs fio sequential "
                        "reads of the same disk with the same pattern (O_DIRECT, psync, one read in flight, "
                        f"same read size), interleaved, {vm['repetitions']} repetitions, medians (p50); ratio = median "
                        "of the per-repetition scrub/fio ratios"),
        "results": res,
        "ratio": ratios,
        "ratio_of_medians": ratio_of_medians,
        "goal_ratio": 0.9,
        "goal_met": {k: v >= 0.9 for k, v in ratios.items()},
    }
    if tmpfs_path:
        with open(tmpfs_path) as f:
            doc["tmpfs_buffer_pool"] = json.load(f)
    return doc


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "kernel":
        doc = kernel(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    elif kind == "scrub":
        doc = scrub(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    elif kind == "nvme":
        doc = nvme(sys.argv[2])
    elif kind == "control":
        doc = control(sys.argv[2])
    elif kind == "storm":
        doc = storm(sys.argv[2], sys.argv[4:], sys.argv[3])
    else:
        doc = io(sys.argv[2], sys.argv[3])
    json.dump(doc, sys.stdout, indent=1)
    print()
