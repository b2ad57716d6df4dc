#!/usr/bin/env python3
"""Driver of `make bench-peers` (scripts/bench-peers.sh): mailgate, nginx's mail proxy and
HAProxy (TCP mode) in front of the same fake IMAP backend, plus the direct baseline.

Everything on 127.0.0.1, ports from PEERS_PORT_BASE (24000); PEERS_MAILGATE names another mailgate binary
(a before/after comparison), PEERS_PROXIES a subset of "mailgate nginx haproxy". Every proxy's CPU time is
utime+stime from /proc/PID/stat summed over all its processes (nginx: master + worker), its
RSS the sum of VmRSS. The auth_http responder nginx needs is served by this script (asyncio,
in its own process, so its CPU is not nginx's; nginx's cost of making the request is).
Raw JSON lines: target/bench/peers.jsonl. No timed assertions: it only reports.
"""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_peers_storm as storm

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"
OUT = ROOT / "target" / "bench"
BASE = int(os.environ.get("PEERS_PORT_BASE", "24000"))
DURATION = os.environ.get("PEERS_DURATION", "6s")
CONC = int(os.environ.get("PEERS_CONCURRENCY", "50"))
IDLE_N = int(os.environ.get("PEERS_IDLE_SESSIONS", "4000"))
ONLY = os.environ.get("PEERS_ONLY", "logins bytes idle storm scaling").split()
HZ = os.sysconf("SC_CLK_TCK")

P = {  # ports
    "fake": BASE + 100, "fakebig": BASE + 101,
    "mg_imap": BASE + 200, "mg_imaps": BASE + 201, "mg_admin": BASE + 202,
    "mgec_imap": BASE + 210, "mgec_imaps": BASE + 211, "mgec_admin": BASE + 212,
    "ngec_imaps": BASE + 311,
    "ng_imap": BASE + 300, "ng_imaps": BASE + 301, "ng_auth": BASE + 302,
    "ha_imap": BASE + 400, "ha_imaps": BASE + 401, "ha_big": BASE + 402,
}
storm.storm_ports(P, BASE)
# The "big" user is routed to the 1 MiB-message fake by every proxy (haproxy: own port).
BIG_USER = "user@big.example.com"


def log(msg):
    print(f"[bench-peers] {msg}", file=sys.stderr, flush=True)


# --- auth_http responder for nginx ---------------------------------------------------------
async def _auth(reader, writer):
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
        writer.close()
        return
    user = b""
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"auth-user:"):
            user = line.split(b":", 1)[1].strip()
    port = P["fakebig"] if user.endswith(b"@big.example.com") else P["fake"]
    if user.endswith(b"@" + storm.STORM_DOMAIN.encode()):
        port = P["fakestorm"]
    writer.write(b"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\n"
                 b"Auth-Port: %d\r\n\r\n" % port)
    try:
        await writer.drain()
    finally:
        writer.close()


def auth_server_main():
    async def main():
        srv = await asyncio.start_server(_auth, "127.0.0.1", P["ng_auth"], backlog=1024)
        async with srv:
            await srv.serve_forever()
    asyncio.run(main())


# --- processes -----------------------------------------------------------------------------
class Proc:
    def __init__(self, name, argv, logfile, **kw):
        self.name = name
        self.log = open(logfile, "wb")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, **kw)

    def pids(self):
        """The process and its descendants (nginx's workers)."""
        out, todo = [], [self.p.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            try:
                for t in os.listdir(f"/proc/{pid}/task"):
                    kids = Path(f"/proc/{pid}/task/{t}/children").read_text().split()
                    todo.extend(int(k) for k in kids)
            except OSError:
                pass
        return out

    def cpu_s(self):
        total = 0
        for pid in self.pids():
            try:
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(f[11]) + int(f[12])  # utime, stime (fields 14, 15)
            except (OSError, IndexError, ValueError):
                pass
        return total / HZ

    def thread_cpu_s(self):
        """CPU seconds of each named thread of the process itself (its `comm`, summed over
        threads of one name: tokio's workers are all "tokio-runtime-w")."""
        out = {}
        try:
            tasks = os.listdir(f"/proc/{self.p.pid}/task")
        except OSError:
            return out
        for t in tasks:
            try:
                name = Path(f"/proc/{self.p.pid}/task/{t}/comm").read_text().strip()
                f = Path(f"/proc/{self.p.pid}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()
                out[name] = out.get(name, 0.0) + (int(f[11]) + int(f[12])) / HZ
            except (OSError, IndexError, ValueError):
                pass
        return out

    def rss_kib(self):
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.log.close()


def port_open(port):
    import socket
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(proc, port, secs=30):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if proc.p.poll() is not None:
            raise RuntimeError(f"{proc.name} exited: see {proc.log.name}")
        if port_open(port):
            time.sleep(0.5)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not listen on {port} in {secs} s")


# --- configs -------------------------------------------------------------------------------
def make_certs(w):
    """A throwaway CA and an RSA-2048 leaf for localhost (the issue's certificate kind)."""
    def ossl(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout",
         f"{w}/ca.key", "-out", f"{w}/ca.pem", "-subj", "/CN=bench-peers-ca")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{w}/key.pem", "-out",
         f"{w}/leaf.csr", "-subj", "/CN=localhost")
    Path(f"{w}/leaf.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                     "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    ossl("x509", "-req", "-in", f"{w}/leaf.csr", "-CA", f"{w}/ca.pem", "-CAkey", f"{w}/ca.key",
         "-CAcreateserial", "-days", "2", "-extfile", f"{w}/leaf.ext", "-out", f"{w}/cert.pem")
    # An ECDSA P-256 leaf from the same CA, served beside the RSA one in the "ECDSA" cells.
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         f"{w}/ec-key.pem", "-out", f"{w}/ec.csr", "-subj", "/CN=localhost")
    ossl("x509", "-req", "-in", f"{w}/ec.csr", "-CA", f"{w}/ca.pem", "-CAkey", f"{w}/ca.key",
         "-CAcreateserial", "-days", "2", "-extfile", f"{w}/leaf.ext", "-out", f"{w}/ec-cert.pem")
    Path(f"{w}/both.pem").write_text(Path(f"{w}/cert.pem").read_text()
                                     + Path(f"{w}/key.pem").read_text())


def write_configs(w):
    Path(f"{w}/mailgate.yaml").write_text(f"""listen:
  imap: 127.0.0.1:{P['mg_imap']}
  imaps: 127.0.0.1:{P['mg_imaps']}
  admin: 127.0.0.1:{P['mg_admin']}
tls:
  cert: cert.pem
  key: key.pem
  require_tls_for_login: false
routing_file: routing.yaml
log:
  level: info
  format: text
limits:
  max_sessions_per_ip: 0
  max_auth_failures_per_ip: 0
  idle_timeout: 30m
shutdown_grace: 1s
""")
    # ECDSA first, the RSA certificate as the alternative for clients without ECDSA.
    mg = Path(f"{w}/mailgate.yaml").read_text()
    for k in ("imap", "imaps", "admin"):
        mg = mg.replace(f":{P['mg_' + k]}\n", f":{P['mgec_' + k]}\n")
    mg = mg.replace("  cert: cert.pem\n  key: key.pem\n",
                    "  cert: ec-cert.pem\n  key: ec-key.pem\n"
                    "  sni:\n    - names: []\n      cert: cert.pem\n      key: key.pem\n")
    Path(f"{w}/mailgate-ec.yaml").write_text(mg)
    Path(f"{w}/routing.yaml").write_text(f"""backends:
  fake:
    host: 127.0.0.1
    imap_port: {P['fake']}
    forward_client: id
  fakebig:
    host: 127.0.0.1
    imap_port: {P['fakebig']}
    forward_client: id
domains:
  example.com: fake
  big.example.com: fakebig
default: fake
""")
    Path(f"{w}/nginx.conf").write_text(f"""load_module /usr/lib/nginx/modules/ngx_mail_module.so;
worker_processes 1;
worker_rlimit_nofile 20000;
pid {w}/nginx.pid;
daemon off;
error_log {w}/nginx-error.log warn;
events {{ worker_connections 10000; }}
mail {{
    server_name localhost;
    auth_http 127.0.0.1:{P['ng_auth']}/auth;
    imap_capabilities IMAP4rev1 IDLE;
    imap_auth login plain;
    ssl_certificate {w}/cert.pem;
    ssl_certificate_key {w}/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:MAIL:10m;
    ssl_session_tickets on;
    proxy_timeout 30m;
    server {{ listen 127.0.0.1:{P['ng_imap']} backlog=1024; protocol imap; starttls on; }}
    server {{ listen 127.0.0.1:{P['ng_imaps']} ssl backlog=1024; protocol imap; }}
}}
""")
    ng = Path(f"{w}/nginx.conf").read_text()
    ng = ng.replace(f"    ssl_certificate_key {w}/key.pem;\n",
                    f"    ssl_certificate_key {w}/key.pem;\n    ssl_certificate {w}/ec-cert.pem;\n"
                    f"    ssl_certificate_key {w}/ec-key.pem;\n")
    ng = ng.replace(f"server {{ listen 127.0.0.1:{P['ng_imap']} backlog=1024; protocol imap; starttls on; }}\n", "")
    ng = ng.replace(f":{P['ng_imaps']} ", f":{P['ngec_imaps']} ").replace("nginx.pid", "nginx-ec.pid")
    Path(f"{w}/nginx-ec.conf").write_text(ng)
    storm.write_storm_configs(sys.modules[__name__], w)
    Path(f"{w}/haproxy.cfg").write_text(f"""global
    nbthread 1
    maxconn 9000
    tune.ssl.default-dh-param 2048
defaults
    mode tcp
    timeout connect 5s
    timeout client 30m
    timeout server 30m
frontend plain
    bind 127.0.0.1:{P['ha_imap']}
    default_backend fake
frontend tls
    bind 127.0.0.1:{P['ha_imaps']} ssl crt {w}/both.pem
    default_backend fake
frontend big
    bind 127.0.0.1:{P['ha_big']}
    default_backend fakebig
backend fake
    server f 127.0.0.1:{P['fake']}
backend fakebig
    server f 127.0.0.1:{P['fakebig']}
""")


# --- the proxies under test ------------------------------------------------------------------
# name -> (start(w) -> Proc, {workload: port})
def start_mailgate(w):
    p = Proc("mailgate", [os.environ.get("PEERS_MAILGATE", str(BIN / "mailgate")), "run", "-c", f"{w}/mailgate.yaml"],
             f"{w}/log/mailgate.log")
    wait_port(p, P["mg_admin"])
    wait_port(p, P["mg_imap"])
    return p


def start_nginx(w):
    p = Proc("nginx", ["nginx", "-e", f"{w}/nginx-error.log", "-c", f"{w}/nginx.conf"],
             f"{w}/nginx.log")
    wait_port(p, P["ng_imap"])
    return p


def start_mailgate_ec(w):
    p = Proc("mailgate-ec", [os.environ.get("PEERS_MAILGATE", str(BIN / "mailgate")), "run", "-c",
                             f"{w}/mailgate-ec.yaml"], f"{w}/log/mailgate-ec.log")
    wait_port(p, P["mgec_admin"])
    wait_port(p, P["mgec_imaps"])
    return p


def start_nginx_ec(w):
    p = Proc("nginx-ec", ["nginx", "-e", f"{w}/nginx-error.log", "-c", f"{w}/nginx-ec.conf"],
             f"{w}/nginx-ec.log")
    wait_port(p, P["ngec_imaps"])
    return p


# The ECDSA P-256 cells: an instance serving ECDSA first and RSA beside it (HAProxy: not run).
ECDSA = {"mailgate": (start_mailgate_ec, P["mgec_imaps"]), "nginx": (start_nginx_ec, P["ngec_imaps"])}


def start_haproxy(w):
    p = Proc("haproxy", ["haproxy", "-db", "-f", f"{w}/haproxy.cfg"], f"{w}/haproxy.log")
    wait_port(p, P["ha_imap"])
    return p


PROXIES = {
    "mailgate": (start_mailgate, {"plain": P["mg_imap"], "starttls": P["mg_imap"],
                                  "implicit": P["mg_imaps"], "big": P["mg_imap"]}),
    "nginx": (start_nginx, {"plain": P["ng_imap"], "starttls": P["ng_imap"],
                            "implicit": P["ng_imaps"], "big": P["ng_imap"]}),
    "haproxy": (start_haproxy, {"plain": P["ha_imap"], "implicit": P["ha_imaps"],
                                "big": P["ha_big"]}),
}
for _name in set(PROXIES) - set(os.environ.get("PEERS_PROXIES", "mailgate nginx haproxy").split()):
    del PROXIES[_name]
# login cells: name -> (port key, --tls, resume)
CELLS = {
    "plain": ("plain", "none", False),
    "starttls": ("starttls", "starttls", False),
    "implicit": ("implicit", "implicit", False),
    "resumed": ("implicit", "implicit", True),
}
# PEERS_CELLS: only these login cells (e.g. "plain"); all of them by default
LOGIN_CELLS = os.environ.get("PEERS_CELLS", " ".join((*CELLS, "implicit-ecdsa", "resumed-ecdsa"))).split()


def load(w, *args):
    r = subprocess.run([str(BIN / "mailgate-load"), *args], capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"mailgate-load {' '.join(args[:3])}: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def tls_args(w, tls, resume):
    a = ["--tls", tls]
    if tls != "none":
        a += ["--ca", f"{w}/ca.pem"]
        if not resume:
            a.append("--no-resume")
    return a


def measured(proc, fn):
    c0 = proc.cpu_s() if proc else 0.0
    t0 = proc.thread_cpu_s() if proc else {}
    r = fn()
    r["cpu_s"] = round(proc.cpu_s() - c0, 3) if proc else None
    if proc:  # where a proxy's CPU went, by thread name (exited threads are not counted)
        t1 = proc.thread_cpu_s()
        r["thread_cpu_s"] = {k: round(v - t0.get(k, 0.0), 3) for k, v in t1.items()
                             if v - t0.get(k, 0.0) > 0}
    return r


def thread_note(r):
    """`, log thread 4.2 µs/login` for a proxy with a writer thread of its own."""
    log_s = r.get("thread_cpu_s", {}).get("mailgate-log")
    if log_s is None or not r.get("logins"):
        return ""
    return f", log thread {log_s * 1e6 / r['logins']:.1f} µs/login"


def run_logins(w, rows):
    r = load(w, "logins", "--target", f"127.0.0.1:{P['fake']}", "--concurrency", str(CONC),
             "--duration", DURATION, "--script", "noop", "--label", "direct")
    rows.append({"proxy": "direct", "cell": "plain", **r})
    log(f"logins direct: {r['logins_per_s']}/s p50 {r['p50_ms']} ms")
    for name, (start, ports) in PROXIES.items():
        proc = start(w)
        try:
            for cell, (pk, tls, resume) in CELLS.items():
                if pk not in ports or cell not in LOGIN_CELLS:
                    continue
                if resume:  # a short warm-up fills the client's ticket store
                    load(w, "logins", "--target", f"127.0.0.1:{ports[pk]}", "--concurrency",
                         str(CONC), "--duration", "1s", "--script", "noop",
                         *tls_args(w, tls, resume))
                r = measured(proc, lambda: load(
                    w, "logins", "--target", f"127.0.0.1:{ports[pk]}", "--concurrency",
                    str(CONC), "--duration", DURATION, "--script", "noop",
                    *tls_args(w, tls, resume), "--label", f"{name}-{cell}"))
                r["cpu_us_per_login"] = round(r["cpu_s"] * 1e6 / r["logins"], 1) if r["logins"] else None
                rows.append({"proxy": name, "cell": cell, **r})
                log(f"logins {name} {cell}: {r['logins_per_s']}/s, {r['cpu_us_per_login']} µs CPU"
                    f"/login{thread_note(r)}, errors {r['errors']}")
        finally:
            proc.stop()
    for name, (start, port) in ECDSA.items():
        if name not in PROXIES or not {"implicit-ecdsa", "resumed-ecdsa"} & set(LOGIN_CELLS):
            continue
        proc = start(w)
        try:
            for cell, resume in (("implicit-ecdsa", False), ("resumed-ecdsa", True)):
                if cell not in LOGIN_CELLS:
                    continue
                if resume:
                    load(w, "logins", "--target", f"127.0.0.1:{port}", "--concurrency", str(CONC),
                         "--duration", "1s", "--script", "noop", *tls_args(w, "implicit", True))
                r = measured(proc, lambda: load(
                    w, "logins", "--target", f"127.0.0.1:{port}", "--concurrency", str(CONC),
                    "--duration", DURATION, "--script", "noop", *tls_args(w, "implicit", resume),
                    "--label", f"{name}-{cell}"))
                r["cpu_us_per_login"] = round(r["cpu_s"] * 1e6 / r["logins"], 1) if r["logins"] else None
                rows.append({"proxy": name, "cell": cell, **r})
                log(f"logins {name} {cell}: {r['logins_per_s']}/s, {r['cpu_us_per_login']} µs CPU"
                    f"/login{thread_note(r)}, errors {r['errors']}")
        finally:
            proc.stop()


def run_bytes(w, rows):
    dur = os.environ.get("PEERS_BYTES_DURATION", "5s")
    r = load(w, "bytes", "--target", f"127.0.0.1:{P['fakebig']}", "--user", BIG_USER,
             "--duration", dur, "--label", "direct")
    rows.append({"proxy": "direct", "cell": "bytes", **r})
    for name, (start, ports) in PROXIES.items():
        proc = start(w)
        try:
            r = measured(proc, lambda: load(w, "bytes", "--target", f"127.0.0.1:{ports['big']}",
                                            "--user", BIG_USER, "--duration", dur,
                                            "--label", name))
            r["cpu_s_per_gib"] = round(r["cpu_s"] / (r["bytes"] / 2**30), 3) if r["bytes"] else None
            rows.append({"proxy": name, "cell": "bytes", **r})
            log(f"bytes {name}: {r['mb_per_s']} MB/s, {r['cpu_s_per_gib']} s CPU/GiB")
        finally:
            proc.stop()


def idle_once(w, proc, port, tls, label, extra=()):
    time.sleep(1)
    rss0 = proc.rss_kib()
    out = open(f"{w}/idle.out", "w+")
    lp = subprocess.Popen([str(BIN / "mailgate-load"), "idle", "--target", f"127.0.0.1:{port}",
                           *tls_args(w, tls, False), *extra, "--sessions", str(IDLE_N), "--hold", "300s",
                           "--label", label], stdout=out, stderr=subprocess.DEVNULL)
    line = None
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and lp.poll() is None:
            out.seek(0)
            line = next((l for l in out if '"established"' in l), None)
            if line:
                break
            time.sleep(0.2)
        if not line:
            return None
        time.sleep(2)
        rss1 = proc.rss_kib()
        r = json.loads(line)
        r.update(rss0_kib=rss0, rss1_kib=rss1,
                 bytes_per_session=round((rss1 - rss0) * 1024 / r["established"]) if r["established"] else None)
        return r
    finally:
        if lp.poll() is None:
            lp.send_signal(signal.SIGTERM)
            try:
                lp.wait(30)
            except subprocess.TimeoutExpired:
                lp.kill()
                lp.wait()
        out.close()


def run_idle(w, rows):
    for name, (start, ports) in PROXIES.items():
        # idle-tls-aes128: the client lists AES-128-GCM first, as NSS (Thunderbird) and
        # Apple's stack do; the other TLS cell's client (rustls) lists AES-256-GCM first.
        for cell, pk, tls, extra in (("idle-plain", "plain", "none", ()),
                                     ("idle-tls", "implicit", "implicit", ()),
                                     ("idle-tls-aes128", "implicit", "implicit", ("--aes128-first",))):
            proc = start(w)  # fresh process: its RSS before is its base
            try:
                r = idle_once(w, proc, ports[pk], tls, f"{name}-{cell}", extra)
            finally:
                proc.stop()
            if r:
                rows.append({"proxy": name, "cell": cell, **r})
                log(f"{cell} {name}: {r['established']} sessions, {r['bytes_per_session']} B/session")
            else:
                log(f"{cell} {name}: sessions never established")


# --- table ---------------------------------------------------------------------------------
def table(rows):
    def get(proxy, cell, key):
        r = next((r for r in rows if r["proxy"] == proxy and r["cell"] == cell), None)
        return None if r is None else r.get(key)

    def fmt(v, nd=1):
        if v is None:
            return "—"
        return f"{v:,.{nd}f}" if isinstance(v, float) else f"{v:,}"

    def ratio(a, b):
        return f"{a / b:.2f}×" if a is not None and b not in (None, 0) else "—"

    lines = []
    specs = [(f"CPU per {c} login, µs", c, "cpu_us_per_login", 1)
             for c in (*CELLS, "implicit-ecdsa", "resumed-ecdsa")]
    specs += [("CPU per GiB (FETCH of 1 MiB bodies), s", "bytes", "cpu_s_per_gib", 3),
              ("RSS per idle session, plain, B", "idle-plain", "bytes_per_session", 0),
              ("RSS per idle session, TLS, B", "idle-tls", "bytes_per_session", 0),
              ("RSS per idle session, TLS, client AES-128 first, B", "idle-tls-aes128",
               "bytes_per_session", 0)]
    specs += [(f"logins/s, {c}", c, "logins_per_s", 0)
              for c in (*CELLS, "implicit-ecdsa", "resumed-ecdsa")]
    specs += [("FETCH MB/s (1 session)", "bytes", "mb_per_s", 0)]
    hdr = "| | direct | mailgate | nginx | HAProxy | mailgate/direct | mailgate/nginx | mailgate/HAProxy |"
    lines += [hdr, "|" + "---|" * 8]
    for title, cell, key, nd in specs:
        d = get("direct", cell, key)
        m, n, h = (get(p, cell, key) for p in ("mailgate", "nginx", "haproxy"))
        lines.append(f"| {title} | {fmt(d, nd)} | {fmt(m, nd)} | {fmt(n, nd)} | {fmt(h, nd)} | "
                     f"{ratio(m, d)} | {ratio(m, n)} | {ratio(m, h)} |")
    # Added latency: plain login vs direct; TLS cells have no TLS direct run, absolute there.
    for q in ("p50_ms", "p99_ms"):
        d = get("direct", "plain", q)
        vals = [get(p, "plain", q) for p in ("mailgate", "nginx", "haproxy")]
        add = [None if v is None or d is None else round(v - d, 3) for v in vals]
        lines.append(f"| added plain login latency {q[:3]}, ms | {fmt(d, 3)} (abs.) | "
                     + " | ".join(fmt(a, 3) for a in add) + f" | | {ratio(add[0], add[1])} | "
                     f"{ratio(add[0], add[2])} |")
        for c in ("starttls", "implicit", "resumed"):
            vals = [get(p, c, q) for p in ("mailgate", "nginx", "haproxy")]
            lines.append(f"| {c} login latency {q[:3]} (absolute), ms | — | "
                         + " | ".join(fmt(v, 3) for v in vals)
                         + f" | | {ratio(vals[0], vals[1])} | {ratio(vals[0], vals[2])} |")
    errs = [r for r in rows if (r.get("errors") or r.get("failed")) and r["cell"] != "storm"]
    for r in errs:
        lines.append(f"note: {r['proxy']} {r['cell']}: errors={r.get('errors', r.get('failed'))}"
                     f" first: {r.get('first_error')}")
    lines += storm.table_lines(rows)
    return "\n".join(lines)


def main():
    if "--table" in sys.argv:  # re-print the table of a saved run
        rows = [json.loads(l) for l in open(OUT / "peers.jsonl") if l.strip()]
        print(table(rows))
        return
    for k, port in P.items():
        if port_open(port):
            sys.exit(f"port {port} ({k}) is in use: set PEERS_PORT_BASE")
    OUT.mkdir(parents=True, exist_ok=True)
    w = tempfile.mkdtemp(prefix="mailgate-peers.")
    # mailgate's own log is kept out of the directory of its routing file: mailgate watches
    # that directory (inotify), and every log line written there would wake its watcher
    # (5-8 µs of CPU per login, and a dearer write; docs/performance.md), which no real
    # deployment pays.
    Path(f"{w}/log").mkdir()
    procs = []
    rows = []
    t0 = time.monotonic()
    try:
        make_certs(w)
        write_configs(w)
        auth = subprocess.Popen([sys.executable, __file__, "--auth-server"])
        procs.append(auth)
        for _ in range(100):
            if port_open(P["ng_auth"]):
                break
            time.sleep(0.1)
        for name, size in (("fake", 1024), ("fakebig", 1048576)):
            fp = Proc(name, [str(BIN / "mailgate-fake-backend"), "--imap", f"127.0.0.1:{P[name]}",
                             "--name", name, "--message-size", str(size)], f"{w}/{name}.log")
            procs.append(fp.p)
            wait_port(fp, P[name])
        if "logins" in ONLY:
            run_logins(w, rows)
        if "bytes" in ONLY:
            run_bytes(w, rows)
        if "idle" in ONLY:
            run_idle(w, rows)
        if "storm" in ONLY:
            storm.run_storm(sys.modules[__name__], w, rows)
        if "scaling" in ONLY:
            storm.run_scaling(sys.modules[__name__], w, rows)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        with open(OUT / "peers.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        if os.environ.get("PEERS_KEEP_WORK"):
            log(f"work dir kept: {w}")
        else:
            shutil.rmtree(w, ignore_errors=True)
    print()
    print(f"bench-peers {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"{CONC} concurrent sessions, {DURATION} per login cell, {IDLE_N} idle sessions, "
          f"run took {time.monotonic() - t0:.0f} s")
    print(table(rows))
    print(f"\nraw JSON: {OUT / 'peers.jsonl'}")


if __name__ == "__main__":
    if "--auth-server" in sys.argv:
        auth_server_main()
    else:
        main()
