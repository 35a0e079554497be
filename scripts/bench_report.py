#!/usr/bin/env python3
"""Turn raw benchmark output into target/bench/<name>.json (printed on stdout)."""
import json
import os
import statistics
import sys


def kernel(vm_json, criterion_dir):
    vm = json.loads(vm_json)
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


def io(raw):
    cases = json.loads(raw)
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
    return {"bench": "io", "unit": "IOPS", "method": "fio 4K libaio qd16, dm-linear and dm-remap over the same device, runs interleaved, release kernel under QEMU MTTCG",
            "goal_ratio": 0.97, "results": results, "ratio": ratio}


if __name__ == "__main__":
    kind = sys.argv[1]
    doc = kernel(sys.argv[2], sys.argv[3]) if kind == "kernel" else io(sys.argv[2])
    json.dump(doc, sys.stdout, indent=1)
    print()
