"""deploy/kubernetes: every manifest validates against the Kubernetes API schemas
(kubernetes-validate, strict: unknown fields fail), the fields that matter agree with each
other and with mailgate's config in the ConfigMap, that config passes the real
``mailgate check`` laid out as the kubelet mounts it, and a ConfigMap update — the
kubelet's ``..data`` symlink swap — reaches a running mailgate without a restart.

The ServiceMonitor is a Prometheus Operator CRD whose schema kubernetes-validate does not
carry; it is checked against the small schema below (the fields it uses, strictly).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

kubernetes_validate = pytest.importorskip("kubernetes_validate")
yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")

from certs import make_pki  # noqa: E402
from clients import imap_backend, imap_open  # noqa: E402
from layout import PASSWORD  # noqa: E402
from mailgate_proc import mailgate_binary  # noqa: E402
from ports import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"
# The newest schemas the package carries, and the oldest Kubernetes release still
# commonly run (the manifests use nothing newer).
VERSIONS = (kubernetes_validate.latest_version(), "1.30.0")

SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object",
                                                   "additionalProperties": {"type": "string"}}},
                },
                "namespaceSelector": {"type": "object"},
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array", "minItems": 1,
                    "items": {
                        "type": "object", "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": r"^(\d+(ms|s|m|h))+$"},
                            "scrapeTimeout": {"type": "string", "pattern": r"^(\d+(ms|s|m|h))+$"},
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}


def docs() -> list[tuple[str, dict]]:
    """Every object of every manifest (file name, object), the Kustomization left out."""
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for d in yaml.safe_load_all(path.read_text()):
            if d is not None:
                out.append((path.name, d))
    return out


def one(kind: str, name: str | None = None) -> dict:
    found = [d for _, d in docs() if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def configmap_file(key: str) -> dict:
    for _, d in docs():
        if d["kind"] == "ConfigMap" and key in d.get("data", {}):
            return yaml.safe_load(d["data"][key])
    raise AssertionError(f"no ConfigMap holds {key}")


def seconds(text: str) -> float:
    """A humantime duration as mailgate's config writes them (30s, 5m, 1h30m, 500ms)."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+)(ms|s|m|h)", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(int(n) * units[u] for n, u in parts)


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def container() -> dict:
    containers = one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def container_ports() -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container()["ports"]}


# --- schemas --------------------------------------------------------------------------------

def test_every_manifest_validates_against_the_kubernetes_schemas():
    objects = docs()
    kinds = sorted({d["kind"] for _, d in objects})
    assert kinds == ["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
                     "Secret", "Service", "ServiceMonitor"], kinds
    for name, d in objects:
        if d["kind"] == "ServiceMonitor":
            jsonschema.validate(d, SERVICE_MONITOR_SCHEMA)
            continue
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{name} {d['kind']}/{d['metadata']['name']} (Kubernetes {version}): "
                            f"{e}", pytrace=False)


def test_the_validator_rejects_a_broken_manifest():
    """The schema check can fail: a misspelt field and a wrong type are caught."""
    deployment = one("Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "imap"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)
    monitor = yaml.safe_load(yaml.safe_dump(one("ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files


# --- the fields that matter -----------------------------------------------------------------

def test_deployment_replicas_probes_and_grace():
    deployment = one("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, \
        "a rollout must not take capacity away before the new pod is ready"
    c = container()
    ports = container_ports()
    cfg = configmap_file("mailgate.yaml")
    admin = port_of(cfg["listen"]["admin"])
    assert cfg["listen"]["admin"].startswith("0.0.0.0:"), "the kubelet probes the pod's IP"
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        port = get["port"]
        assert (ports[port] if isinstance(port, str) else port) == admin, (probe, port)
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "/bin/sleep", command
    pre_stop = float(command[1])
    grace = seconds(cfg.get("shutdown_grace", "30s"))
    window = seconds(cfg.get("shutdown_close_window", "5s"))
    termination = spec["template"]["spec"]["terminationGracePeriodSeconds"]
    assert termination > pre_stop + grace + window, \
        f"SIGKILL after {termination}s beats preStop {pre_stop}s + grace {grace}s + window {window}s"
    assert c["args"][:3] == ["run", "-c", "/etc/mailgate/mailgate.yaml"]


def test_listeners_container_ports_and_service_agree():
    cfg = configmap_file("mailgate.yaml")
    ports = container_ports()
    for name in ("imap", "imaps", "pop3", "pop3s", "admin"):
        assert ports[name] == port_of(cfg["listen"][name]), name
    service = one("Service", "mailgate")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["externalTrafficPolicy"] == "Local", "client addresses would be lost"
    public = {p["port"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert public == {143: "imap", 993: "imaps", 110: "pop3", 995: "pop3s"}
    assert "admin" not in {p["targetPort"] for p in service["spec"]["ports"]}, \
        "the admin port must not be public"
    pod_labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    for svc in (service, one("Service", "mailgate-admin")):
        assert svc["spec"]["selector"].items() <= pod_labels.items()


def test_proxy_protocol_and_proxy_from_agree():
    """A balancer sending PROXY v2 to a mailgate that does not expect it (or the reverse)
    breaks every connection."""
    annotations = one("Service", "mailgate")["metadata"].get("annotations") or {}
    sends_proxy = any("proxy-protocol" in k or "proxyprotocol" in k for k in annotations)
    expects_proxy = bool(configmap_file("mailgate.yaml")["listen"].get("proxy_from"))
    assert sends_proxy == expects_proxy, (annotations, expects_proxy)
    text = (K8S / "service.yaml").read_text()
    assert "aws-load-balancer-proxy-protocol" in text, "PROXY v2 set-up is documented"


def test_networkpolicy_covers_the_admin_port():
    policy = one("NetworkPolicy")
    pod_labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert "Ingress" in policy["spec"]["policyTypes"]
    ports = container_ports()
    admin = ports["admin"]

    def opens_admin(rule) -> bool:
        if "ports" not in rule:
            return True  # no ports: every port
        return any((ports.get(p["port"]) if isinstance(p["port"], str) else p["port"]) == admin
                   for p in rule["ports"])

    rules = policy["spec"]["ingress"]
    admin_rules = [r for r in rules if opens_admin(r)]
    assert admin_rules, "the admin port is closed to Prometheus too"
    for r in admin_rules:
        assert r.get("from"), f"the admin port is open to everyone: {r}"
    mail = {ports[n] for n in ("imap", "imaps", "pop3", "pop3s")}
    open_to_all = {ports.get(p["port"], p["port"]) for r in rules if not r.get("from")
                   for p in r.get("ports", [])}
    assert mail <= open_to_all, "the mail ports must stay reachable"


def test_pdb_and_servicemonitor_select_mailgate():
    pod_labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    replicas = one("Deployment")["spec"]["replicas"]
    if "maxUnavailable" in pdb["spec"]:
        assert 1 <= pdb["spec"]["maxUnavailable"] < replicas
    else:
        assert 1 <= pdb["spec"]["minAvailable"] < replicas
    monitor = one("ServiceMonitor")
    admin_svc = one("Service", "mailgate-admin")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= admin_svc["metadata"]["labels"].items()
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= \
        one("Service", "mailgate")["metadata"]["labels"].items(), "would scrape the mail ports"
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] in {p["name"] for p in admin_svc["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def projected_files(tls_cert: bytes, tls_key: bytes, probe: str, token: str) -> dict[str, bytes]:
    """What the Deployment's projected volume holds: path -> content."""
    volumes = one("Deployment")["spec"]["template"]["spec"]["volumes"]
    mounts = container()["volumeMounts"]
    assert [m["mountPath"] for m in mounts] == ["/etc/mailgate"]
    assert all("subPath" not in m for m in mounts), "subPath mounts are never updated"
    volume = next(v for v in volumes if v["name"] == mounts[0]["name"])
    secrets = {"mailgate-tls": {"tls.crt": tls_cert, "tls.key": tls_key},
               "mailgate-secrets": {"probe.secret": probe.encode(), "admin.token": token.encode()}}
    files: dict[str, bytes] = {}
    for source in volume["projected"]["sources"]:
        if "configMap" in source:
            cm = one("ConfigMap", source["configMap"]["name"])
            for item in source["configMap"]["items"]:
                files[item["path"]] = cm["data"][item["key"]].encode()
        else:
            name = source["secret"]["name"]
            declared = one("Secret", name)["data"]
            for item in source["secret"]["items"]:
                assert item["key"] in declared, (name, item["key"])
                files[item["path"]] = secrets[name][item["key"]]
    return files


# --- the kubelet's atomic writer --------------------------------------------------------------

def kubelet_write(root: Path, files: dict[str, bytes]) -> None:
    """Update ``root`` the way the kubelet updates a ConfigMap / projected volume: a new
    ``..<timestamp>`` directory, a ``..data_tmp`` symlink to it renamed over ``..data``,
    top-level symlinks into ``..data``, then the old directory removed."""
    root.mkdir(parents=True, exist_ok=True)
    stamp = root / (time.strftime("..%Y_%m_%d_%H_%M_%S.") + f"{time.time_ns() % 10**9:09d}")
    for rel, content in files.items():
        target = stamp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(0o440)
    data = root / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    tmp = root / "..data_tmp"
    os.symlink(stamp.name, tmp)
    os.rename(tmp, data)
    tops = {rel.split("/", 1)[0] for rel in files}
    for top in tops:
        link = root / top
        if not link.is_symlink():
            os.symlink(f"..data/{top}", link)
    if old:
        shutil.rmtree(root / old)


def _cert_files(tmp_path: Path) -> tuple[bytes, bytes]:
    pki = make_pki(tmp_path / "pki")
    return pki.server_cert.read_bytes(), pki.server_key.read_bytes()


def test_configmap_config_passes_mailgate_check_as_mounted(tmp_path):
    cert, key = _cert_files(tmp_path)
    root = tmp_path / "etc-mailgate"
    kubelet_write(root, projected_files(cert, key, "probe-password", "admin-token"))
    assert (root / "mailgate.yaml").is_symlink() and (root / "..data").is_symlink()
    result = subprocess.run([str(mailgate_binary()), "check", "-c", str(root / "mailgate.yaml")],
                            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    # The placeholder Secrets are empty on purpose: mailgate refuses them.
    kubelet_write(root, projected_files(b"", b"", "", ""))
    result = subprocess.run([str(mailgate_binary()), "check", "-c", str(root / "mailgate.yaml")],
                            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode != 0, "an unfilled Secret must not pass"


@pytest.mark.parametrize("empty", ["certificate", "admin token"])
def test_an_unfilled_secret_stops_mailgate_at_start(tmp_path, empty):
    """`mailgate check` does not open certificates or the token; `mailgate run` refuses
    them empty. Listeners moved to loopback ports for the test."""
    cert, key = _cert_files(tmp_path)
    if empty == "certificate":
        files = projected_files(b"", b"", "probe-password", "admin-token")
    else:
        files = projected_files(cert, key, "probe-password", "")
    text = files["mailgate.yaml"].decode()
    for addr in re.findall(r"0\.0\.0\.0:\d+", text):
        text = text.replace(addr, f"127.0.0.1:{free_port()}")
    assert "0.0.0.0" not in text
    files["mailgate.yaml"] = text.encode()
    root = tmp_path / "etc-mailgate"
    kubelet_write(root, files)
    result = subprocess.run([str(mailgate_binary()), "run", "-c", str(root / "mailgate.yaml")],
                            capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    expected = "tls.crt" if empty == "certificate" else "admin.token"
    assert expected in result.stderr, result.stderr


def _backend_of(mg, pki, user: str) -> str:
    imap = imap_open("127.0.0.1", mg.ports["imap"], "plain", pki.ca_cert)
    try:
        imap.login(user, PASSWORD)
        return imap_backend(imap)
    finally:
        imap.logout()


def test_configmap_update_reloads_a_running_mailgate(mailgate_factory, pki):
    """Both files in a ConfigMap-style directory; the kubelet's swap moves example.com to
    mail2, and new logins follow without a signal or restart."""
    mg = mailgate_factory(start=False)
    config = mg.config_path.read_bytes()
    routing = mg.routing_path.read_bytes()
    mg.config_path.unlink()
    mg.routing_path.unlink()
    kubelet_write(mg.dir, {"mailgate.yaml": config, "routing.yaml": routing})
    mg.start()
    assert _backend_of(mg, pki, "moving@example.com") == "mail1"

    moved = routing.replace(b'"example.com": "mail1"', b'"example.com": "mail2"')
    assert moved != routing, routing
    kubelet_write(mg.dir, {"mailgate.yaml": config, "routing.yaml": moved})
    deadline = time.monotonic() + 10
    seen = "mail1"
    while seen != "mail2" and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = _backend_of(mg, pki, "moving@example.com")
    assert seen == "mail2", f"the ..data swap was not picked up\n{mg.output()}"
    assert mg.running()
    assert _backend_of(mg, pki, "bob@example.org") == "mail2"


def _served_cert(port: int, cafile: Path) -> bytes:
    import socket
    import ssl
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


def test_renewed_tls_secret_reaches_a_running_mailgate(mailgate_factory, pki, tmp_path):
    """cert-manager renews the TLS Secret: the same ``..data`` swap (routing unchanged)
    makes mailgate serve the new certificate to new connections."""
    import ssl
    from certs import make_server_cert
    mg = mailgate_factory(config={"tls": {"cert": "tls/tls.crt", "key": "tls/tls.key"}},
                          start=False)
    config = mg.config_path.read_bytes()
    routing = mg.routing_path.read_bytes()
    mg.config_path.unlink()
    mg.routing_path.unlink()
    files = {"mailgate.yaml": config, "routing.yaml": routing,
             "tls/tls.crt": pki.server_cert.read_bytes(), "tls/tls.key": pki.server_key.read_bytes()}
    kubelet_write(mg.dir, files)
    mg.start()
    first = ssl.PEM_cert_to_DER_cert(pki.server_cert.read_text())
    assert _served_cert(mg.ports["imaps"], pki.ca_cert) == first

    cert, key = make_server_cert(pki, tmp_path / "renewed", "renewed", ["localhost", "127.0.0.1"])
    renewed = ssl.PEM_cert_to_DER_cert(cert.read_text())
    assert renewed != first
    kubelet_write(mg.dir, {**files, "tls/tls.crt": cert.read_bytes(), "tls/tls.key": key.read_bytes()})
    deadline = time.monotonic() + 10
    served = first
    while served != renewed and time.monotonic() < deadline:
        time.sleep(0.2)
        served = _served_cert(mg.ports["imaps"], pki.ca_cert)
    assert served == renewed, f"the renewed certificate is not served\n{mg.output()}"
    assert mg.running()
