"""The reconnect storm and the worker-thread scaling cells of `make bench-peers`
(scripts/bench_peers.py calls run_storm / run_scaling with itself as `bp`).

Storm: N sessions (PEERS_STORM_SESSIONS, 8000) log in through the proxy to their own fake
backend, from PEERS_STORM_SOURCES loopback addresses 127.0.0.2.. (mailgate keeps its default
limits.max_sessions_per_ip of 100, so 8000 sessions need at least 80 addresses; its one
backend may go down: health.max_auto_down_share 1.0). The fake is
killed (SIGKILL: every spliced session ends), mailgate is waited for to mark it down, the
fake is started again, and at that moment every client reconnects at once. A client whose
login does not succeed (NO [UNAVAILABLE], BYE, reset, timeout) retries after 0.5-1.5 s, as
a mail client's back-off would. Reported: wall time from the restart to the last session
logged in again, the proxy's CPU over it, what the clients were refused and why, mailgate's
own refusal counters (/metrics), and mailgate's admissions per second after the recovery
(slow start: the admitted share of attempts ramps from 10 % to 100 % over health.slow_start),
the machine-wide TcpExtListenOverflows delta (nstat), the fake's accept-queue length sampled
from /proc/net/tcp, and whether the storm took the backend down again.
PEERS_STORM_MAX_LOGINS_IN_FLIGHT gives the storm backend a max_logins_in_flight.
The client is Python asyncio in the driver's process; its CPU is reported beside.

Scaling: the plain-login cell through a fresh mailgate pinned with `taskset -c 0` and with
`taskset -c 0,1` (tokio sizes its worker pool by the CPU affinity; the worker threads are
counted from /proc), plain and implicit TLS (RSA-2048, no resumption: there mailgate's
share of the CPU is larger than the load generator's, so the load generator is less the
bottleneck). The load generator and the fake are not pinned and share the two cores.
"""

import asyncio
import os
import random
import signal
import threading
import urllib.request
import subprocess
import time
from pathlib import Path

STORM_N = int(os.environ.get("PEERS_STORM_SESSIONS", "8000"))
SOURCES = int(os.environ.get("PEERS_STORM_SOURCES", "100"))
SLOW_START = os.environ.get("PEERS_STORM_SLOW_START", "10s")
DEADLINE = float(os.environ.get("PEERS_STORM_DEADLINE", "240"))
# The storm backend's max_logins_in_flight in mailgate's routing file (none by default).
MAX_LOGINS_IN_FLIGHT = os.environ.get("PEERS_STORM_MAX_LOGINS_IN_FLIGHT", "")
STORM_DOMAIN = "storm.example.com"


def storm_ports(P, base):
    P.update({"fakestorm": base + 102, "mgst_imap": base + 220, "mgst_admin": base + 222,
              "ngst_imap": base + 320})


def write_storm_configs(bp, w):
    P = bp.P
    Path(f"{w}/mailgate-storm.yaml").write_text(f"""listen:
  imap: 127.0.0.1:{P['mgst_imap']}
  admin: 127.0.0.1:{P['mgst_admin']}
tls:
  cert: cert.pem
  key: key.pem
  require_tls_for_login: false
routing_file: routing-storm.yaml
log:
  level: info
  format: text
health:
  interval: 1s
  slow_start: {SLOW_START}
  max_auto_down_share: 1.0
limits:
  idle_timeout: 30m
shutdown_grace: 1s
""")
    Path(f"{w}/routing-storm.yaml").write_text(f"""backends:
  storm:
    host: 127.0.0.1
    imap_port: {P['fakestorm']}
    forward_client: id
""" + (f"    max_logins_in_flight: {MAX_LOGINS_IN_FLIGHT}\n" if MAX_LOGINS_IN_FLIGHT else "") + f"""domains:
  {STORM_DOMAIN}: storm
""")
    ng = Path(f"{w}/nginx.conf").read_text()
    ng = ng.replace("worker_rlimit_nofile 20000;", "worker_rlimit_nofile 19500;")
    ng = ng.replace("worker_connections 10000;", "worker_connections 19000;")
    ng = ng.replace("nginx.pid", "nginx-storm.pid")
    start = ng.index("    server {")
    ng = ng[:start] + (f"    server {{ listen 127.0.0.1:{P['ngst_imap']} backlog=1024; "
                       "protocol imap; }\n}\n")
    Path(f"{w}/nginx-storm.conf").write_text(ng)


# --- metrics -------------------------------------------------------------------------------
async def scrape(port):
    return await asyncio.to_thread(scrape_sync, port)


def scrape_sync(port):
    """mailgate's /metrics as {(family, frozenset(labels)): value}."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read()
    except OSError:
        return {}
    out = {}
    for line in body.decode(errors="replace").splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, val = line.rpartition(" ")
        fam, _, labels = name.partition("{")
        lab = frozenset(tuple(kv.split("=", 1)) for kv in labels.rstrip("}").split(",") if "=" in kv)
        try:
            out[(fam, lab)] = float(val)
        except ValueError:
            pass
    return out


def msum(m, fam, **want):
    return sum(v for (f, lab), v in m.items() if f == fam
               and all((k, f'"{x}"') in lab for k, x in want.items()))


def by_label(m, fam, key):
    out = {}
    for (f, lab), v in m.items():
        if f == fam:
            k = dict(lab).get(key, "").strip('"')
            out[k] = out.get(k, 0) + v
    return out


# --- the clients ---------------------------------------------------------------------------
class Client:
    def __init__(self, i, port):
        self.i, self.port = i, port
        self.src = f"127.0.0.{2 + i % SOURCES}"
        self.user = f"user{i}@{STORM_DOMAIN}"
        self.writer = None

    async def login_once(self):
        """One connection and LOGIN: None when logged in (the connection kept), else why not."""
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", self.port, local_addr=(self.src, 0)), 10)
        except asyncio.TimeoutError:
            return "connect timeout"
        except OSError as e:
            return f"connect: {e.strerror or e}"
        try:
            greet = await asyncio.wait_for(r.readline(), 15)
            if not greet.startswith(b"* OK"):
                w.close()
                return "greeting: " + (greet[:40].decode(errors="replace").strip() or "EOF")
            w.write(f"a LOGIN {self.user} secret\r\n".encode())
            while True:
                line = await asyncio.wait_for(r.readline(), 30)
                if not line:
                    w.close()
                    return "EOF after LOGIN"
                if line.startswith(b"a OK"):
                    self.reader, self.writer = r, w
                    return None
                if line.startswith(b"a ") or line.startswith(b"* BYE"):
                    w.close()
                    words = line.decode(errors="replace").split()
                    return " ".join(words[1:3])  # "NO [UNAVAILABLE]", "BYE [UNAVAILABLE]"
        except asyncio.TimeoutError:
            w.close()
            return "login timeout"
        except OSError as e:
            w.close()
            return f"io: {e.strerror or e}"

    async def until_ok(self, deadline, fails):
        while time.monotonic() < deadline:
            why = await self.login_once()
            if why is None:
                return time.monotonic()
            fails[why] = fails.get(why, 0) + 1
            await asyncio.sleep(random.uniform(0.5, 1.5))
        return None

    async def wait_closed(self):
        try:
            while await self.reader.read(4096):
                pass
        except OSError:
            pass
        self.writer.close()


async def wait_for(pred, secs, step=0.25):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if await pred():
            return True
        await asyncio.sleep(step)
    return False


FAKES = []  # started fakes, stopped by run_storm whatever happens


def listen_overflows():
    """Machine-wide TcpExtListenOverflows (every listener, every user of the machine), or
    None without nstat."""
    try:
        out = subprocess.run(["nstat", "-asz", "TcpExtListenOverflows"], capture_output=True,
                             text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.startswith("TcpExtListenOverflows"):
            return int(line.split()[1])
    return None


def accept_queue(port):
    """The current accept-queue length of the IPv4 listener on `port` (/proc/net/tcp shows
    a listener's queued connections as its rx_queue), or None."""
    want = f":{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 4 and parts[1].endswith(want) and parts[3] == "0A":
                    return int(parts[4].split(":")[1], 16)
    except OSError:
        pass
    return None


def log_lines(proc):
    return Path(proc.log.name).read_text(errors="replace").splitlines()


def start_fake(bp, w):
    fp = bp.Proc("fakestorm", [str(bp.BIN / "mailgate-fake-backend"), "--imap",
                               f"127.0.0.1:{bp.P['fakestorm']}", "--name", "storm"],
                 f"{w}/fakestorm.log")
    FAKES.append(fp)
    bp.wait_port(fp, bp.P["fakestorm"])
    return fp


async def storm_once(bp, w, name, proc, port, admin):
    clients = [Client(i, port) for i in range(STORM_N)]
    fake = start_fake(bp, w)
    if admin:
        async def up():
            return msum(await scrape(admin), "mailgate_backend_up", backend="storm") == 1
        if not await wait_for(up, 30):
            raise RuntimeError("mailgate never saw the storm backend up")
    # 1. everyone logs in (256 at a time: this is not the storm yet)
    sem = asyncio.Semaphore(256)
    fails0 = {}
    t = time.monotonic()

    async def first(c):
        async with sem:
            return await c.until_ok(time.monotonic() + 120, fails0)
    ok = await asyncio.gather(*(first(c) for c in clients))
    n_in = sum(1 for x in ok if x)
    bp.log(f"storm {name}: {n_in}/{STORM_N} logged in in {time.monotonic() - t:.1f} s"
           f" (failures {fails0 or 'none'})")
    # 2. the backend fails: every session ends
    waits = [asyncio.ensure_future(c.wait_closed()) for c in clients if c.writer]
    fake.p.send_signal(signal.SIGKILL)
    fake.p.wait()
    fake.log.close()
    await asyncio.wait_for(asyncio.gather(*waits), 60)
    if admin:
        async def down():
            return msum(await scrape(admin), "mailgate_backend_up", backend="storm") == 0
        if not await wait_for(down, 30):
            raise RuntimeError("mailgate never marked the storm backend down")
    else:
        await asyncio.sleep(3)
    m0 = await scrape(admin) if admin else {}
    cpu0, ct0 = proc.cpu_s(), os.times()
    ov0 = listen_overflows()
    n_log0 = len(log_lines(proc)) if admin else 0
    # 3. it recovers, and every client reconnects at once
    fake = start_fake(bp, w)
    t0 = time.monotonic()
    fails, series = {}, []
    stop = threading.Event()

    def sampler():  # a thread: the event loop is busy with the clients
        prev = m0
        while not stop.wait(1.0):
            m = scrape_sync(admin)
            ok_ = msum(m, "mailgate_logins_total", backend="storm", result="ok") - \
                msum(prev, "mailgate_logins_total", backend="storm", result="ok")
            ss = msum(m, "mailgate_refused_total", backend="storm", reason="slow_start") - \
                msum(prev, "mailgate_refused_total", backend="storm", reason="slow_start")
            dn = msum(m, "mailgate_refused_total", backend="storm", reason="down") - \
                msum(prev, "mailgate_refused_total", backend="storm", reason="down")
            series.append({"t": round(time.monotonic() - t0, 1), "admitted": int(ok_),
                           "refused_slow_start": int(ss), "refused_down": int(dn),
                           "share": round(ok_ / (ok_ + ss), 2) if ok_ + ss else None})
            prev = m
    queue = {"max": 0, "full_samples": 0, "samples": 0}

    def queue_sampler():  # every 20 ms: how full the fake's accept queue gets (backlog 128)
        while not stop.wait(0.02):
            n = accept_queue(bp.P["fakestorm"])
            if n is not None:
                queue["samples"] += 1
                queue["max"] = max(queue["max"], n)
                queue["full_samples"] += n >= 128
    samp = threading.Thread(target=sampler, daemon=True) if admin else None
    qsamp = threading.Thread(target=queue_sampler, daemon=True)
    qsamp.start()
    if samp:
        samp.start()
    done = await asyncio.gather(*(c.until_ok(t0 + DEADLINE, fails) for c in clients))
    await asyncio.sleep(1.5)  # the sampler's last second
    stop.set()
    qsamp.join(10)
    if samp:
        samp.join(10)
    cpu1, ct1 = proc.cpu_s(), os.times()
    ov1 = listen_overflows()
    times = [x - t0 for x in done if x]
    m1 = await scrape(admin) if admin else {}
    own = {}
    if admin:
        for k, v in by_label(m1, "mailgate_connections_refused_total", "reason").items():
            own[k] = int(v - by_label(m0, "mailgate_connections_refused_total", "reason").get(k, 0))
    refused, results = {}, {}
    if admin:
        for k, v in by_label(m1, "mailgate_logins_total", "result").items():
            d = int(v - by_label(m0, "mailgate_logins_total", "result").get(k, 0))
            if d:
                results[k] = d
        for k, v in by_label(m1, "mailgate_refused_total", "reason").items():
            d = int(v - by_label(m0, "mailgate_refused_total", "reason").get(k, 0))
            if d:
                refused[k] = d
    r = {"proxy": name, "cell": "storm", "sessions": STORM_N, "sources": SOURCES,
         "logged_in_before": n_in, "logged_in_again": len(times),
         "absorb_s": round(max(times), 2) if times else None,
         "p50_relogin_s": round(sorted(times)[len(times) // 2], 2) if times else None,
         "first_relogin_s": round(min(times), 2) if times else None,
         "cpu_s": round(cpu1 - cpu0, 2),
         "client_cpu_s": round((ct1.user + ct1.system) - (ct0.user + ct0.system), 2),
         "client_failures": fails, "own_refusals": own, "backend_refusals": refused,
         "login_results": results,
         "attempts": len(times) + sum(fails.values()),
         "fake_accept_queue": queue,
         "listen_overflows": ov1 - ov0 if ov0 is not None and ov1 is not None else None}
    if admin:
        r["slow_start"] = SLOW_START
        r["health_changes"] = [l.split("mailgate_health::view: ", 1)[-1].strip()[:160]
                               for l in Path(proc.log.name).read_text(errors="replace").splitlines()
                               if "backend health changed" in l][-6:]
        r["series"] = series
        # transitions into down after the restart (the storm taking the backend down again)
        after = log_lines(proc)[n_log0:]
        r["down_again"] = sum(1 for l in after if "backend health changed" in l
                              and ('to="down"' in l or "to=down" in l))
    for c in clients:
        if c.writer:
            c.writer.close()
    fake.stop()
    return r


def run_storm(bp, w, rows):
    for name, start, port, admin in (
            ("mailgate", lambda: start_storm_mailgate(bp, w), bp.P["mgst_imap"], bp.P["mgst_admin"]),
            ("nginx", lambda: start_storm_nginx(bp, w), bp.P["ngst_imap"], None)):
        if name not in bp.PROXIES:
            continue
        proc = start()
        try:
            r = asyncio.run(storm_once(bp, w, name, proc, port, admin))
        finally:
            proc.stop()
            while FAKES:
                f = FAKES.pop()
                if not f.log.closed:
                    f.stop()
        rows.append(r)
        bp.log(f"storm {name}: {r['logged_in_again']}/{STORM_N} again in {r['absorb_s']} s, "
               f"proxy CPU {r['cpu_s']} s, client failures {r['client_failures'] or 'none'}, "
               f"mailgate's own refusals {r['own_refusals'] or '-'}, "
               f"backend refusals {r['backend_refusals'] or '-'}, "
               f"TcpExtListenOverflows +{r['listen_overflows']}, down again {r.get('down_again', '-')}, "
               f"fake's accept queue {r['fake_accept_queue']}")
        for s in r.get("series", []):
            bp.log(f"  t={s['t']:>5} s admitted {s['admitted']:>5} refused slow_start "
                   f"{s['refused_slow_start']:>5} down {s['refused_down']:>5} share {s['share']}")


def start_storm_mailgate(bp, w):
    p = bp.Proc("mailgate-storm", [os.environ.get("PEERS_MAILGATE", str(bp.BIN / "mailgate")),
                                   "run", "-c", f"{w}/mailgate-storm.yaml"], f"{w}/log/mailgate-storm.log")
    bp.wait_port(p, bp.P["mgst_admin"])
    bp.wait_port(p, bp.P["mgst_imap"])
    return p


def start_storm_nginx(bp, w):
    p = bp.Proc("nginx-storm", ["nginx", "-e", f"{w}/nginx-error.log", "-c",
                                f"{w}/nginx-storm.conf"], f"{w}/nginx-storm.log")
    bp.wait_port(p, bp.P["ngst_imap"])
    return p


# --- scaling -------------------------------------------------------------------------------
def workers(proc):
    n = 0
    for t in os.listdir(f"/proc/{proc.p.pid}/task"):
        try:
            if Path(f"/proc/{proc.p.pid}/task/{t}/comm").read_text().startswith(("tokio-rt-worker", "tokio-runtime-w")):
                n += 1
        except OSError:
            pass
    return n


def ctxt_switches(proc):
    """Voluntary context switches of all the process's threads (a thread waiting on a
    contended lock sleeps in futex: one voluntary switch per wait)."""
    n = 0
    for t in os.listdir(f"/proc/{proc.p.pid}/task"):
        try:
            for line in Path(f"/proc/{proc.p.pid}/task/{t}/status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    n += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return n


def run_scaling(bp, w, rows):
    if "mailgate" not in bp.PROXIES or not shutil_which("taskset"):
        return
    runs = int(os.environ.get("PEERS_SCALING_RUNS", "2"))
    for k in range(runs):
        for (cpus, cell), (kind, tls) in ((c, t) for t in (("plain", "none"), ("implicit", "implicit"))
                                          for c in (("0", "scale-1"), ("0,1", "scale-2"))):
            p = bp.Proc("mailgate", ["taskset", "-c", cpus,
                                     os.environ.get("PEERS_MAILGATE", str(bp.BIN / "mailgate")),
                                     "run", "-c", f"{w}/mailgate.yaml"], f"{w}/log/mailgate-scale.log")
            try:
                bp.wait_port(p, bp.P["mg_admin"])
                bp.wait_port(p, bp.P["mg_imap"])
                port = bp.P["mg_imap"] if tls == "none" else bp.P["mg_imaps"]
                nw = workers(p)
                cs0 = ctxt_switches(p)
                t = time.monotonic()
                r = bp.measured(p, lambda: bp.load(
                    w, "logins", "--target", f"127.0.0.1:{port}", "--concurrency",
                    str(bp.CONC), "--duration", bp.DURATION, "--script", "noop",
                    *bp.tls_args(w, tls, False),
                    "--label", f"mailgate-{cell}"))
                wall = time.monotonic() - t
                cs = ctxt_switches(p) - cs0
            finally:
                p.stop()
            r.update(cpus=cpus, workers=nw, run=k, kind=kind,
                     vcsw_per_login=round(cs / r["logins"], 2) if r["logins"] else None,
                     cores_busy=round(r["cpu_s"] / wall, 2),
                     cpu_us_per_login=round(r["cpu_s"] * 1e6 / r["logins"], 1) if r["logins"] else None)
            rows.append({"proxy": "mailgate", "cell": cell, **r})
            bp.log(f"scaling {kind} taskset -c {cpus} ({nw} workers): {r['logins_per_s']} logins/s, "
                   f"{r['cpu_us_per_login']} µs CPU/login, {r['cores_busy']} cores busy, "
                   f"{r['vcsw_per_login']} voluntary switches/login")


def shutil_which(cmd):
    import shutil
    return shutil.which(cmd)


# --- table rows ----------------------------------------------------------------------------
def table_lines(rows):
    out = []
    st = {r["proxy"]: r for r in rows if r.get("cell") == "storm"}
    if st:
        out += ["", f"reconnect storm ({next(iter(st.values()))['sessions']:,} sessions, "
                f"{next(iter(st.values()))['sources']} source addresses; wall time from the "
                "backend's restart)", "",
                "| | mailgate | nginx | mailgate/nginx |", "|---|---|---|---|"]

        def row(title, f):
            a, b = (f(st[p]) if p in st else None for p in ("mailgate", "nginx"))
            rat = f"{a / b:.2f}×" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "—"
            out.append(f"| {title} | {'—' if a is None else a} | {'—' if b is None else b} | {rat} |")
        row("logged in before / again", lambda r: f"{r['logged_in_before']:,} / {r['logged_in_again']:,}")
        row("time to absorb the storm (last re-login), s", lambda r: r["absorb_s"])
        row("first / median re-login, s",
            lambda r: f"{r['first_relogin_s']} / {r['p50_relogin_s']}")
        row("login attempts (incl. retries)", lambda r: r["attempts"])
        row("proxy CPU over the storm, s", lambda r: r["cpu_s"])
        row("TcpExtListenOverflows over the storm (machine-wide)", lambda r: r.get("listen_overflows"))
        row("fake's accept queue, max / samples at its backlog of 128 (every 20 ms)", lambda r: (
            f"{r['fake_accept_queue']['max']} / {r['fake_accept_queue']['full_samples']}"
            if r.get("fake_accept_queue") else None))
        row("backend taken down again by the storm", lambda r: r.get("down_again")
            if r["proxy"] == "mailgate" else None)
        row("client CPU (Python) over the storm, s", lambda r: r["client_cpu_s"])
        row("refusals seen by clients", lambda r: ", ".join(
            f"{k}: {v}" for k, v in sorted(r["client_failures"].items())) or "none")
        row("mailgate's own refusals (connections_refused_total)", lambda r: (", ".join(
            f"{k}: {v}" for k, v in sorted(r["own_refusals"].items()) if v) or "0")
            if r["proxy"] == "mailgate" else None)
        row("mailgate's logins_total by result", lambda r: (", ".join(
            f"{k}: {v}" for k, v in sorted(r["login_results"].items())) or "0")
            if r["proxy"] == "mailgate" else None)
        row("backend admission refusals (refused_total)", lambda r: (", ".join(
            f"{k}: {v}" for k, v in sorted(r["backend_refusals"].items())) or "0")
            if r["proxy"] == "mailgate" else None)
        m = st.get("mailgate")
        for h in (m or {}).get("health_changes", []):
            out.append(f"mailgate log: {h}")
        if m and m.get("series"):
            out.append("")
            out.append(f"mailgate after the recovery (health.slow_start {m['slow_start']}), per "
                       "second from /metrics: t s: admitted/refused slow_start (share admitted)")
            out.append("  " + "; ".join(
                f"{s['t']}: {s['admitted']}/{s['refused_slow_start']}"
                + (f" ({s['share']})" if s["share"] is not None else "")
                + (f" down {s['refused_down']}" if s["refused_down"] else "")
                for s in m["series"] if s["admitted"] or s["refused_slow_start"] or s["refused_down"]))
    sc = [r for r in rows if r.get("cell") in ("scale-1", "scale-2")]
    if sc:
        out += ["", "scaling: logins through mailgate pinned by taskset (load generator "
                "and fake unpinned, same 2 cores)", "",
                "| run | login | CPUs | workers | logins/s | µs CPU/login | cores busy | voluntary switches/login |",
                "|---|---|---|---|---|---|---|---|"]
        for r in sc:
            out.append(f"| {r['run']} | {r['kind']} | {r['cpus']} | {r['workers']} | {r['logins_per_s']:,.0f} | "
                       f"{r['cpu_us_per_login']} | {r['cores_busy']} | {r.get('vcsw_per_login', '—')} |")
        for k, kind in sorted({(r["run"], r["kind"]) for r in sc}):
            one = next((r for r in sc if (r["run"], r["kind"], r["cell"]) == (k, kind, "scale-1")), None)
            two = next((r for r in sc if (r["run"], r["kind"], r["cell"]) == (k, kind, "scale-2")), None)
            if one and two and one["logins_per_s"]:
                out.append(f"run {k} {kind}: logins/s 2 workers / 1 worker = "
                           f"{two['logins_per_s'] / one['logins_per_s']:.2f}×, CPU per login "
                           f"{two['cpu_us_per_login'] / one['cpu_us_per_login']:.2f}×")
    return out
