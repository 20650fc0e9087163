"""The deployment files are valid for the tools that read them, without Docker or a cluster.

- docker-compose.yml against the Compose Specification schema (vendored by the pinned check-jsonschema);
- deploy/k8s/ against the Kubernetes API schemas (kubernetes-validate, offline, strict: unknown fields fail);
- deploy/nginx/ with `nginx -t`, then served for real on 127.0.0.1 to show what reaches the logs and the relay;
- deploy/systemd/ with `systemd-analyze verify`, and its ExecStart parsed by `python -m wimz.serve` itself.

A missing tool (nginx, systemd-analyze) skips with the reason locally and fails in CI
(WIMZ_REQUIRE_SERVICES=1), where .ci/run installs it.
"""

import datetime
import http.client
import http.server
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

from sim.process import free_port
from wimz import serve

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SITE = DEPLOY / "nginx/wimz-relay.conf"
UNIT = DEPLOY / "systemd/wimz-relay@.service"
K8S_VERSION = "1.30"  # the oldest Kubernetes release the manifests are meant for
# Worst case of the relay's SIGTERM shutdown (docs/architecture.md "Shutdown"): two steps of at most
# SHUTDOWN_GRACE_SECONDS with a 0.3 s settle between, then the cancel wait of as much again.
SHUTDOWN_WORST_SECONDS = 3 * serve.SHUTDOWN_GRACE_SECONDS + 0.3


def _tool(name: str) -> str:
    """Path of the command-line tool `name`; skip without it (fail in CI, where .ci/run installs it)."""
    path = shutil.which(name) or next((str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).exists()), None)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it: apt-get install nginx-light / systemd)"
        if os.environ.get("WIMZ_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


# --- docker-compose.yml ---------------------------------------------------------------------


def _compose_errors(document: dict) -> list[str]:
    schema = get_builtin_schema("vendor.compose-spec")
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_docker_compose_matches_the_compose_specification():
    """docker-compose.yml validates against the Compose Specification JSON schema (anchors merged as
    `docker compose` merges them); the same validator rejects a misspelt key."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert _compose_errors(compose) == []
    broken = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    broken["services"]["relay-a"]["restart_policy"] = "always"
    assert _compose_errors(broken), "the schema check accepted an unknown service key"


# --- Kubernetes -------------------------------------------------------------------------------


def _k8s_documents() -> list[tuple[str, dict]]:
    files = sorted((DEPLOY / "k8s").rglob("*.yaml"))
    assert files
    return [(str(path.relative_to(ROOT)), doc) for path in files for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_kubernetes_manifests_validate_against_the_api_schemas():
    """Every manifest under deploy/k8s/ is a valid object of its kind (strict: no unknown field), offline."""
    kinds = set()
    for name, doc in _k8s_documents():
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {'.'.join(map(str, exc.path))}: {exc.message}")
        kinds.add(doc["kind"])
    expected = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job", "ConfigMap", "Secret"}
    assert expected <= kinds
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(
            {**dict(_k8s_documents())["deploy/k8s/service.yaml"], "specs": {}}, K8S_VERSION, strict=True
        )


def test_kubernetes_probes_grace_period_and_migrations_match_the_relay():
    """Readiness and liveness probe /health; the grace period covers preStop plus the relay's worst-case
    shutdown; migrations run as a Job with the relay's own command; config comes from the ConfigMap and
    Secret; the ConfigMap holds the production example's settings."""
    docs = {doc["kind"]: doc for _, doc in _k8s_documents()}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:3] == ["python", "-m", "wimz.serve"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + SHUTDOWN_WORST_SECONDS
    sources = {ref for item in container["envFrom"] for ref in item}
    assert sources == {"configMapRef", "secretRef"}
    job = docs["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert job["envFrom"] == container["envFrom"]
    production = dict(line.split("=", 1) for line in (DEPLOY / "env.production.example").read_text().split())
    in_secret = set(docs["Secret"]["stringData"])
    assert set(production) - in_secret == set(docs["ConfigMap"]["data"])
    assert docs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert docs["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"


# --- nginx ------------------------------------------------------------------------------------


def _log_formats(conf: str) -> dict[str, str]:
    return {m[1]: m[2] for m in re.finditer(r"log_format\s+(\w+)\s+((?:'[^']*'\s*)+);", conf)}


def test_nginx_access_log_format_excludes_query_strings():
    """The site's access logs use a format built on $uri: never $request, $request_uri, $args,
    $query_string, $arg_* or the referrer (which can carry another page's query string)."""
    conf = SITE.read_text()
    formats = _log_formats(conf)
    used = set(re.findall(r"^\s*access_log\s+\S+\s+(\w+)\s*;", conf, re.MULTILINE))
    assert used and used <= set(formats), (used, formats)
    for name in used:
        fmt = formats[name]
        assert "$uri" in fmt
        for variable in re.findall(r"\$\w+", fmt):
            assert variable not in {"$request", "$request_uri", "$args", "$query_string", "$http_referer"}, variable
            assert not variable.startswith("$arg_"), variable


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate and key for 127.0.0.1 (cryptography; valid one day)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class _NginxUnderTest:
    """A temp copy of the site: certificate paths to a throwaway certificate, listens and upstreams on
    127.0.0.1, logs in the temp dir; wrapped in a minimal nginx.conf."""

    def __init__(self, tmp: Path, upstreams: list[int]):
        self.tmp = tmp
        (tmp / "logs").mkdir()
        cert, key = _self_signed(tmp)
        self.http_port, self.https_port = free_port(), free_port()
        site = SITE.read_text()
        site = site.replace("/etc/letsencrypt/live/relay.example.com/fullchain.pem", str(cert))
        site = site.replace("/etc/letsencrypt/live/relay.example.com/privkey.pem", str(key))
        site = site.replace("/var/log/nginx/", f"{tmp}/logs/")
        site = re.sub(r"^\s*listen \[::\]:\d+.*\n", "", site, flags=re.MULTILINE)
        site = re.sub(r"listen 80;", f"listen 127.0.0.1:{self.http_port};", site)
        site = re.sub(r"listen 443 ssl;", f"listen 127.0.0.1:{self.https_port} ssl;", site)
        servers = "".join(f"    server 127.0.0.1:{port};\n" for port in upstreams)
        site, count = re.subn(
            r"(upstream wimz_relay \{\n(?:\s*least_conn;\n)?)(?:\s*server [^\n]+\n)+", lambda m: m[1] + servers, site
        )
        assert count == 1
        (tmp / "site.conf").write_text(site)
        temp_paths = "".join(
            f"    {kind}_temp_path {tmp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (tmp / "nginx.conf").write_text(
            f"pid {tmp}/nginx.pid;\nerror_log {tmp}/logs/main-error.log;\n"
            "events { worker_connections 64; }\n"
            f"http {{\n{temp_paths}    access_log {tmp}/logs/default-access.log;\n    include {tmp}/site.conf;\n}}\n"
        )
        self.argv = [_tool("nginx"), "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "logs/startup.log")]

    def test_config(self) -> subprocess.CompletedProcess:
        return subprocess.run([*self.argv, "-t"], capture_output=True, text=True, timeout=30)

    def log(self, name: str) -> str:
        path = self.tmp / "logs" / name
        return path.read_text() if path.exists() else ""


def test_nginx_site_passes_nginx_t(tmp_path):
    """`nginx -t` accepts the site (TLS with a throwaway certificate, upstream on 127.0.0.1)."""
    nginx = _NginxUnderTest(tmp_path, [free_port()])
    result = nginx.test_config()
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


class _Upstream(http.server.ThreadingHTTPServer):
    """A stand-in relay on 127.0.0.1 that records each request's path and headers and answers 200."""

    def __init__(self):
        self.seen: list[tuple[str, dict]] = []
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # http.server's naming
                upstream.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                body = b"ok"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()


def test_nginx_site_keeps_tokens_out_of_its_logs_and_sets_forwarded_headers(tmp_path):
    """Served for real: `?token=` reaches the relay but neither nginx log (one upstream is down, so
    the error log gets upstream errors); X-Forwarded-For / -Proto are nginx's, not the client's; plain
    HTTP is redirected to https."""
    upstream = _Upstream()
    dead_port = free_port()
    nginx = _NginxUnderTest(tmp_path, [dead_port, upstream.server_address[1]])
    assert nginx.test_config().returncode == 0
    proc = subprocess.Popen([*nginx.argv, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    secret = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2VjcmV0LXNpZ25hdHVyZQ"
    try:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + 15
        statuses = []
        for _ in range(4):
            while True:
                try:
                    conn = http.client.HTTPSConnection("127.0.0.1", nginx.https_port, timeout=5, context=context)
                    conn.request(
                        "GET",
                        f"/ws/app?token={secret}",
                        headers={
                            "Host": "relay.example.com",
                            "X-Forwarded-For": "6.6.6.6",
                            "X-Forwarded-Proto": "http",
                            "Connection": "Upgrade",
                            "Upgrade": "websocket",
                        },
                    )
                    statuses.append(conn.getresponse().status)
                    conn.close()
                    break
                except (ConnectionRefusedError, ssl.SSLError, OSError):
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.1)
        plain = http.client.HTTPConnection("127.0.0.1", nginx.http_port, timeout=5)
        plain.request("GET", f"/api/x?token={secret}", headers={"Host": "relay.example.com"})
        redirect = plain.getresponse()
        assert redirect.status == 301 and redirect.getheader("Location").startswith("https://relay.example.com/")
    finally:
        proc.terminate()
        proc.wait(10)
        upstream.shutdown()
    assert statuses == [200] * 4
    assert upstream.seen and all(path == f"/ws/app?token={secret}" for path, _ in upstream.seen)
    for _, headers in upstream.seen:
        assert headers["x-forwarded-for"] == "127.0.0.1"
        assert headers["x-forwarded-proto"] == "https"
        assert headers["host"] == "relay.example.com"
        assert headers["upgrade"] == "websocket" and headers["connection"].lower() == "upgrade"
    access = nginx.log("wimz-relay.access.log")
    assert access.count("GET /ws/app HTTP/1.1") == 4 and access.count("GET /api/x HTTP/1.1") == 1
    assert f"127.0.0.1:{dead_port}, " in access, "no request met the dead upstream (nothing for the error log)"
    for name in ("wimz-relay.access.log", "wimz-relay.error.log", "main-error.log", "default-access.log"):
        assert secret not in nginx.log(name), name
        assert "token=" not in nginx.log(name), name


def test_nginx_websocket_timeouts_exceed_the_heartbeat():
    """WebSocket idle timeouts are well above the 30 s robot heartbeat and the relay's 20 s + 30 s
    ping; the upgrade headers are passed."""
    conf = SITE.read_text()
    ws = conf.split("location /ws {", 1)[1].split("}", 1)[0]
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        seconds = int(re.search(rf"{directive}\s+(\d+)s;", ws)[1])
        assert seconds > 2 * 30 + 20 + 30, directive
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_http_version 1.1;" in ws
    assert re.search(r"error_log\s+\S+\s+crit;", ws), "WebSocket request lines (with ?token=) reach the error log"


# --- systemd ----------------------------------------------------------------------------------


def _unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit as {section: [(key, value), ...]} (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def test_systemd_unit_has_env_file_restart_policy_and_sandboxing():
    """The unit reads its EnvironmentFile, restarts, gives the relay's shutdown time before SIGKILL,
    raises the descriptor limit and sandboxes the process."""
    service = dict(_unit(UNIT)["Service"])
    assert service["EnvironmentFile"].startswith("/etc/wimz/")
    assert service["Restart"] in {"always", "on-failure"}
    assert service["User"] == "wimz"
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) >= SHUTDOWN_WORST_SECONDS
    assert int(service["LimitNOFILE"]) >= 20000
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service.get(key) == value, key


def test_systemd_exec_start_is_the_real_serve_command(monkeypatch):
    """ExecStart is `python -m wimz.serve` with flags that wimz.serve parses itself: run its main() on
    them and check daphne gets exactly the project's flags (nothing unknown passed through)."""
    argv = shlex.split(dict(_unit(UNIT)["Service"])["ExecStart"].replace("%i", "8001"))
    assert argv[0].endswith("/bin/python") and argv[1:3] == ["-m", "wimz.serve"]
    captured = []
    monkeypatch.setattr("daphne.cli.CommandLineInterface.run", lambda self, args: captured.append(args))
    monkeypatch.setattr(serve, "relay_server_class", lambda: object)
    serve.main(argv[3:])
    assert captured == [serve.daphne_argv("127.0.0.1", 8001)]


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    """`systemd-analyze verify` accepts the relay unit (as instance @8001, the interpreter pointed at this
    one) and the backup service and timer, with no warning about them."""
    analyze = _tool("systemd-analyze")
    python = os.path.realpath(sys.executable)
    (tmp_path / "wimz-relay@8001.service").write_text(UNIT.read_text().replace("/opt/wimz/venv/bin/python", python))
    for name in ("wimz-pg-backup.service", "wimz-pg-backup.timer"):
        (tmp_path / name).write_text((DEPLOY / "systemd" / name).read_text())
    units = ["wimz-relay@8001.service", "wimz-pg-backup.service", "wimz-pg-backup.timer"]
    result = subprocess.run(
        [analyze, "verify", "--man=no", *(f"./{u}" for u in units)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "wimz" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_wimz_manage_is_valid_shell_and_runs_manage_py():
    """deploy/bin/wimz-manage parses as POSIX sh, sources the env file and runs manage.py from the app dir."""
    script = DEPLOY / "bin/wimz-manage"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True, timeout=10).returncode == 0
    text = script.read_text()
    assert '. "$ENV_FILE"' in text and 'exec "$PYTHON" manage.py "$@"' in text
    unit = dict(_unit(UNIT)["Service"])
    assert f"ENV_FILE=${{WIMZ_ENV_FILE:-{unit['EnvironmentFile']}}}" in text
    assert f"APP_DIR=${{WIMZ_APP_DIR:-{unit['WorkingDirectory']}}}" in text
    assert f"PYTHON=${{WIMZ_PYTHON:-{shlex.split(unit['ExecStart'])[0]}}}" in text
