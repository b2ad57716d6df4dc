#!/usr/bin/env python3
"""A reload of a big routing file in a running mailgate, as an operator does it
(docs/performance.md, "Routing table: a compact table and one reload per edit").

For each binary given (alternating, ROUNDS processes each): start a release mailgate with
ROUTING (e.g. 1,000,000 domains from `cargo run -p mailgate-config --release --example
gen_routing`), `health.interval: 60s`, no sessions; then EDITS times: append a comment to the
routing file, send SIGHUP right after, time until /status shows the new routing version,
mailgate's CPU (utime+stime) over the edit plus 3 s, and the "configuration reloaded" lines
the edit caused. The process's peak RSS (VmHWM) after the start and at the end.

    scripts/bench_reload.py ROUTING BIN [BIN...] [--rounds 2] [--edits 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def version(admin: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/status", timeout=2) as r:
            return json.loads(r.read())["routing"]["version"]
    except OSError:
        return None


def run_one(binary: str, routing: Path, edits: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="mg-reload-bench."))
    conf = work / "conf"
    conf.mkdir()
    shutil.copy(routing, conf / "routing.yaml")
    imap, admin = free_port(), free_port()
    (conf / "mailgate.yaml").write_text(
        f"listen:\n  imap: 127.0.0.1:{imap}\n  admin: 127.0.0.1:{admin}\n"
        "routing_file: routing.yaml\nhealth:\n  interval: 60s\n"
        "log:\n  level: info\n  format: text\nshutdown_grace: 1s\n")
    log = work / "mailgate.log"  # outside the watched directory
    with open(log, "w") as out:
        proc = subprocess.Popen([binary, "run", "-c", str(conf / "mailgate.yaml")],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    t0 = time.monotonic()
    try:
        while version(admin) is None:
            if proc.poll() is not None or time.monotonic() - t0 > 120:
                raise RuntimeError(f"mailgate did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        ready = time.monotonic() - t0
        time.sleep(2.0)
        start_peak = hwm_mib(proc.pid)
        rows = []
        for i in range(edits):
            before_v = version(admin)
            before_log = log.read_text().count("configuration reloaded")
            c0 = cpu_s(proc.pid)
            t = time.monotonic()
            with open(conf / "routing.yaml", "a") as f:
                f.write(f"# edit {i} at {time.time()}\n")
            proc.send_signal(signal.SIGHUP)
            while version(admin) == before_v:
                if time.monotonic() - t > 120:
                    raise RuntimeError("no new version in 120 s")
                time.sleep(0.05)
            wall = time.monotonic() - t
            time.sleep(3.0)
            rows.append({
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu_s(proc.pid) - c0, 2),
                "reloads": log.read_text().count("configuration reloaded") - before_log,
                "peak_mib": round(hwm_mib(proc.pid)),
            })
        return {"binary": binary, "ready_s": round(ready, 2), "edits": rows,
                "start_peak_mib": round(start_peak), "peak_mib": round(hwm_mib(proc.pid))}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("routing", type=Path)
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--edits", type=int, default=3)
    a = ap.parse_args()
    for r in range(a.rounds):
        for b in a.binaries:
            res = run_one(b, a.routing, a.edits)
            res["round"] = r + 1
            res["load"] = os.getloadavg()[0]
            print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
