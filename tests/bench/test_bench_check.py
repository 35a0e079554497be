#!/usr/bin/env python3
"""The performance gate's comparison (scripts/bench_check.py) fails on regressions."""
import io
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import bench_check  # noqa: E402


def guest_log(lookup_p50=150, insert_p50=400, lin=(100000, 100000), rmp=(98000, 98000)):
    kernel = {"bench": "kernel", "unit": "ns", "results": [
        {"case": "lookup@1000000", "op": "lookup", "entries": 1000000, "p50": lookup_p50},
        {"case": "insert@0", "op": "insert", "entries": 0, "p50": insert_p50},
    ]}
    io_raw = [{"case": "nullb-randread-remaps0", "disk": "nullb", "rw": "randread", "remaps": 0,
               "linear_iops": list(lin), "remap_iops": list(rmp)}]
    return (f"[    1.0] boot noise\n@@BENCH kernel-icount {json.dumps(kernel)}\r\n"
            f"other output\n@@BENCH io-raw-nullb {json.dumps(io_raw)}\n")


class BenchCheck(unittest.TestCase):
    def setUp(self):
        self.base = {"tolerance_pct": 2.0, "figures": bench_check.parse_log(guest_log())}

    def run_compare(self, **kw):
        out = io.StringIO()
        rc = bench_check.compare(self.base, bench_check.parse_log(guest_log(**kw)), out)
        return rc, out.getvalue()

    def test_figures_parsed(self):
        figs = self.base["figures"]
        self.assertEqual(figs["kernel/lookup@1000000"],
                         {"value": 150, "better": "lower", "min_abs": bench_check.MIN_ABS_INSTRUCTIONS})
        self.assertEqual(figs["io/nullb-randread-remaps0"], {"value": 0.98, "better": "higher"})

    def test_same_run_passes(self):
        rc, out = self.run_compare()
        self.assertEqual(rc, 0, out)
        self.assertIn("bench-check: ok", out)

    def test_within_tolerance_passes(self):
        rc, out = self.run_compare(lookup_p50=153, rmp=(96100, 96100))  # +2.0 %, -1.94 %
        self.assertEqual(rc, 0, out)

    def test_more_instructions_fail(self):
        rc, out = self.run_compare(lookup_p50=154)  # +2.67 %
        self.assertEqual(rc, 1, out)
        self.assertIn("REGRESSED", out)

    def test_small_figures_have_an_instruction_of_slack(self):
        self.base["figures"]["kernel/insert@0"]["value"] = 10
        rc, out = self.run_compare(insert_p50=12)  # +20 %, but 2 instructions
        self.assertEqual(rc, 0, out)
        rc, out = self.run_compare(insert_p50=13)  # 3 instructions
        self.assertEqual(rc, 1, out)

    def test_lower_ratio_fails(self):
        rc, out = self.run_compare(rmp=(95000, 95000))  # 0.95 vs 0.98: -3.06 %
        self.assertEqual(rc, 1, out)

    def test_improvements_pass(self):
        rc, out = self.run_compare(lookup_p50=100, insert_p50=300, rmp=(105000, 105000))
        self.assertEqual(rc, 0, out)
        self.assertIn("improved", out)

    def test_missing_figure_fails(self):
        self.base["figures"]["kernel/alloc@0"] = {"value": 80, "better": "lower"}
        rc, out = self.run_compare()
        self.assertEqual(rc, 2, out)
        self.assertIn("MISSING", out)

    def test_update_then_compare_round_trip(self):
        with tempfile.TemporaryDirectory() as d:
            log, base = os.path.join(d, "guest.log"), os.path.join(d, "baseline.json")
            with open(log, "w") as f:
                f.write(guest_log())
            self.assertEqual(bench_check.main(["x", "update", base, log]), 0)
            with open(log, "w") as f:
                f.write(guest_log(insert_p50=500))
            self.assertEqual(bench_check.main(["x", "compare", base, log]), 1)

    def test_log_without_figures_is_an_error(self):
        with tempfile.NamedTemporaryFile("w", suffix=".log") as f:
            f.write("no figures here\n")
            f.flush()
            self.assertEqual(bench_check.main(["x", "compare", "unused.json", f.name]), 2)


if __name__ == "__main__":
    unittest.main()
