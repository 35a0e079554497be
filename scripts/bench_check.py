#!/usr/bin/env python3
"""The performance gate: figures from the icount VM (repeatable to ~0.2 %) against the committed
baselines (tests/bench/baseline.json).

    bench_check.py figures GUEST_LOG            print the figures of a run as JSON
    bench_check.py compare BASELINE GUEST_LOG   table of figure, baseline, now, change; exit 1 when
                                                a figure regressed by more than its tolerance,
                                                exit 2 when a baseline figure is missing from the run
    bench_check.py update BASELINE GUEST_LOG    write the run's figures as the new baselines

Figures (read from the scenarios' @@BENCH lines in the guest log):
    kernel/<op>@<entries>   `dmremap bench kernel` p50 in an icount VM: instructions per operation
                            (lower is better)
    io/<case>               fio IOPS of dm-remap / dm-linear over null_blk in an icount VM, mean of
                            the repetitions (higher is better)
"""
import json
import statistics
import sys

TOLERANCE_PCT = 2.0
# Instruction counts move by an instruction or two with the clock read around the timed loop: at
# the floor (noop is ~10 instructions) that alone is over 2 %. An instruction count regresses
# only when it is worse by more than the tolerance and by more than this many instructions.
MIN_ABS_INSTRUCTIONS = 2


def parse_log(text):
    """The figures in a guest log: {name: {"value": v, "better": "lower"|"higher"}}."""
    figs = {}
    for line in text.splitlines():
        line = line.strip("\r")
        if line.startswith("@@BENCH kernel-icount "):
            doc = json.loads(line[len("@@BENCH kernel-icount "):])
            for r in doc["results"]:
                figs[f"kernel/{r['case']}"] = {"value": r["p50"], "better": "lower",
                                               "min_abs": MIN_ABS_INSTRUCTIONS}
        elif line.startswith("@@BENCH io-raw-nullb "):
            for c in json.loads(line[len("@@BENCH io-raw-nullb "):]):
                reps = [r / l for r, l in zip(c["remap_iops"], c["linear_iops"]) if l]
                if reps:
                    figs[f"io/{c['case']}"] = {"value": round(statistics.mean(reps), 4), "better": "higher"}
    return figs


def change_pct(base, now):
    return (now - base) / base * 100.0 if base else 0.0


def regressed(fig, base, now, tol=TOLERANCE_PCT):
    """Whether `now` is worse than `base` by more than tol percent, in the figure's direction."""
    ch = change_pct(base, now)
    if abs(now - base) <= fig.get("min_abs", 0):
        return False
    return ch > tol if fig["better"] == "lower" else ch < -tol


def compare(baseline, figs, out=sys.stdout):
    """Print the table; return the exit status (0 ok, 1 regression, 2 figure missing)."""
    tol = baseline.get("tolerance_pct", TOLERANCE_PCT)
    base_figs = baseline["figures"]
    worst = 0
    out.write(f"{'figure':<40} {'baseline':>12} {'now':>12} {'change':>9}  verdict\n")
    for name in sorted(set(base_figs) | set(figs)):
        b, n = base_figs.get(name), figs.get(name)
        if b is None:
            out.write(f"{name:<40} {'-':>12} {n['value']:>12} {'':>9}  new (not in the baselines)\n")
            continue
        if n is None:
            out.write(f"{name:<40} {b['value']:>12} {'-':>12} {'':>9}  MISSING\n")
            worst = max(worst, 2)
            continue
        ch = change_pct(b["value"], n["value"])
        if regressed(b, b["value"], n["value"], tol):
            verdict = f"REGRESSED ({b['better']} is better)"
            worst = max(worst, 1)
        elif abs(ch) > tol:
            verdict = "improved"
        else:
            verdict = "ok"
        out.write(f"{name:<40} {b['value']:>12} {n['value']:>12} {ch:>+8.2f}%  {verdict}\n")
    if worst == 1:
        out.write(f"bench-check: FAILED, a figure regressed by more than {tol} %\n")
    elif worst == 2:
        out.write("bench-check: FAILED, baseline figures missing from this run\n")
    else:
        out.write(f"bench-check: ok (no figure worse than its baseline by more than {tol} %)\n")
    return worst


def main(argv):
    if len(argv) < 3 or argv[1] not in ("figures", "compare", "update"):
        sys.stderr.write(__doc__)
        return 2
    with open(argv[-1], errors="replace") as f:
        figs = parse_log(f.read())
    if not figs:
        sys.stderr.write(f"bench_check: no @@BENCH figures in {argv[-1]}\n")
        return 2
    if argv[1] == "figures":
        json.dump(figs, sys.stdout, indent=1, sort_keys=True)
        print()
        return 0
    if argv[1] == "update":
        doc = {"comment": "icount-VM figures guarded by `make bench-check`; rewrite with `make bench-baseline`",
               "tolerance_pct": TOLERANCE_PCT, "figures": figs}
        with open(argv[2], "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"bench_check: wrote {len(figs)} baselines to {argv[2]}")
        return 0
    with open(argv[2]) as f:
        baseline = json.load(f)
    return compare(baseline, figs)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
