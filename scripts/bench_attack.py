#!/usr/bin/env python3
"""The attack benchmark (make bench-attack): legitimate logins through mailgate to a real
Dovecot, unloaded and then while mailgate is attacked.

    scripts/bench_attack.py run --work DIR [--bin target/release/mailgate] [--port-base 23000]
    scripts/bench_attack.py role NAME --spec JSON     # one load process (used by `run`)

`run` starts one Dovecot (tests/e2e/dovecot.py) with 100 users and a probe account, and a
release mailgate in front of it (plain IMAP, admin listener for /metrics), then:

  1. baseline: 100 legitimate clients (Python imaplib, 4 processes x 25 threads, from
     127.0.0.2-127.0.0.5) loop connect -> LOGIN -> SELECT INBOX -> LOGOUT for --legit-secs;
     every login latency (connect -> tagged LOGIN OK) and every failure is recorded;
  2. attack: in separate processes, 3,000 slowloris connections (one byte of a command
     every few seconds, never a whole line; from 127.0.0.10-127.0.0.69), 1,000 connections
     that send `a CAPABILITY` in a loop and never read (127.0.0.70-127.0.0.89) and an HTTP
     flood (short connections sending `GET / HTTP/1.1`, as fast as one process can;
     127.0.0.100-127.0.0.109). Every attacker that is closed connects again, so the counts
     are held for the whole run. Once they are up, the same 100 legitimate clients run again;
  3. after: the attackers stop; mailgate's RSS is sampled until its sessions are gone.

mailgate's VmRSS and CPU time (/proc) are sampled throughout; its /metrics are scraped
before and after each phase and its session log (JSON) is counted by client address range,
so the report says what each attacker got. Results: RESULTS_DIR/results.json and a
Markdown table in RESULTS_DIR/report.md.

Loopback only. Every loop is bounded in count and time; every child process has its own
deadline and is ended (by its PID) when `run` ends, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import imaplib
import json
import os
import platform
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
PASSWORD = "legit-secret"
PROBE_USER, PROBE_PASSWORD = "probe@bench.example", "probe-secret"
DOMAIN = "bench.example"
# Linux: let connect() pick the source port, so that many short connections from one
# address do not run out of ports at bind() (not exported by Python's socket module).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

# Source addresses of each kind of client (all in 127.0.0.0/8).
LEGIT_SOURCES = [f"127.0.0.{i}" for i in range(2, 6)]
SLOWLORIS_SOURCES = [f"127.0.0.{i}" for i in range(10, 70)]
WRITER_SOURCES = [f"127.0.0.{i}" for i in range(70, 90)]
FLOOD_SOURCES = [f"127.0.0.{i}" for i in range(100, 110)]


def raise_nofile() -> int:
    """Raise the soft open-file limit to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def kind_of(ip: str) -> str:
    """Which client population an address belongs to."""
    if ip in LEGIT_SOURCES:
        return "legit"
    if ip in SLOWLORIS_SOURCES:
        return "slowloris"
    if ip in WRITER_SOURCES:
        return "writers"
    if ip in FLOOD_SOURCES:
        return "flood"
    return "other"


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


# --- role: legitimate clients -----------------------------------------------------------------

class SourceIMAP(imaplib.IMAP4):
    """imaplib's client, connecting from a chosen loopback source address."""

    def __init__(self, host: str, port: int, source: str, timeout: float):
        self._source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):  # imaplib's hook (Python 3.9+)
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))


def role_legit(spec: dict) -> dict:
    """spec: port, users [..], sources [..], secs, max_iterations, timeout, think."""
    deadline = time.monotonic() + spec["secs"]
    lock = threading.Lock()
    latencies: list[float] = []
    pre_login: list[float] = []  # connect -> greeting -> imaplib's CAPABILITY answered
    failures: Counter = Counter()
    first_errors: list[str] = []
    cycles = [0]

    def client(index: int, user: str) -> None:
        source = spec["sources"][index % len(spec["sources"])]
        for _ in range(spec["max_iterations"]):
            if time.monotonic() >= deadline:
                return
            t0 = time.monotonic()
            try:
                conn = SourceIMAP(HOST, spec["port"], source, timeout=spec["timeout"])
                t_pre = time.monotonic()
                try:
                    typ, _ = conn.login(user, PASSWORD)
                    t1 = time.monotonic()
                    if typ != "OK":
                        raise imaplib.IMAP4.error(f"LOGIN answered {typ}")
                    typ, _ = conn.select("INBOX")
                    if typ != "OK":
                        raise imaplib.IMAP4.error(f"SELECT answered {typ}")
                    conn.logout()
                finally:
                    try:
                        conn.shutdown()
                    except OSError:
                        pass
                with lock:
                    latencies.append((t1 - t0) * 1000.0)
                    pre_login.append((t_pre - t0) * 1000.0)
                    cycles[0] += 1
            except (OSError, imaplib.IMAP4.error, EOFError) as e:
                text = f"{type(e).__name__}: {str(e)[:160]}"
                with lock:
                    failures[type(e).__name__] += 1
                    if len(first_errors) < 5:
                        first_errors.append(text)
                time.sleep(0.05)  # no tight error loop
            if spec["think"]:
                time.sleep(spec["think"])

    threads = [threading.Thread(target=client, args=(i, u), daemon=True)
               for i, u in enumerate(spec["users"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()) + spec["timeout"] + 15)
    with lock:
        return {"latencies_ms": [round(x, 3) for x in latencies],
                "pre_login_ms": [round(x, 3) for x in pre_login], "ok": len(latencies),
                "failed": sum(failures.values()), "failures": dict(failures),
                "first_errors": first_errors, "threads_stuck": sum(t.is_alive() for t in threads)}


# --- roles: attackers (asyncio, raw sockets) --------------------------------------------------

def _socket_from(source: str, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((source, 0))
    s.setblocking(False)
    return s


async def _connect(source: str, port: int, timeout: float, rcvbuf: int | None = None) -> socket.socket:
    s = _socket_from(source, rcvbuf)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(s, (HOST, port)), timeout)
    except BaseException:
        s.close()
        raise
    return s


def _classify_close(data: bytes) -> str:
    if b"Too many connections" in data:
        return "refused_per_ip"
    if b"Server busy" in data:
        return "refused_busy"
    if b"Autologout" in data or b"BYE" in data:
        return "bye"
    return "closed_silently"


class Attack:
    """Shared bookkeeping of one attacker process: counters, lifetimes, stop and deadline."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.deadline = time.monotonic() + spec["secs"]
        self.stop = asyncio.Event()
        self.counts: Counter = Counter()
        self.lifetimes: list[float] = []
        self.open_now = 0
        self.peak_open = 0

    def live(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def opened(self) -> None:
        self.open_now += 1
        self.peak_open = max(self.peak_open, self.open_now)

    def closed(self, started: float, how: str) -> None:
        self.open_now -= 1
        self.counts[how] += 1
        if how != "stopped":  # lifetimes of connections that mailgate (or the kernel) ended
            self.lifetimes.append(time.monotonic() - started)

    async def sleep(self, secs: float) -> None:
        try:
            await asyncio.wait_for(self.stop.wait(), max(0.0, min(secs, self.deadline - time.monotonic())))
        except asyncio.TimeoutError:
            pass

    def summary(self) -> dict:
        life = self.lifetimes
        return {"counts": dict(self.counts), "peak_open": self.peak_open, "open_at_end": self.open_now,
                "lifetime_p50_s": round(percentile(life, 50), 2) if life else None,
                "lifetime_p99_s": round(percentile(life, 99), 2) if life else None,
                "lifetime_max_s": round(max(life), 2) if life else None}


async def _slowloris_conn(a: Attack, source: str) -> None:
    """Connect, then one byte of `a LOGIN ...` every few seconds; reconnect when closed."""
    loop = asyncio.get_running_loop()
    line = b"a LOGIN victim@" + DOMAIN.encode() + b" " + b"x" * 200  # never completed
    for _ in range(a.spec["max_reconnects"]):
        if not a.live():
            return
        try:
            s = await _connect(source, a.spec["port"], 10.0)
        except (OSError, asyncio.TimeoutError):
            a.counts["connect_failed"] += 1
            await a.sleep(1.0)
            continue
        started = time.monotonic()
        a.opened()
        a.counts["connected"] += 1
        got = b""
        how = "stopped"
        try:
            pos = 0
            while a.live():
                # Read whatever mailgate sent (greeting, BYE) without blocking for long.
                try:
                    chunk = await asyncio.wait_for(loop.sock_recv(s, 4096), a.spec["interval"])
                    if not chunk:
                        how = _classify_close(got)
                        break
                    got = (got + chunk)[-512:]
                    continue
                except asyncio.TimeoutError:
                    pass
                await loop.sock_sendall(s, line[pos % len(line):pos % len(line) + 1])
                pos += 1
        except (ConnectionError, OSError) as e:
            how = "reset" if isinstance(e, ConnectionResetError) else _classify_close(got)
        finally:
            s.close()
        a.closed(started, how)
        if how in ("refused_per_ip", "refused_busy"):
            await a.sleep(0.5)


async def _writer_conn(a: Attack, source: str) -> None:
    """Connect with a tiny receive buffer, send `a CAPABILITY` forever, never read."""
    loop = asyncio.get_running_loop()
    burst = b"a CAPABILITY\r\n" * 64
    for _ in range(a.spec["max_reconnects"]):
        if not a.live():
            return
        try:
            s = await _connect(source, a.spec["port"], 10.0, rcvbuf=2048)
        except (OSError, asyncio.TimeoutError):
            a.counts["connect_failed"] += 1
            await a.sleep(1.0)
            continue
        started = time.monotonic()
        a.opened()
        a.counts["connected"] += 1
        how = "stopped"
        sent = 0
        try:
            while a.live():
                # Blocks (asynchronously) once mailgate stops reading; bounded by the deadline.
                await asyncio.wait_for(loop.sock_sendall(s, burst),
                                       max(0.1, min(5.0, a.deadline - time.monotonic())))
                sent += len(burst)
                await asyncio.sleep(0.01)
        except asyncio.TimeoutError:
            how = "stopped" if not a.live() else "send_blocked"
            if how == "send_blocked":
                # Still blocked: wait for mailgate to close it (an error) or our end.
                how = await _wait_closed(a, s, loop)
        except ConnectionResetError:
            how = "reset"
        except (BrokenPipeError, OSError):
            how = "closed"
        finally:
            s.close()
        a.counts["bytes_sent"] += sent
        a.closed(started, how)


async def _wait_closed(a: Attack, s: socket.socket, loop) -> str:
    """A non-reading writer whose send is blocked: poll for the peer's close without reading."""
    while a.live():
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            return "reset"
        try:
            await asyncio.wait_for(loop.sock_sendall(s, b"a CAPABILITY\r\n"), 1.0)
        except asyncio.TimeoutError:
            continue
        except ConnectionResetError:
            return "reset"
        except OSError:
            return "closed"
    return "stopped"


async def _flood_worker(a: Attack, index: int) -> None:
    """Short connections sending an HTTP request, one after another."""
    loop = asyncio.get_running_loop()
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    sources = a.spec["sources"]
    for n in range(a.spec["max_requests_per_worker"]):
        if not a.live():
            return
        source = sources[(index + n) % len(sources)]
        try:
            s = await _connect(source, a.spec["port"], 5.0)
        except (OSError, asyncio.TimeoutError):
            a.counts["connect_failed"] += 1
            await a.sleep(0.1)
            continue
        started = time.monotonic()
        a.opened()
        a.counts["connected"] += 1
        how = "timeout"
        got = b""
        try:
            await loop.sock_sendall(s, request)
            end = time.monotonic() + a.spec["read_timeout"]
            while time.monotonic() < end:
                chunk = await asyncio.wait_for(loop.sock_recv(s, 4096), max(0.01, end - time.monotonic()))
                if not chunk:
                    how = "closed_by_mailgate" if b"BAD" in got or b"BYE" in got else _classify_close(got)
                    break
                got = (got + chunk)[-1024:]
        except asyncio.TimeoutError:
            how = "timeout"
        except ConnectionResetError:
            how = "reset"
        except OSError:
            how = "error"
        finally:
            s.close()
        if b"Too many connections" in got:
            how = "refused_per_ip"
        a.closed(started, how)


async def _run_attack(role: str, spec: dict) -> dict:
    a = Attack(spec)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, a.stop.set)
    tasks = []
    ramp_started = time.monotonic()
    if role == "flood":
        tasks = [asyncio.create_task(_flood_worker(a, i)) for i in range(spec["concurrency"])]
    else:
        conn = _slowloris_conn if role == "slowloris" else _writer_conn
        sources = spec["sources"]
        per_batch = max(1, spec["ramp_per_s"] // 20)
        for i in range(spec["connections"]):
            if not a.live():
                break
            tasks.append(asyncio.create_task(conn(a, sources[i % len(sources)])))
            if (i + 1) % per_batch == 0:
                await asyncio.sleep(0.05)
    # Ramped: tell the driver (it starts the legitimate clients once every attacker is up).
    ramp = {"ramp_s": round(time.monotonic() - ramp_started, 2)}
    for _ in range(400):  # wait (at most 20 s) until the connections are open
        if role == "flood" or a.open_now >= 0.95 * spec.get("connections", 0) or not a.live():
            break
        await asyncio.sleep(0.05)
    ramp["open_when_ramped"] = a.open_now
    Path(spec["ready_file"]).write_text(json.dumps(ramp))
    open_samples = []
    while a.live():
        open_samples.append(a.open_now)
        await a.sleep(1.0)
    a.stop.set()
    pending = (await asyncio.wait(tasks, timeout=15))[1] if tasks else set()
    for t in pending:
        t.cancel()
    out = a.summary()
    out.update(ramp)
    out["open_min"] = min(open_samples) if open_samples else None
    out["open_median"] = statistics.median(open_samples) if open_samples else None
    out["run_s"] = round(time.monotonic() - ramp_started, 2)
    out["tasks_cancelled"] = len(pending)
    return out


def cmd_role(args: argparse.Namespace) -> int:
    spec = json.loads(args.spec)
    spec["nofile"] = raise_nofile()
    if args.name == "legit":
        out = role_legit(spec)
    else:
        out = asyncio.run(_run_attack(args.name, spec))
    out["role"] = args.name
    out["nofile"] = spec["nofile"]
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = round(ru.ru_utime + ru.ru_stime, 2)
    Path(spec["out"]).write_text(json.dumps(out))
    return 0


# --- the driver -------------------------------------------------------------------------------

def read_proc(pid: int) -> tuple[int | None, int | None, int | None]:
    """(VmRSS KiB, utime+stime ticks, open fds) of pid; None where unreadable."""
    rss = ticks = fds = None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        stat = Path(f"/proc/{pid}/stat").read_text()
        rest = stat[stat.rfind(")") + 2:].split()
        ticks = int(rest[11]) + int(rest[12])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError, IndexError):
        pass
    return rss, ticks, fds


def _ticks_with_children(pid: int) -> int:
    """utime+stime+cutime+cstime of pid (reaped children included), 0 if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        rest = stat[stat.rfind(")") + 2:].split()
        return sum(int(x) for x in rest[11:15])
    except (OSError, ValueError, IndexError):
        return 0


def machine_busy_ticks() -> int:
    """All CPUs' busy time (everything but idle and iowait) from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def listen_overflows() -> int:
    """The kernel's TcpExt ListenOverflows (machine-wide): SYNs dropped at a full accept queue."""
    lines = [l.split() for l in Path("/proc/net/netstat").read_text().splitlines() if l.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1])).get("ListenOverflows", 0)) if len(lines) >= 2 else 0


def cpu_snapshot(mg_pid: int, dovecot_pids: list[int]) -> dict:
    return {"machine": machine_busy_ticks(), "mailgate": _ticks_with_children(mg_pid),
            "dovecot": sum(_ticks_with_children(p) for p in dovecot_pids), "t": time.monotonic(),
            "listen_overflows": listen_overflows()}


def cpu_window(a: dict, b: dict, hz: int) -> dict:
    return {"wall_s": round(b["t"] - a["t"], 1), "listen_overflows": b["listen_overflows"] - a["listen_overflows"],
            **{k: round((b[k] - a[k]) / hz, 1) for k in ("machine", "mailgate", "dovecot")}}


class Sampler(threading.Thread):
    """Samples mailgate's RSS, CPU ticks and fds every 0.25 s, labelled by phase."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.phase = "start"
        self.samples: list[dict] = []
        self.halt = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.halt.wait(0.25):
            rss, ticks, fds = read_proc(self.pid)
            if rss is None:
                continue
            self.samples.append({"t": round(time.monotonic() - self.t0, 2), "phase": self.phase,
                                 "rss_kib": rss, "ticks": ticks, "fds": fds})

    def of(self, phase: str) -> list[dict]:
        return [s for s in self.samples if s["phase"] == phase]


def metrics(admin_port: int) -> dict[str, float]:
    """mailgate's /metrics as {series: value} (comments dropped)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{admin_port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def metric_delta(before: dict, after: dict, prefix: str) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in sorted(after)
            if k.startswith(prefix) and after[k] - before.get(k, 0.0)}


def metric_sum(m: dict, prefix: str) -> float:
    return sum(v for k, v in m.items() if k.startswith(prefix))


def wait_ready(admin_port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mailgate exited with {proc.returncode} at startup")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{admin_port}/status", timeout=1) as r:
                status = json.loads(r.read())
            backends = status.get("backends", [])
            if isinstance(backends, dict):
                backends = list(backends.values())
            if backends and all(b.get("state") == "up" for b in backends):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError("mailgate's backend did not come up")


class Children:
    """Child processes of the driver, recorded in a PID file for the shell's trap."""

    def __init__(self, pid_file: Path):
        self.pid_file = pid_file
        self.procs: list[subprocess.Popen] = []

    def spawn(self, argv: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        with open(self.pid_file, "a") as f:
            f.write(f"{p.pid}\n")
        return p

    def end(self, p: subprocess.Popen, timeout: float = 10.0) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)

    def end_all(self) -> None:
        for p in self.procs:
            try:
                self.end(p, timeout=3.0)
            except (OSError, subprocess.TimeoutExpired):
                pass


def role_proc(children: Children, work: Path, name: str, spec: dict, tag: str) -> tuple[subprocess.Popen, Path]:
    out = work / f"{tag}.json"
    spec = dict(spec, out=str(out))
    err = open(work / f"{tag}.err", "wb")
    p = children.spawn([sys.executable, str(Path(__file__).resolve()), "role", name,
                        "--spec", json.dumps(spec)], stdout=err, stderr=subprocess.STDOUT)
    err.close()
    return p, out


def run_legit(children: Children, work: Path, tag: str, a: argparse.Namespace, port: int) -> dict:
    """100 legitimate clients in 4 processes; merged results."""
    users = [f"legit{i:03d}@{DOMAIN}" for i in range(a.legit_clients)]
    per = -(-len(users) // a.legit_procs)
    procs = []
    for k in range(a.legit_procs):
        chunk = users[k * per:(k + 1) * per]
        if not chunk:
            continue
        # Every process spreads its threads over all legitimate source addresses.
        spec = {"port": port, "users": chunk, "sources": LEGIT_SOURCES, "secs": a.legit_secs,
                "max_iterations": 100000, "timeout": 30.0, "think": a.think}
        procs.append(role_proc(children, work, "legit", spec, f"{tag}-legit{k}"))
    merged = {"latencies_ms": [], "pre_login_ms": [], "cpu_s": 0.0, "ok": 0, "failed": 0, "failures": Counter(), "first_errors": [],
              "threads_stuck": 0}
    for p, out in procs:
        try:
            p.wait(timeout=a.legit_secs + 60)
        except subprocess.TimeoutExpired:
            children.end(p)
        try:
            r = json.loads(out.read_text())
        except (OSError, ValueError):
            merged["failed"] += 1
            merged["first_errors"].append(f"legit process {out.name} left no result")
            continue
        merged["latencies_ms"] += r["latencies_ms"]
        merged["pre_login_ms"] += r["pre_login_ms"]
        merged["cpu_s"] = round(merged["cpu_s"] + r["cpu_s"], 2)
        merged["ok"] += r["ok"]
        merged["failed"] += r["failed"]
        merged["failures"].update(r["failures"])
        merged["first_errors"] += r["first_errors"][:2]
        merged["threads_stuck"] += r["threads_stuck"]
    lat = merged.pop("latencies_ms")
    pre = merged.pop("pre_login_ms")
    for p_ in (50, 99):
        v = percentile(pre, p_)
        merged[f"pre_login_p{p_}_ms"] = round(v, 1) if v is not None else None
    merged["failures"] = dict(merged["failures"])
    merged["logins_per_s"] = round(merged["ok"] / a.legit_secs, 1)
    for p_ in (50, 90, 99):
        v = percentile(lat, p_)
        merged[f"p{p_}_ms"] = round(v, 1) if v is not None else None
    merged["max_ms"] = round(max(lat), 1) if lat else None
    # Logins slower than a SYN retransmission (1 s): a connect that waited on a full queue.
    merged["over_1s"] = sum(1 for x in lat if x >= 1000)
    merged["over_3s"] = sum(1 for x in lat if x >= 3000)
    merged["latencies_ms"] = sorted(round(x, 1) for x in lat)
    return merged


def count_log(log_path: Path, since: int, until: int | None = None) -> tuple[dict, int]:
    """Outcomes of 'session closed' events in mailgate's JSON log between byte offsets,
    by client kind: {kind: {outcome: n}}; and lines that were not JSON."""
    by: dict[str, Counter] = {}
    odd = 0
    with open(log_path, "rb") as f:
        f.seek(since)
        data = f.read() if until is None else f.read(max(0, until - since))
    for raw in data.splitlines():
        try:
            ev = json.loads(raw)
        except ValueError:
            odd += 1
            continue
        fields = ev.get("fields", ev)
        if fields.get("message") != "session closed":
            continue
        client = str(fields.get("client", ""))
        ip = client.rsplit(":", 1)[0].strip("[]")
        by.setdefault(kind_of(ip), Counter())[str(fields.get("outcome"))] += 1
    return {k: dict(v) for k, v in sorted(by.items())}, odd


def write_configs(work: Path, a: argparse.Namespace, ports: dict) -> None:
    (work / "probe.secret").write_text(PROBE_PASSWORD)
    limits = {"preauth_timeout": a.preauth_timeout, "max_sessions_per_ip": a.max_per_ip}
    config = (
        "# Written by scripts/bench_attack.py\n"
        "listen:\n"
        f"  imap: {HOST}:{ports['mg_imap']}\n"
        f"  admin: {HOST}:{ports['mg_admin']}\n"
        "tls:\n  cert: cert.pem\n  key: key.pem\n  require_tls_for_login: false\n"
        "routing_file: routing.yaml\n"
        "log:\n  level: info\n  format: json\n"
        "limits:\n" + "".join(f"  {k}: {v}\n" for k, v in limits.items()) +
        "shutdown_grace: 1s\n"
    )
    routing = (
        "# Written by scripts/bench_attack.py\n"
        "backends:\n"
        "  dovecot:\n"
        f"    host: {HOST}\n"
        f"    imap_port: {ports['dovecot_imap']}\n"
        "    tls: none\n"
        "    max_sessions: 1000\n"
        "    forward_client: id\n"
        "    probe:\n"
        f"      user: {PROBE_USER}\n"
        f"      password_file: {work / 'probe.secret'}\n"
        "domains:\n"
        f"  {DOMAIN}: dovecot\n"
    )
    (work / "mailgate.yaml").write_text(config)
    (work / "routing.yaml").write_text(routing)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-keyout", str(work / "key.pem"), "-out", str(work / "cert.pem"),
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)


def rss_stats(samples: list[dict]) -> dict:
    if not samples:
        return {}
    rss = [s["rss_kib"] for s in samples]
    return {"first_kib": rss[0], "last_kib": rss[-1], "peak_kib": max(rss), "min_kib": min(rss),
            "peak_fds": max(s["fds"] or 0 for s in samples)}


def cpu_s(samples: list[dict], hz: int) -> float | None:
    if len(samples) < 2:
        return None
    return round((samples[-1]["ticks"] - samples[0]["ticks"]) / hz, 2)


def cmd_run(a: argparse.Namespace) -> int:
    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    from dovecot import Dovecot  # noqa: E402  (the e2e harness, used as a library)

    def _terminate(signum, frame):  # the shell's trap: run the finally blocks, then exit
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    raise_nofile()
    work = Path(a.work).resolve()
    results_dir = Path(a.results).resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    base = a.port_base
    ports = {"dovecot_imap": base + 143, "mg_imap": base + 243, "mg_admin": base + 944}
    hz = os.sysconf("SC_CLK_TCK")
    children = Children(work / "children.pids")
    mg = None
    sampler = None
    log_path = work / "mailgate.log"
    result: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                                "loadavg_at_start": os.getloadavg()},
                    "config": {"preauth_timeout": a.preauth_timeout, "max_sessions_per_ip": a.max_per_ip,
                               "legit_clients": a.legit_clients, "legit_secs": a.legit_secs,
                               "think_s": a.think, "slowloris": a.slowloris, "writers": a.writers,
                               "flood_concurrency": a.flood_concurrency, "ports": ports}}
    users = {f"legit{i:03d}@{DOMAIN}": PASSWORD for i in range(a.legit_clients)}
    users[PROBE_USER] = PROBE_PASSWORD
    dovecot = Dovecot(name="bench", root=work / "dovecot", users=users, imap_port=ports["dovecot_imap"],
                      imap_process_limit=1024)
    try:
        print(f"[bench-attack] starting Dovecot on {HOST}:{ports['dovecot_imap']}", file=sys.stderr)
        dovecot.start()
        for user in users:
            if user != PROBE_USER:
                dovecot.seed(user, "hello", "One message so that SELECT has something to count.\r\n")
        write_configs(work, a, ports)
        print(f"[bench-attack] starting mailgate ({a.bin}) on {HOST}:{ports['mg_imap']}", file=sys.stderr)
        with open(log_path, "wb") as out:
            mg = children.spawn([str(Path(a.bin).resolve()), "run", "-c", str(work / "mailgate.yaml")], cwd=work,
                                stdout=out, stderr=subprocess.STDOUT)
        wait_ready(ports["mg_admin"], mg, 30)
        result["mailgate_nofile"] = Path(f"/proc/{mg.pid}/limits").read_text().split("Max open files")[1].split()[0]
        sampler = Sampler(mg.pid)
        sampler.start()
        time.sleep(1.0)

        # 1. baseline
        sampler.phase = "baseline"
        print(f"[bench-attack] baseline: {a.legit_clients} legitimate clients for {a.legit_secs}s", file=sys.stderr)
        m0 = metrics(ports["mg_admin"])
        log0 = log_path.stat().st_size
        c0 = cpu_snapshot(mg.pid, dovecot.pids())
        result["baseline"] = run_legit(children, work, "baseline", a, ports["mg_imap"])
        c1 = cpu_snapshot(mg.pid, dovecot.pids())
        m1 = metrics(ports["mg_admin"])
        log1 = log_path.stat().st_size
        result["baseline"]["mailgate_cpu_s"] = cpu_s(sampler.of("baseline"), hz)
        result["baseline"]["sessions"], _ = count_log(log_path, log0, log1)
        sampler.phase = "quiet"
        time.sleep(3.0)

        # 2. attack
        sampler.phase = "ramp"
        attack_secs = a.ramp_max + a.legit_secs + 5
        common = {"port": ports["mg_imap"], "secs": attack_secs}
        attackers = {}
        print(f"[bench-attack] attack: {a.slowloris} slowloris, {a.writers} non-reading writers, "
              f"HTTP flood ({a.flood_concurrency} at once)", file=sys.stderr)
        m2 = metrics(ports["mg_admin"])
        log2 = log_path.stat().st_size
        c2 = cpu_snapshot(mg.pid, dovecot.pids())
        ready = {}
        for name, spec in (
            ("slowloris", {**common, "connections": a.slowloris, "sources": SLOWLORIS_SOURCES,
                           "interval": a.slowloris_interval, "ramp_per_s": 1000, "max_reconnects": 1000}),
            ("writers", {**common, "connections": a.writers, "sources": WRITER_SOURCES,
                         "ramp_per_s": 1000, "max_reconnects": 1000}),
            ("flood", {**common, "concurrency": a.flood_concurrency, "sources": FLOOD_SOURCES,
                       "read_timeout": 5.0, "max_requests_per_worker": 1_000_000}),
        ):
            spec["ready_file"] = str(work / f"{name}.ready")
            ready[name] = Path(spec["ready_file"])
            attackers[name] = role_proc(children, work, name, spec, f"attack-{name}")
        deadline = time.monotonic() + a.ramp_max
        while time.monotonic() < deadline and not all(p.exists() for p in ready.values()):
            time.sleep(0.1)
        result["ramp"] = {n: json.loads(p.read_text()) if p.exists() else None for n, p in ready.items()}
        result["ramp"]["seconds"] = round(a.ramp_max - (deadline - time.monotonic()), 1)
        sampler.phase = "attack"
        m3 = metrics(ports["mg_admin"])
        log3 = log_path.stat().st_size
        c3 = cpu_snapshot(mg.pid, dovecot.pids())
        result["attack_sessions_active_at_start"] = metric_sum(m3, "mailgate_sessions_active")
        print(f"[bench-attack] attackers up ({result['ramp']}); legitimate clients for {a.legit_secs}s",
              file=sys.stderr)
        result["attack"] = run_legit(children, work, "attack", a, ports["mg_imap"])
        c4 = cpu_snapshot(mg.pid, dovecot.pids())
        m4 = metrics(ports["mg_admin"])
        log4 = log_path.stat().st_size
        result["attack"]["mailgate_cpu_s"] = cpu_s(sampler.of("attack"), hz)
        result["attack"]["sessions"], _ = count_log(log_path, log3, log4)
        result["attack_sessions_active_at_end"] = metric_sum(m4, "mailgate_sessions_active")

        # 3. after: stop the attackers, watch mailgate drain
        sampler.phase = "after"
        for name, (p, _) in attackers.items():
            children.end(p, timeout=30.0)
        c5 = cpu_snapshot(mg.pid, dovecot.pids())
        result["attackers"] = {}
        for name, (p, out) in attackers.items():
            try:
                result["attackers"][name] = json.loads(out.read_text())
            except (OSError, ValueError):
                result["attackers"][name] = {"error": "no result", "exit": p.returncode}
        drain_deadline = time.monotonic() + a.preauth_timeout_s + 10
        while time.monotonic() < drain_deadline:
            if metric_sum(metrics(ports["mg_admin"]), "mailgate_sessions_active") == 0:
                break
            time.sleep(0.5)
        time.sleep(3.0)
        m5 = metrics(ports["mg_admin"])
        log5 = log_path.stat().st_size
        sampler.phase = "end"
        time.sleep(0.6)
        sampler.halt.set()
        sampler.join(timeout=2)

        result["refused_during_attack"] = metric_delta(m2, m5, "mailgate_connections_refused_total")
        result["refused_family_exported"] = any(k.startswith("mailgate_connections_refused_total") for k in m5)
        result["refused_during_baseline"] = metric_delta(m0, m1, "mailgate_connections_refused_total")
        result["cpu_windows"] = {"baseline": cpu_window(c0, c1, hz), "attack_legit": cpu_window(c3, c4, hz),
                                 "attack_whole": cpu_window(c2, c5, hz)}
        for ph, (x, y) in (("baseline", (m0, m1)), ("attack", (m3, m4))):
            n = metric_sum(y, "mailgate_backend_login_duration_seconds_count") - \
                metric_sum(x, "mailgate_backend_login_duration_seconds_count")
            t = metric_sum(y, "mailgate_backend_login_duration_seconds_sum") - \
                metric_sum(x, "mailgate_backend_login_duration_seconds_sum")
            result[ph]["backend_login_mean_ms"] = round(t / n * 1000, 1) if n else None
        result["log_lines_dropped"] = metric_delta(m0, m5, "mailgate_log_lines_dropped_total")
        result["logins_during_attack"] = metric_delta(m3, m4, "mailgate_logins_total")
        result["sessions_whole_attack"], odd = count_log(log_path, log2, log5)
        result["log_lines_not_json"] = odd
        result["rss"] = {ph: rss_stats(sampler.of(ph)) for ph in ("baseline", "quiet", "ramp", "attack", "after", "end")}
        result["cpu_s"] = {ph: cpu_s(sampler.of(ph), hz) for ph in ("baseline", "ramp", "attack", "after")}
        # RSS over the attack in thirds: does it grow with time, or hold?
        att = sampler.of("attack")
        if att:
            k = max(1, len(att) // 3)
            result["rss_attack_thirds_kib"] = [max(s["rss_kib"] for s in att[i * k:(i + 1) * k] or att[-1:])
                                               for i in range(3)]
        result["samples"] = sampler.samples
        result["machine"]["loadavg_at_end"] = os.getloadavg()
        (results_dir / "results.json").write_text(json.dumps(result, indent=1))
        report = render(result)
        (results_dir / "report.md").write_text(report)
        print(report)
        return 0
    finally:
        if sampler is not None:
            sampler.halt.set()
        children.end_all()
        dovecot.stop()
        if log_path.exists():
            try:
                tail = log_path.read_bytes()[-20000:]
                (results_dir / "mailgate.log.tail").write_bytes(tail)
            except OSError:
                pass


def _fmt(v, unit="") -> str:
    return "-" if v is None else f"{v}{unit}"


def render(r: dict) -> str:
    b, at = r["baseline"], r["attack"]
    ratio = (at["p99_ms"] / b["p99_ms"]) if b.get("p99_ms") and at.get("p99_ms") else None
    ratio50 = (at["p50_ms"] / b["p50_ms"]) if b.get("p50_ms") and at.get("p50_ms") else None
    rss = r["rss"]
    lines = [
        f"Attack benchmark, {r['date']}; {r['machine']['cpus']} CPUs, kernel {r['machine']['kernel']}, "
        f"load average at start {', '.join(f'{x:.2f}' for x in r['machine']['loadavg_at_start'])}",
        "",
        "| legitimate clients | unloaded | under attack | ratio |",
        "|---|---|---|---|",
        f"| logins ok / failed | {b['ok']} / {b['failed']} | {at['ok']} / {at['failed']} | |",
        f"| logins/s | {b['logins_per_s']} | {at['logins_per_s']} | {at['logins_per_s'] / b['logins_per_s']:.2f} |"
        if b["logins_per_s"] else "| logins/s | 0 | | |",
        f"| login p50 ms | {_fmt(b['p50_ms'])} | {_fmt(at['p50_ms'])} | {_fmt(ratio50 and round(ratio50, 2))} |",
        f"| login p90 ms | {_fmt(b['p90_ms'])} | {_fmt(at['p90_ms'])} | |",
        f"| login p99 ms | {_fmt(b['p99_ms'])} | {_fmt(at['p99_ms'])} | **{_fmt(ratio and round(ratio, 2))}** |",
        f"| login max ms | {_fmt(b['max_ms'])} | {_fmt(at['max_ms'])} | |",
        f"| logins >= 1 s / >= 3 s | {b['over_1s']} / {b['over_3s']} | {at['over_1s']} / {at['over_3s']} | |",
        f"| of which connect + greeting + CAPABILITY, p50 / p99 ms | {_fmt(b['pre_login_p50_ms'])} / "
        f"{_fmt(b['pre_login_p99_ms'])} | {_fmt(at['pre_login_p50_ms'])} / {_fmt(at['pre_login_p99_ms'])} | |",
        f"| backend login as mailgate timed it, mean ms | {_fmt(b.get('backend_login_mean_ms'))} | "
        f"{_fmt(at.get('backend_login_mean_ms'))} | |",
        f"| mailgate CPU s (run of {r['config']['legit_secs']} s) | {_fmt(b['mailgate_cpu_s'])} | {_fmt(at['mailgate_cpu_s'])} | |",
        "",
        "| CPU seconds in the window | wall s | whole machine (2 CPUs) | mailgate | Dovecot | legitimate clients | attackers | rest (other work, kernel) | SYNs dropped (ListenOverflows) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cw = r["cpu_windows"]
    att_cpu = sum((x.get("cpu_s") or 0) for x in r["attackers"].values())
    for label, key, legit, attackers in (("baseline", "baseline", b["cpu_s"], "-"),
                                         ("attack (ramp to stop)", "attack_whole", at["cpu_s"], round(att_cpu, 1))):
        w = cw[key]
        rest = w["machine"] - w["mailgate"] - w["dovecot"] - legit - (attackers if attackers != "-" else 0)
        lines.append(f"| {label} | {w['wall_s']} | {w['machine']} | {w['mailgate']} | {w['dovecot']} | {legit} | "
                     f"{attackers} | {rest:.1f} | {w['listen_overflows']} |")
    lines += [
        "",
        "| mailgate RSS (VmRSS) | KiB |",
        "|---|---|",
        f"| after the baseline, before the attack | {rss['quiet'].get('last_kib')} |",
        f"| peak during the attack | {max(rss['ramp'].get('peak_kib', 0), rss['attack'].get('peak_kib', 0))} |",
        f"| attack, peak in each third | {' / '.join(str(x) for x in r.get('rss_attack_thirds_kib', []))} |",
        f"| after (attackers gone, sessions drained) | {rss['end'].get('last_kib') or rss['after'].get('last_kib')} |",
        f"| peak open descriptors | {max(rss['ramp'].get('peak_fds', 0), rss['attack'].get('peak_fds', 0))} |",
        "",
        "| attacker | connections made | open (median / peak) | lifetime p50 / max s (not counting our stop) | how they ended |",
        "|---|---|---|---|---|",
    ]
    for name in ("slowloris", "writers", "flood"):
        x = r["attackers"].get(name, {})
        c = dict(x.get("counts", {}))
        made = c.pop("connected", 0)
        c.pop("bytes_sent", None)
        lines.append(f"| {name} | {made} | {_fmt(x.get('open_median'))} / {_fmt(x.get('peak_open'))} | "
                     f"{_fmt(x.get('lifetime_p50_s'))} / {_fmt(x.get('lifetime_max_s'))} | "
                     f"{', '.join(f'{k} {v}' for k, v in sorted(c.items()))} |")
    lines += ["", "mailgate's session log, whole attack (outcome counts by client kind):", ""]
    for kind, outcomes in r["sessions_whole_attack"].items():
        lines.append(f"- {kind}: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    lines += ["", "mailgate_connections_refused_total during the attack: "
              + (", ".join(f"{k.split('{', 1)[-1].rstrip('}')} {int(v)}" for k, v in r["refused_during_attack"].items())
                 or ("none" if r.get("refused_family_exported") else "not exported by this mailgate "
                     "(the session log's per_ip_limit outcomes above count the refusals)")),
              f"log lines dropped: {sum(r['log_lines_dropped'].values()) if r['log_lines_dropped'] else 0}",
              f"legitimate failures: baseline {b['failures']} {b['first_errors'][:2]}; "
              f"attack {at['failures']} {at['first_errors'][:2]}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the whole benchmark")
    run.add_argument("--work", required=True, help="scratch directory (configs, logs, Dovecot)")
    run.add_argument("--results", default=str(REPO / "target" / "bench-attack"))
    run.add_argument("--bin", default=str(REPO / "target" / "release" / "mailgate"))
    run.add_argument("--port-base", type=int, default=23000)
    run.add_argument("--legit-clients", type=int, default=100)
    run.add_argument("--legit-procs", type=int, default=4)
    run.add_argument("--legit-secs", type=float, default=20.0)
    run.add_argument("--think", type=float, default=0.0, help="pause between a client's sessions, s")
    run.add_argument("--slowloris", type=int, default=3000)
    run.add_argument("--slowloris-interval", type=float, default=3.0)
    run.add_argument("--writers", type=int, default=1000)
    run.add_argument("--flood-concurrency", type=int, default=50)
    run.add_argument("--ramp-max", type=float, default=20.0)
    run.add_argument("--preauth-timeout", default="10s")
    run.add_argument("--max-per-ip", type=int, default=50)
    run.set_defaults(func=cmd_run)
    role = sub.add_parser("role", help="one load process (started by run)")
    role.add_argument("name", choices=["legit", "slowloris", "writers", "flood"])
    role.add_argument("--spec", required=True)
    role.set_defaults(func=cmd_role)
    args = p.parse_args(argv)
    if args.command == "run":
        m = re.fullmatch(r"(\d+)s", args.preauth_timeout)
        if not m:
            p.error("--preauth-timeout takes whole seconds, e.g. 10s")
        args.preauth_timeout_s = int(m.group(1))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
