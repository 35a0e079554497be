#!/usr/bin/env python3
"""Run scenario scripts in QEMU VMs and report `N passed, N failed`.

Each scenario is tests/scenarios/<name>.sh. Header comments configure it:
    # timeout: <seconds>      guest run time allowed (default 300)
    # vm: <profile>           disk layout (see PROFILES; default "default")
    # kernel-args: <args>     extra kernel command line (e.g. kmemleak=on)
    # suite: <name>           "test" (default: make test), "full" (make test-full only), "demo",
                              "bench", "lib" (sourced by other scenarios) or "powercut"
    # clock: mttcg|icount     icount: one vCPU, guest time = instructions executed (repeatable)

Scenarios with the same VM settings share one boot; /init prints markers around each one. A
scenario fails if its script exits non-zero, if it overruns its timeout (the VM is killed and the
remaining scenarios run in a new VM), or if the kernel logs an oops, BUG, WARNING, KASAN, lockdep
or kmemleak report while it runs. Reports outside any scenario (boot, shutdown) fail the run.

Host actions: a scenario can ask the host to act on its VM by printing a console line
    @@HOST <id> <command> <args...>
The harness runs the command and answers on the guest's serial input with `@@ACK <id> ok [<value>]`
or `@@ACK <id> error <message>` (tests/scenarios/lib.sh: host_do). A repeated <id> gets the first
answer again without running the command twice. Commands (over QMP):
    qom-set <path> <property> <value>    e.g. qom-set /machine/peripheral/nvme3 smart_critical_warning 4
    qom-get <path> <property>            answers `ok <value>` (JSON)
    fault <drive> read|write <sector> [once]
                                         from now on every (with `once`: the next) read (write)
                                         of the drive touching 512-byte <sector> fails with EIO: a
                                         blkdebug node is put between the drive's raw and file
                                         nodes (blockdev-reopen)
    fault <drive> flush <count>          the next <count> flushes of the drive fail with EIO (a
                                         count, not "every": blockdev-reopen flushes the drive, so
                                         clear-faults needs the flush rules used up first)
    faults <drive> read|write <first> <step> <count>
                                         `fault` at sectors first, first + step, ... (count of them)
    clear-faults <drive>                 remove the drive's injected faults
  (drives: the profile's ids, e.g. nvme0 = the main NVMe disk, vspare0 = /dev/vda)
"""

import argparse
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCEN_DIR = os.path.join(ROOT, "tests", "scenarios")

MiB = 1 << 20


def _nvme10():
    """Ten NVMe controllers (serials DMRNV00..DMRNV09) on small sparse images. nvme3, nvme6 and
    nvme9 have two namespaces each (64 MiB nsid 1, 32 MiB nsid 2; nvme6's nsid 2 uses 4 KiB
    logical blocks): 13 namespaces in all."""
    disks = []
    for i in range(10):
        ctrl, serial = f"nvme{i}", f"serial=DMRNV{i:02d}"
        if i in (3, 6, 9):
            lbs = ",logical_block_size=4096,physical_block_size=4096" if i == 6 else ""
            disks += [
                ("nvme-ctrl", ctrl, 0, serial),
                ("nvme-ns", f"{ctrl}n1", 64, f"bus={ctrl},nsid=1"),
                ("nvme-ns", f"{ctrl}n2", 32, f"bus={ctrl},nsid=2{lbs}"),
            ]
        else:
            disks.append(("nvme", ctrl, 64, serial))
    return disks


# Disk layouts: (kind, id, size in MiB, extra device properties). Kinds: "nvme" (a controller with
# one namespace on its own image), "virtio" (virtio-blk), "nvme-ctrl" (a controller without a
# drive; no image) and "nvme-ns" (a namespace with its own image on an earlier controller, named by
# bus=<controller id>).
PROFILES = {
    "default": [
        ("nvme", "nvme0", 1024, "serial=DMRMAIN0"),
        ("virtio", "vspare0", 1024, ""),
        ("virtio", "vspare1", 256, ""),
    ],
    "nvme10": _nvme10(),
    # The default layout with a 4Kn main (4096-byte logical and physical blocks).
    "nvme4k": [
        ("nvme", "nvme0", 1024, "serial=DMRMAIN0,logical_block_size=4096,physical_block_size=4096"),
        ("virtio", "vspare0", 1024, ""),
        ("virtio", "vspare1", 256, ""),
    ],
    # The default disks plus a 1 TiB spare (/dev/vdc) on a sparse image: costs no host disk.
    "bigspare": [
        ("nvme", "nvme0", 1024, "serial=DMRMAIN0"),
        ("virtio", "vspare0", 1024, ""),
        ("virtio", "vspare1", 256, ""),
        ("virtio", "vbig0", 1 << 20, ""),
    ],
}

TIMEOUT = object()
KERNEL_LINE = re.compile(r"^\[\s*\d+\.\d+\]")
BAD_KERNEL = re.compile(
    r"BUG:|WARNING:|Oops|KASAN|kernel BUG|general protection fault|Kernel panic|"
    r"possible circular locking|possible recursive locking|inconsistent lock state|"
    r"sleeping function called from invalid context|UBSAN|unreferenced object|"
    r"rcu_sched self-detected stall|rcu: INFO|Call Trace:|refcount_t:|list_add corruption|"
    r"list_del corruption|ODEBUG"
)


def parse_header(path):
    cfg = {"timeout": 300, "vm": "default", "kernel-args": "", "suite": "test", "clock": "mttcg"}
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                if line.strip():
                    break
                continue
            m = re.match(r"#\s*([a-z-]+):\s*(.*)$", line.strip())
            if m and m.group(1) in cfg:
                cfg[m.group(1)] = m.group(2).strip()
    cfg["timeout"] = int(cfg["timeout"])
    if cfg["clock"] not in ("mttcg", "icount"):
        raise SystemExit(f"{path}: clock must be mttcg or icount")
    if cfg["vm"] not in PROFILES:
        raise SystemExit(f"{path}: unknown vm profile '{cfg['vm']}'")
    return cfg


def discover(suite, names):
    all_scen = {}
    for fn in sorted(os.listdir(SCEN_DIR)):
        if fn.endswith(".sh") and fn != "lib.sh":
            name = fn[:-3]
            all_scen[name] = parse_header(os.path.join(SCEN_DIR, fn))
    if names:
        missing = [n for n in names if n not in all_scen]
        if missing:
            raise SystemExit(f"unknown scenario(s): {', '.join(missing)}; have: {', '.join(all_scen)}")
        return [(n, all_scen[n]) for n in names]
    # The full suite is the test suite plus the scenarios too slow for every `make test`.
    want = ("test", "full") if suite == "full" else (suite,)
    return [(n, c) for n, c in all_scen.items() if c["suite"] in want]


class VM:
    """One QEMU guest; its serial console is read line by line by a thread."""

    def __init__(self, args, workdir, profile, kernel_args, scenarios, log, clock="mttcg"):
        self.log = log
        os.makedirs(workdir, exist_ok=True)
        self.workdir = workdir
        cmd = [
            args.qemu, "-nodefaults", "-display", "none", "-no-reboot",
            "-machine", "q35",
            # No 5-level paging: an interrupt during early boot of the KASAN kernel with LA57 hit
            # an unpopulated shadow region (a "wild-memory-access" report before init ran).
            "-cpu", "max,la57=off",
            *(["-accel", "tcg", "-icount", "shift=0,sleep=off", "-smp", "1"] if clock == "icount"
              else ["-accel", "tcg,thread=multi", "-smp", str(args.smp)]),
            "-m", str(args.mem),
            "-kernel", args.kernel, "-initrd", args.initrd,
            "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
            "-qmp", f"unix:{os.path.join(workdir, 'qmp.sock')},server=on,wait=off",
            "-device", "virtio-rng-pci",
        ]
        for kind, dev_id, size, props in PROFILES[profile]:
            if kind == "nvme-ctrl":
                cmd += ["-device", f"nvme,id={dev_id}" + (f",{props}" if props else "")]
                continue
            img = os.path.join(workdir, f"{dev_id}.img")
            with open(img, "wb") as f:
                f.truncate(size * MiB)
            cmd += [
                "-blockdev", f"driver=file,filename={img},node-name={dev_id}-file",
                "-blockdev", f"driver=raw,file={dev_id}-file,node-name={dev_id}-raw",
            ]
            if kind == "nvme":
                cmd += ["-device", f"nvme,id={dev_id},drive={dev_id}-raw" + (f",{props}" if props else "")]
            elif kind == "nvme-ns":
                cmd += ["-device", f"nvme-ns,id={dev_id},drive={dev_id}-raw" + (f",{props}" if props else "")]
            else:
                cmd += ["-device", f"virtio-blk-pci,id={dev_id},drive={dev_id}-raw" + (f",{props}" if props else "")]
        append = (
            "console=ttyS0 panic=-1 loglevel=7 printk.time=1 "
            f"dmr.scenarios={','.join(scenarios)} {kernel_args}"
        ).strip()
        cmd += ["-append", append]
        self.cmd = cmd
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0
        )
        self.lines = queue.Queue()
        self.answers = {}       # host-action id -> answer already sent
        self.faults = {}        # drive id -> [(read|write, sector)] injected with blkdebug
        self.fault_nodes = {}   # drive id -> its blkdebug node
        self.fault_seq = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(65536) if hasattr(self.proc.stdout, "read1") else self.proc.stdout.read(4096)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode("utf-8", "replace").rstrip("\r")
                self.log.write(text + "\n")
                self.log.flush()
                self.lines.put(text)
        if buf:
            text = buf.decode("utf-8", "replace")
            self.log.write(text + "\n")
            self.lines.put(text)
        self.lines.put(None)

    def next_line(self, deadline):
        """Next console line, None at EOF, or TIMEOUT when the deadline passed."""
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            return TIMEOUT
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return TIMEOUT

    def qmp(self, command, arguments=None):
        """Run one QMP command on this VM's monitor; returns its result, raises RuntimeError."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(os.path.join(self.workdir, "qmp.sock"))
            f = s.makefile("rwb", buffering=0)

            def recv():
                while True:
                    raw = f.readline()
                    if not raw:
                        raise RuntimeError("QMP connection closed")
                    msg = json.loads(raw)
                    if "event" not in msg:
                        return msg

            def execute(cmd, args=None):
                req = {"execute": cmd}
                if args:
                    req["arguments"] = args
                f.write(json.dumps(req).encode() + b"\n")
                reply = recv()
                if "error" in reply:
                    raise RuntimeError(f"{cmd}: {reply['error'].get('desc', reply['error'])}")
                return reply.get("return")

            if "QMP" not in recv():
                raise RuntimeError("no QMP greeting")
            execute("qmp_capabilities")
            return execute(command, arguments)

    def host_action(self, line):
        """Perform a `@@HOST <id> <command> <args...>` request and answer on the serial input."""
        parts = line.split()
        if len(parts) < 3:
            return
        req_id, command, args = parts[1], parts[2], parts[3:]
        if req_id not in self.answers:
            try:
                if command == "qom-set" and len(args) == 3:
                    path, prop, value = args
                    if re.fullmatch(r"-?\d+", value):
                        value = int(value)
                    elif re.fullmatch(r"0x[0-9a-fA-F]+", value):
                        value = int(value, 16)
                    elif value in ("true", "false"):
                        value = value == "true"
                    self.qmp("qom-set", {"path": path, "property": prop, "value": value})
                    answer = "ok"
                elif command == "fault" and len(args) in (3, 4) and args[1] in ("read", "write") \
                        and args[3:] in ([], ["once"]):
                    self.add_fault(args[0], args[1], int(args[2]), args[3:] == ["once"])
                    answer = "ok"
                elif command == "fault" and len(args) == 3 and args[1] == "flush":
                    count = int(args[2])
                    if count < 1 or count > 4096:
                        raise ValueError("fault flush: count 1..4096")
                    rules = [("flush", None, True)] * count
                    self.set_faults(args[0], self.faults.get(args[0], []) + rules)
                    answer = "ok"
                elif command == "faults" and len(args) == 5 and args[1] in ("read", "write"):
                    first, step, count = (int(a) for a in args[2:])
                    if count < 1 or count > 4096 or step < 1:
                        raise ValueError("faults: count 1..4096 and a positive step")
                    rules = [(args[1], first + i * step, False) for i in range(count)]
                    self.set_faults(args[0], self.faults.get(args[0], []) + rules)
                    answer = "ok"
                elif command == "clear-faults" and len(args) == 1:
                    self.set_faults(args[0], [])
                    answer = "ok"
                elif command == "qom-get" and len(args) == 2:
                    answer = "ok " + json.dumps(self.qmp("qom-get", {"path": args[0], "property": args[1]}))
                else:
                    answer = f"error unknown host action: {' '.join(parts[2:])}"
            except (OSError, RuntimeError, ValueError) as e:
                answer = f"error {e}"
            self.answers[req_id] = " ".join(answer.split())
            self.log.write(f"==== host action {req_id}: {' '.join(parts[2:])} -> {self.answers[req_id]}\n")
        try:
            self.proc.stdin.write(f"@@ACK {req_id} {self.answers[req_id]}\n".encode())
            self.proc.stdin.flush()
        except OSError:
            pass    # QEMU is gone; the line loop sees EOF

    def add_fault(self, drive, kind, sector, once=False):
        """Make every (or only the next) `kind` request touching 512-byte `sector` of `drive`
        fail with EIO (`flush`: the next flush, `sector` is None)."""
        rules = self.faults.get(drive, []) + [(kind, sector, once)]
        self.set_faults(drive, rules)

    def set_faults(self, drive, rules):
        """Put a blkdebug node with `rules` between the drive's raw and file nodes (or none)."""
        old = self.fault_nodes.get(drive)
        if rules:
            self.fault_seq += 1
            node = f"{drive}-dbg{self.fault_seq}"
            self.qmp("blockdev-add", {
                "driver": "blkdebug", "node-name": node, "image": f"{drive}-file",
                "inject-error": [
                    # A rule is active only after its event, and an event with rules replaces
                    # the active ones (blkdebug): with "none", a flush rule stops working at the
                    # first write while a write rule exists.
                    {"event": "flush_to_disk", "iotype": "flush", "errno": 5, "once": once}
                    if kind == "flush" else
                    {"event": f"{kind}_aio", "errno": 5, "sector": sector, "once": once}
                    for kind, sector, once in rules
                ],
            })
        else:
            node = None
        self.qmp("blockdev-reopen", {"options": [
            {"driver": "raw", "node-name": f"{drive}-raw", "file": node or f"{drive}-file"}
        ]})
        if old:
            self.qmp("blockdev-del", {"node-name": old})
        self.faults[drive] = rules
        self.fault_nodes[drive] = node

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def wait(self, timeout):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def run_group(args, group_idx, profile, kernel_args, scen, results, log, echo, clock="mttcg"):
    """Run scenarios [(name, cfg)] in as few boots as needed. Appends to results."""

    def add(name, ok, why, secs):
        results.append((name, ok, why, secs))
        report(results[-1])

    pending = list(scen)
    boot = 0
    while pending:
        boot += 1
        names = [n for n, _ in pending]
        workdir = os.path.join(args.out, f"vm{group_idx}-{boot}")
        log.write(f"==== boot {group_idx}.{boot}: {' '.join(names)}\n")
        vm = VM(args, workdir, profile, kernel_args, names, log, clock)
        current = None          # scenario running now
        cur_lines = []
        cur_bad = []
        outside_bad = []
        started = time.monotonic()
        deadline = started + args.boot_timeout
        done = False
        while True:
            line = vm.next_line(deadline)
            if line is TIMEOUT:
                # Deadline passed.
                if current is None:
                    if not done:
                        add(f"boot[{','.join(names)}]", False, f"no progress within {args.boot_timeout} s", 0.0)
                    pending = []
                else:
                    name, cfg = pending[0]
                    add(name, False, f"timed out after {cfg['timeout']} s", time.monotonic() - started)
                    pending.pop(0)
                vm.kill()
                break
            if line is None:
                # QEMU exited.
                if current is not None:
                    name, _ = pending[0]
                    add(name, False, "VM exited during the scenario (see guest log)", time.monotonic() - started)
                    pending.pop(0)
                elif not done:
                    add(f"boot[{','.join(names)}]", False, "VM exited before finishing", 0.0)
                    pending = []
                break
            if line.startswith("@@HOST "):
                vm.host_action(line)
            if line.startswith("@@DMR-KERNEL "):
                args.guest_kernels.add(line.split()[1] if len(line.split()) > 1 else "?")
            if echo and not KERNEL_LINE.match(line) and not line.startswith(("@@DMR", "@@HOST", "@@ACK")):
                print(line, flush=True)
            if KERNEL_LINE.match(line) and BAD_KERNEL.search(line):
                (cur_bad if current else outside_bad).append(line)
            if line.startswith("@@DMR-BEGIN "):
                current = line.split()[1]
                cur_lines, cur_bad = [], []
                started = time.monotonic()
                deadline = started + pending[0][1]["timeout"] * args.timeout_factor
                continue
            if line.startswith("@@DMR-END "):
                parts = line.split()
                name, rc = parts[1], int(parts[2]) if len(parts) > 2 and parts[2].lstrip("-").isdigit() else -1
                elapsed = time.monotonic() - started
                if rc != 0:
                    fails = [l for l in cur_lines if l.startswith("FAIL")]
                    add(name, False, fails[-1] if fails else f"exit status {rc}", elapsed)
                elif cur_bad:
                    add(name, False, f"kernel reported: {cur_bad[0].strip()}", elapsed)
                else:
                    add(name, True, "", elapsed)
                pending.pop(0)
                current = None
                deadline = time.monotonic() + args.boot_timeout
                continue
            if line.startswith("@@DMR-DONE"):
                done = True
                deadline = time.monotonic() + 120
                continue
            if current:
                cur_lines.append(line)
        vm.wait(30)
        if outside_bad:
            add(f"kernel-log[boot {group_idx}.{boot}]", False, f"kernel reported outside scenarios: {outside_bad[0].strip()}", 0.0)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def report(r):
    name, ok, why, secs = r
    if ok:
        print(f"PASS {name} ({secs:.1f} s)", flush=True)
    else:
        print(f"FAIL {name} ({secs:.1f} s): {why}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--out", required=True, help="directory for guest logs")
    ap.add_argument("--scenario", action="append", default=[], help="run only these (repeatable, or comma-separated)")
    ap.add_argument("--suite", default="test")
    ap.add_argument("--echo", action="store_true", help="print the scenarios' own output")
    ap.add_argument("--keep", action="store_true", help="keep disk images")
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--mem", type=int, default=2048)
    ap.add_argument("--boot-timeout", type=int, default=180)
    ap.add_argument("--timeout-factor", type=float, default=1.0)
    ap.add_argument("--expect-kernel", help="fail unless every guest reports this `uname -r`")
    args = ap.parse_args()
    args.guest_kernels = set()
    names = [n for s in args.scenario for n in s.split(",") if n]
    scen = discover(args.suite, names)
    if not scen:
        raise SystemExit("no scenarios to run")
    os.makedirs(args.out, exist_ok=True)
    # One group per VM settings (in order of first appearance), scenarios in their order within
    # it: each group needs its own boot.
    groups = []
    for name, cfg in scen:
        key = (cfg["vm"], cfg["kernel-args"], cfg["clock"])
        same = [g for g in groups if g[0] == key]
        if same:
            same[0][1].append((name, cfg))
        else:
            groups.append((key, [(name, cfg)]))
    results = []
    t0 = time.monotonic()
    log_path = os.path.join(args.out, "guest.log")
    with open(log_path, "w") as log:
        for i, ((profile, kargs, clock), group) in enumerate(groups):
            run_group(args, i, profile, kargs, group, results, log, args.echo, clock)
    print(f"guest kernel (uname -r): {', '.join(sorted(args.guest_kernels)) or 'never reported'}")
    if args.expect_kernel and args.guest_kernels != {args.expect_kernel}:
        results.append(("kernel-release", False, f"guest kernel is not {args.expect_kernel}", 0.0))
        report(results[-1])
    passed = sum(1 for r in results if r[1])
    failed = len(results) - passed
    print(f"guest log: {log_path} ({time.monotonic() - t0:.0f} s)")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
