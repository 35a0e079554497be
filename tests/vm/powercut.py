#!/usr/bin/env python3
"""Power-cut tests of the remap target, two ways (see tests/scenarios/powercut_*.sh).

kill: boot a VM, start a remap storm mixed with verified writes (powercut_kill.sh), kill QEMU at a
      random moment, then check the disk image. Killing QEMU only loses requests in flight (what
      QEMU issued sits in the host page cache), so this cannot catch a missing flush or FUA.
log:  record every write to main and spare in order with dm-log-writes (powercut_log.sh), then
      replay crash states onto fresh images: each flush / FUA / mark point, and random subsets
      of the not yet flushed writes before each flush (a drive losing its volatile cache).

Each crash state is checked against the operations acknowledged at that point:
  corrupt_metadata  the spare's metadata does not load (`dmremap inspect`: damaged or blank)
  lost_remaps       an acknowledged remap is not in the loaded metadata
  lost_writes       a block whose write was acknowledged does not read back (through the loaded
                    metadata) as that write or as the one operation still in flight
Writes target/bench/powercut.json-style results to --out.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the VM harness)

MiB = 1 << 20
MAIN_BYTES = 32 * MiB           # powercut.inc: PC_MAIN_SECTORS
SPARE_BYTES = 8 * MiB           # PC_SPARE_SECTORS
BLOCK = 4096
LOG_MAGIC = 0x6A736677736872
FLUSH, FUA, DISCARD, MARK = 1, 2, 4, 8


class Ops:
    """Operations announced (@@OP) and acknowledged (@@ACKED / log marks) by the workload."""

    def __init__(self):
        self.ops = {}           # i -> ("w", block, sha) | ("r", block, None)

    def line(self, text):
        w = text.split()
        if len(w) >= 4 and w[0] == "@@OP" and w[1].isdigit() and w[3].isdigit():
            i, kind, block = int(w[1]), w[2], int(w[3])
            if kind == "w" and len(w) == 5:
                self.ops[i] = ("w", block, w[4])
            elif kind == "r":
                self.ops[i] = ("r", block, None)


class Checker:
    def __init__(self, dmremap, tmpdir):
        self.dmremap = dmremap
        self.tmp = os.path.join(tmpdir, "spare.img")
        self.cache = {}

    def metadata(self, spare):
        """{block: spare byte offset or None (pending)} from `dmremap inspect`, or None if the
        metadata does not load."""
        key = hashlib.sha1(spare).digest()
        if key in self.cache:
            return self.cache[key]
        with open(self.tmp, "wb") as f:
            f.write(spare)
        p = subprocess.run([self.dmremap, "inspect", "--json", "--records", self.tmp],
                           capture_output=True, text=True)
        res = None
        try:
            doc = json.loads(p.stdout)
            if doc.get("status") in ("valid", "degraded"):
                res = {r["block"]: (None if r["spare_sector"] is None else r["spare_sector"] * 512)
                       for r in doc.get("records", [])}
        except (json.JSONDecodeError, KeyError, TypeError):
            res = None
        self.cache[key] = res
        return res

    def check(self, image, ops, acked, formatted=True):
        """Check one crash state. `image`: main + spare bytes; `acked`: highest acknowledged
        operation (ops 1..acked done, acked + 1 possibly in flight)."""
        main = memoryview(image)[:MAIN_BYTES]
        spare = bytes(memoryview(image)[MAIN_BYTES:MAIN_BYTES + SPARE_BYTES])
        out = {"lost_writes": 0, "lost_remaps": 0, "corrupt_metadata": 0}
        if not formatted:
            return out
        md = self.metadata(spare)
        if md is None:
            out["corrupt_metadata"] = 1
            return out
        want = {}               # block -> set of allowed hashes
        remapped = set()
        for i in range(1, acked + 1):
            op = ops.get(i)
            if op is None:
                continue
            kind, block, sha = op
            if kind == "w":
                want[block] = {sha}
            else:
                remapped.add(block)
        nxt = ops.get(acked + 1)
        if nxt and nxt[0] == "w" and nxt[1] in want:
            want[nxt[1]].add(nxt[2])
        for block in remapped:
            if md.get(block, None) is None:
                out["lost_remaps"] += 1
        for block, allowed in want.items():
            if block in md and md[block] is not None:
                off = md[block]
                data = spare[off:off + BLOCK]
            else:
                data = bytes(main[block * BLOCK:(block + 1) * BLOCK])
            if hashlib.sha256(data).hexdigest() not in allowed:
                out["lost_writes"] += 1
        return out


def add(total, r):
    for k in ("lost_writes", "lost_remaps", "corrupt_metadata"):
        total[k] += r[k]
    total["iterations"] += 1


def vm_args(a):
    return argparse.Namespace(qemu=a.qemu, smp=2, mem=1024, kernel=a.kernel, initrd=a.initrd)


def run_kill(a, checker, n, log, rng):
    total = {"iterations": 0, "lost_writes": 0, "lost_remaps": 0, "corrupt_metadata": 0,
             "acked_ops": 0, "boot_retries": [], "failures": []}
    it = 0
    retries = 0
    while it < n:
        workdir = os.path.join(a.out, f"kill-{it}")
        shutil.rmtree(workdir, ignore_errors=True)
        log.write(f"==== powercut kill {it}\n")
        vm = run.VM(vm_args(a), workdir, "default", "", ["powercut_kill"], log)
        ops = Ops()
        acked = 0
        go = None
        delay = rng.uniform(0.5, a.max_delay)
        deadline = time.monotonic() + 300
        while True:
            now = time.monotonic()
            if go is not None and now >= go + delay:
                break
            line = vm.next_line(min(deadline, go + delay) if go is not None else deadline)
            if line is run.TIMEOUT:
                if go is None:
                    total["failures"].append(f"kill {it}: no @@GO within 300 s")
                break
            if line is None:
                total["failures"].append(f"kill {it}: the VM exited before the cut")
                break
            if line.startswith("@@GO"):
                go = time.monotonic()
            elif line.startswith("@@OP "):
                ops.line(line)
            elif line.startswith("@@ACKED ") and line.split()[1].isdigit():
                acked = max(acked, int(line.split()[1]))
            elif run.KERNEL_LINE.match(line) and run.BAD_KERNEL.search(line):
                total["failures"].append(f"kill {it}: kernel report: {line}")
        vm.kill()
        if go is None:
            # The guest never started the workload (an early-boot stall of the emulator has
            # been seen under heavy host load): no crash state was exercised. Boot again, a few
            # times at most; the boots are reported.
            shutil.rmtree(workdir, ignore_errors=True)
            if total["failures"] and total["failures"][-1].startswith(f"kill {it}: no @@GO") and retries < 3:
                total["boot_retries"].append(total["failures"].pop())
                retries += 1
                continue
            it += 1
            continue
        with open(os.path.join(workdir, "nvme0.img"), "rb") as f:
            image = f.read(MAIN_BYTES + SPARE_BYTES)
        r = checker.check(image, ops.ops, acked)
        add(total, r)
        total["acked_ops"] += acked
        log.write(f"==== powercut kill {it}: cut after {delay:.2f} s, {acked} ops acknowledged: {r}\n")
        print(f"kill {it}: cut after {delay:.2f} s, {acked} acknowledged: {r}", flush=True)
        shutil.rmtree(workdir, ignore_errors=True)
        it += 1
        retries = 0
    return total


def parse_log(path):
    """Entries of a dm-log-writes log: [(flags, sector_bytes, data or mark text)]."""
    with open(path, "rb") as f:
        sup = f.read(512)
        magic, version, nr, ssize = struct.unpack_from("<QQQI", sup)
        if magic != LOG_MAGIC or version != 1:
            raise SystemExit(f"{path}: not a dm-log-writes log (magic {magic:#x}, version {version})")
        entries = []
        pos = ssize
        for _ in range(nr):
            f.seek(pos)
            hdr = f.read(ssize)
            sector, nsec, flags, dlen = struct.unpack_from("<QQQQ", hdr)
            pos += ssize
            if flags & MARK:
                entries.append((flags, 0, hdr[32:32 + dlen].rstrip(b"\0").decode("ascii", "replace")))
                continue
            data = b""
            if nsec and not flags & DISCARD:
                f.seek(pos)
                data = f.read(nsec * ssize)
                pos += nsec * ssize
            entries.append((flags, sector * ssize, data if not flags & DISCARD else nsec * ssize))
    return entries


def apply(image, e):
    flags, off, data = e
    if flags & MARK or (not data and not flags & DISCARD):
        return
    if flags & DISCARD:
        image[off:off + data] = bytes(data)
    else:
        image[off:off + len(data)] = data


def run_log(a, checker, ops_n, log, rng):
    total = {"iterations": 0, "lost_writes": 0, "lost_remaps": 0, "corrupt_metadata": 0,
             "acked_ops": 0, "log_entries": 0, "failures": []}
    workdir = os.path.join(a.out, "log")
    shutil.rmtree(workdir, ignore_errors=True)
    log.write("==== powercut log\n")
    vm = run.VM(vm_args(a), workdir, "default", f"dmr.pc_ops={ops_n}", ["powercut_log"], log)
    ops = Ops()
    ok = False
    deadline = time.monotonic() + a.log_timeout
    while True:
        line = vm.next_line(deadline)
        if line is run.TIMEOUT:
            total["failures"].append(f"log: timed out after {a.log_timeout} s")
            vm.kill()
            break
        if line is None:
            break
        if line.startswith("@@OP "):
            ops.line(line)
        elif line.startswith("@@DMR-END powercut_log"):
            ok = line.split()[-1] == "0"
        elif run.KERNEL_LINE.match(line) and run.BAD_KERNEL.search(line):
            total["failures"].append(f"log: kernel report: {line}")
    vm.wait(60)
    if not ok:
        total["failures"].append("log: the workload scenario failed (see the guest log)")
        return total
    entries = parse_log(os.path.join(workdir, "vspare0.img"))
    total["log_entries"] = len(entries)
    image = bytearray(MAIN_BYTES + SPARE_BYTES)
    acked = 0
    formatted = False
    i = 0
    while i < len(entries):
        flags, _, data = entries[i]
        if flags & MARK:
            if data == "created":
                formatted = True
            elif data.startswith("op") and data[2:].isdigit():
                acked = int(data[2:])
            apply(image, entries[i])
            add(total, checker.check(image, ops.ops, acked, formatted))
            i += 1
            continue
        if flags & (FLUSH | FUA):
            apply(image, entries[i])
            add(total, checker.check(image, ops.ops, acked, formatted))
            i += 1
            continue
        # A run of plain writes, logged just before the flush that made them durable: a crash
        # before that flush completes keeps any subset of them.
        j = i
        while j < len(entries) and not entries[j][0] & (FLUSH | FUA | MARK):
            j += 1
        for _ in range(a.subsets):
            trial = bytearray(image)
            for k in range(i, j):
                if rng.random() < 0.5:
                    apply(trial, entries[k])
            add(total, checker.check(trial, ops.ops, acked, formatted))
        for k in range(i, j):
            apply(image, entries[k])
        i = j
    total["acked_ops"] = acked
    shutil.rmtree(workdir, ignore_errors=True)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dmremap", required=True, help="host dmremap binary (for inspect)")
    ap.add_argument("--kill", type=int, default=100, help="kill-QEMU iterations")
    ap.add_argument("--log-ops", type=int, default=120, help="operations recorded for the log replay")
    ap.add_argument("--subsets", type=int, default=2, help="random subsets per unflushed run")
    ap.add_argument("--max-delay", type=float, default=6.0)
    ap.add_argument("--log-timeout", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    os.makedirs(a.out, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, open(os.path.join(a.out, "guest.log"), "w") as log:
        checker = Checker(a.dmremap, tmp)
        kinds = {}
        if a.log_ops > 0:
            kinds["log"] = run_log(a, checker, a.log_ops, log, rng)
        if a.kill > 0:
            kinds["kill"] = run_kill(a, checker, a.kill, log, rng)
    res = {"bench": "powercut", "seed": seed, "seconds": round(time.monotonic() - t0)}
    for k in ("iterations", "lost_writes", "lost_remaps", "corrupt_metadata"):
        res[k] = sum(v[k] for v in kinds.values())
    res["kinds"] = kinds
    text = json.dumps(res, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    failures = [f for v in kinds.values() for f in v["failures"]]
    bad = res["lost_writes"] + res["lost_remaps"] + res["corrupt_metadata"]
    for f in failures:
        print("FAIL:", f)
    if bad:
        print(f"FAIL: {bad} violations over {res['iterations']} crash states (seed {seed})")
    sys.exit(1 if failures or bad else 0)


if __name__ == "__main__":
    main()
