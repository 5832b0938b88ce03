# SPDX-License-Identifier: GPL-2.0-or-later
"""Prometheus over HTTP (`metrics_listen`): a real Prometheus scrapes the
gateway from the LAN and sees exactly the decisions made; the endpoint's
answers, its limits, a port in use, and the shipped alert rules and dashboard."""
import json
import re
import subprocess
import time
import urllib.parse
from pathlib import Path

from lab import CLIENT_V4, GATEWAY_LAN_V4, GATEWAY_LAN_V6, PYTHON, ROOT, UPSTREAM_V4, terminate, wait_until

CONTRIB = ROOT / "contrib" / "prometheus"
METRICS_PORT = 9153
PROMETHEUS_LISTEN = f"{CLIENT_V4}:9090"

CONFIG = """
queues: "0-1"
stats_socket: {socket}
{metrics}
domain_lists:
  - name: bad
    domains: ["bad.example", "*.bad.example"]
  - name: good
    domains: ["good.example", "*.good.example"]
rule_groups:
  - name: base
    priority: 1
    rules:
      - {{name: allow-good, priority: 1, domain_list: good, action: ALLOW}}
      - {{name: block-bad, priority: 2, domain_list: bad, action: BLOCK}}
"""

# One HTTP exchange, run in the client namespace: prints status, headers and body as JSON.
HTTP_CLIENT = """
import http.client, json, sys
host, port, method, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
connection = http.client.HTTPConnection(host, port, timeout=5)
connection.request(method, path)
response = connection.getresponse()
print(json.dumps({"status": response.status, "headers": {k.lower(): v for k, v in response.getheaders()},
                  "body": response.read().decode()}))
"""

# Queries from the client namespace, each waited for: prints the rcodes.
QUERIES = """
import json, sys
import dns.message, dns.query, dns.rcode
server, names = sys.argv[1], sys.argv[2:]
rcodes = []
for name in names:
    response = dns.query.udp(dns.message.make_query(name, "A"), server, timeout=2, source="192.0.2.10")
    rcodes.append(dns.rcode.to_text(response.rcode()))
print(json.dumps(rcodes))
"""

# Clients that misbehave: `count` connections, the first trickling a request
# head a byte at a time, the others sending nothing. Prints, per connection, how long
# until the server closed it (null: still open after `wait` seconds).
BAD_CLIENTS = """
import json, select, socket, sys, time
host, port, count, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
start = time.monotonic()
idle = [socket.create_connection((host, port), timeout=5) for _ in range(count)]
print("connected", flush=True)
closed = {}
trickle = b"GET /metrics HTTP/1.1\\r\\nHost: x\\r\\nX-Slow: " + b"a" * 200
sent = 0
while time.monotonic() - start < wait and len(closed) < len(idle):
    open_ones = [s for i, s in enumerate(idle) if i not in closed]
    readable, _, _ = select.select(open_ones, [], [], 0.5)
    for s in readable:
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if not data:
            closed[idle.index(s)] = round(time.monotonic() - start, 2)
    # The first connection trickles a byte every half second, never finishing its head.
    if 0 not in closed and sent < len(trickle):
        try:
            idle[0].send(trickle[sent:sent + 1])
            sent += 1
        except OSError:
            pass
print(json.dumps([closed.get(i) for i in range(len(idle))]))
"""


def config_text(lab, metrics_listen: str | None) -> str:
    metrics = f'metrics_listen: "{metrics_listen}"' if metrics_listen else ""
    return CONFIG.format(socket=lab.socket_path, metrics=metrics)


def http(lab, host: str, path: str, method: str = "GET", port: int = METRICS_PORT) -> dict:
    result = lab.ns(lab.client, PYTHON, "-c", HTTP_CLIENT, host, str(port), method, path, timeout=15)
    return json.loads(result.stdout)


def query(lab, names: list[str]) -> list[str]:
    result = lab.ns(lab.client, PYTHON, "-c", QUERIES, UPSTREAM_V4, *names, timeout=10 + 3 * len(names))
    return json.loads(result.stdout)


def samples(text: str) -> list[str]:
    """The exposition's lines without their values: comments whole, samples as name{labels}."""
    return [line if line.startswith("#") else line.rsplit(" ", 1)[0] for line in text.splitlines()]


def start_dnsgate(lab, metrics_listen: str | None = f"{GATEWAY_LAN_V4}:{METRICS_PORT}"):
    config = lab.write_config(config_text(lab, metrics_listen), "metrics.yaml")
    lab.apply_rules()
    lab.start_dnsgate(config)
    return config


def stop(lab) -> None:
    lab.stop_dnsgate()
    lab.remove_rules()


def test_metrics_healthz_and_refusals(lab):
    start_dnsgate(lab)
    try:
        metrics = http(lab, GATEWAY_LAN_V4, "/metrics")
        assert metrics["status"] == 200
        assert metrics["headers"]["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        socket_text = lab.cli("stats", "--metrics", "--socket", str(lab.socket_path)).stdout
        assert samples(metrics["body"]) == samples(socket_text), "the same families, labels and order as the socket's"
        assert 'dnsgate_verdicts_total{verdict="block"} 0' in metrics["body"]
        check = subprocess.run(["promtool", "check", "metrics"], input=metrics["body"], capture_output=True,
                               text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr

        health = http(lab, GATEWAY_LAN_V4, "/healthz")
        assert (health["status"], health["body"]) == (200, "ok\n")
        head = http(lab, GATEWAY_LAN_V4, "/metrics", method="HEAD")
        assert head["status"] == 200 and head["body"] == "" and int(head["headers"]["content-length"]) > 1000
        missing = http(lab, GATEWAY_LAN_V4, "/metrics/../stats")
        assert missing["status"] == 404
        assert http(lab, GATEWAY_LAN_V4, "/")["status"] == 404
        posted = http(lab, GATEWAY_LAN_V4, "/metrics", method="POST")
        assert posted["status"] == 405 and posted["headers"]["allow"] == "GET, HEAD"
        assert "metrics on http://192.0.2.1:9153/metrics" in lab.dnsgate_stderr()
    finally:
        stop(lab)


def start_prometheus(lab, folder: Path) -> subprocess.Popen:
    folder.mkdir(exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {CONTRIB / "dnsgate-alerts.yml"}
scrape_configs:
  - job_name: dnsgate
    static_configs:
      - targets: ["{GATEWAY_LAN_V4}:{METRICS_PORT}"]
""")
    log = open(folder / "prometheus.log", "w")
    process = subprocess.Popen(
        ["ip", "netns", "exec", lab.client, "prometheus", f"--config.file={config}",
         f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address={PROMETHEUS_LISTEN}",
         "--storage.tsdb.retention.time=1h", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    lab.processes.append(process)
    return process


def prometheus_api(lab, path: str) -> dict:
    host, port = PROMETHEUS_LISTEN.split(":")
    return json.loads(http(lab, host, path, port=int(port))["body"])


def prometheus_query(lab, expression: str) -> dict:
    """The API's answer to an instant query (status, data or error)."""
    return prometheus_api(lab, "/api/v1/query?query=" + urllib.parse.quote(expression))


def verdicts_seen(lab) -> dict[str, int] | None:
    try:
        answer = prometheus_query(lab, "dnsgate_verdicts_total")
    except (subprocess.SubprocessError, json.JSONDecodeError, KeyError):
        return None  # Prometheus not listening yet
    if answer.get("status") != "success":
        return None
    return {series["metric"]["verdict"]: int(series["value"][1]) for series in answer["data"]["result"]}


def test_prometheus_scrapes_exactly_the_decisions_made(lab):
    blocked, allowed = 7, 5
    start_dnsgate(lab)
    prometheus = start_prometheus(lab, lab.dir / "prometheus")
    try:
        # A scrape before the queries: Prometheus sees the counters start from 0.
        assert wait_until(lambda: (verdicts_seen(lab) or {}).get("block") == 0, timeout=30, step=0.5)
        names = [f"host{i}.bad.example" for i in range(blocked)] + [f"www{i}.good.example" for i in range(allowed)]
        assert query(lab, names) == ["NXDOMAIN"] * blocked + ["NOERROR"] * allowed
        expected = {"block": blocked, "allow": allowed, "alert": 0, "no_match": 0, "not_dns": 0, "not_query": 0}
        try:
            wait_until(lambda: verdicts_seen(lab) == expected, timeout=30, step=0.5)
        finally:
            seen = verdicts_seen(lab)
        assert seen == expected
        hits = prometheus_query(lab, 'dnsgate_rule_hits_total{rule="block-bad"}')["data"]["result"]
        assert [int(series["value"][1]) for series in hits] == [blocked]
        up = prometheus_query(lab, 'up{job="dnsgate"}')["data"]["result"]
        assert [series["value"][1] for series in up] == ["1"]
        # The shipped alert rules load and none fires on a healthy gateway (zone
        # and list alerts have no series here).
        rules = prometheus_api(lab, "/api/v1/rules")
        loaded = [rule for group in rules["data"]["groups"] for rule in group["rules"]]
        assert len(loaded) >= 13 and all(rule["health"] == "ok" for rule in loaded), loaded
        assert [rule["name"] for rule in loaded if rule["state"] != "inactive"] == []
        # Every query of the dashboard is one Prometheus accepts.
        dashboard = json.loads((CONTRIB / "dnsgate-dashboard.json").read_text())
        expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
        assert len(expressions) >= 20
        for expression in expressions:
            concrete = (expression.replace("$__rate_interval", "1m").replace("$job", "dnsgate")
                        .replace("$instance", ".*"))
            answer = prometheus_query(lab, concrete)
            assert answer["status"] == "success", (expression, answer)
    finally:
        terminate(prometheus)
        stop(lab)


def test_idle_slow_and_surplus_clients_are_bounded_and_dns_is_undisturbed(lab):
    start_dnsgate(lab)
    surplus = 6
    bad = subprocess.Popen(["ip", "netns", "exec", lab.client, PYTHON, "-c", BAD_CLIENTS, GATEWAY_LAN_V4,
                            str(METRICS_PORT), str(64 + surplus), "16"], stdout=subprocess.PIPE, text=True)
    lab.processes.append(bad)
    try:
        assert bad.stdout.readline().strip() == "connected"
        # While every slot is taken, queries are decided as ever, quickly.
        started = time.monotonic()
        assert query(lab, ["x.bad.example", "x.good.example"] * 5) == ["NXDOMAIN", "NOERROR"] * 5
        assert time.monotonic() - started < 5
        closed = json.loads(bad.communicate(timeout=30)[0])
        assert bad.returncode == 0
        # Past 64 connections, the surplus is closed at once; the rest, idle
        # or trickling, when the 10 s exchange deadline passes.
        assert all(after is not None for after in closed), closed
        assert sum(1 for after in closed if after < 2) == surplus, closed
        assert all(9 <= after <= 13 for after in sorted(closed)[surplus:]), closed
        assert closed[0] >= 9, "the trickling client is closed at the deadline too, though it keeps sending"
        assert http(lab, GATEWAY_LAN_V4, "/metrics")["status"] == 200
        assert 'dnsgate_verdicts_total{verdict="block"} 5' in http(lab, GATEWAY_LAN_V4, "/metrics")["body"]
    finally:
        terminate(bad)
        stop(lab)


def test_a_port_in_use_keeps_enforcing_and_a_reload_applies_metrics_listen(lab):
    occupier = subprocess.Popen(
        ["ip", "netns", "exec", lab.gateway, PYTHON, "-c",
         # SO_REUSEADDR: earlier tests' connections may linger in TIME_WAIT; a listener still excludes dnsgate.
         "import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
         "s.bind(('192.0.2.1', 9153)); s.listen(); "
         "print('ready', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    lab.processes.append(occupier)
    try:
        assert occupier.stdout.readline().strip() == "ready"
        config = start_dnsgate(lab)
        assert re.search(r"metrics_listen 192\.0\.2\.1:9153: .*[Aa]ddress already in use.*enforcing without",
                         lab.dnsgate_stderr()), lab.dnsgate_stderr()
        assert query(lab, ["a.bad.example", "a.good.example"]) == ["NXDOMAIN", "NOERROR"]
        terminate(occupier)
        reloaded = lab.cli("reload", "--socket", str(lab.socket_path))
        assert reloaded.stdout.startswith("ok: policy generation 2") and "warning" not in reloaded.stdout
        assert http(lab, GATEWAY_LAN_V4, "/healthz")["status"] == 200

        # Moved on reload: to IPv6; the old address stops answering.
        config.write_text(config_text(lab, f"[{GATEWAY_LAN_V6}]:{METRICS_PORT + 1}"))
        assert "warning" not in lab.cli("reload", "--socket", str(lab.socket_path)).stdout
        assert http(lab, GATEWAY_LAN_V6, "/metrics", port=METRICS_PORT + 1)["status"] == 200
        gone = lab.ns(lab.client, PYTHON, "-c", HTTP_CLIENT, GATEWAY_LAN_V4, str(METRICS_PORT), "GET", "/metrics",
                      check=False, timeout=15)
        assert gone.returncode != 0 and "ConnectionRefusedError" in gone.stderr

        # From every address to one of them, same port: the old listener holds
        # the port, so it is let go first (and would be taken back on failure).
        for listen in (f"0.0.0.0:{METRICS_PORT}", f"{GATEWAY_LAN_V4}:{METRICS_PORT}"):
            config.write_text(config_text(lab, listen))
            assert "warning" not in lab.cli("reload", "--socket", str(lab.socket_path)).stdout
            assert http(lab, GATEWAY_LAN_V4, "/metrics")["status"] == 200

        # A new address that cannot be bound (not the gateway's): the policy
        # reloads, the endpoint stays where it was, and the reply says so.
        config.write_text(config_text(lab, f"{UPSTREAM_V4}:{METRICS_PORT}"))
        kept = lab.cli("reload", "--socket", str(lab.socket_path))
        assert kept.stdout.startswith("ok: policy generation 6")
        assert f"warning: metrics_listen {UPSTREAM_V4}:{METRICS_PORT}: " in kept.stdout
        assert f"still serving metrics on {GATEWAY_LAN_V4}:{METRICS_PORT}" in kept.stdout
        assert http(lab, GATEWAY_LAN_V4, "/healthz")["status"] == 200
        assert query(lab, ["b.bad.example"]) == ["NXDOMAIN"]
    finally:
        terminate(occupier)
        stop(lab)


def test_shipped_alert_rules_pass_promtool():
    checked = subprocess.run(["promtool", "check", "rules", str(CONTRIB / "dnsgate-alerts.yml")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 13 rules found" in checked.stdout
    # The rules' own unit tests: each alert fires on the series it is for, and only then.
    tested = subprocess.run(["promtool", "test", "rules", "dnsgate-alerts.test.yml"], cwd=CONTRIB,
                            capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    config = subprocess.run(["promtool", "check", "config", "prometheus.yml"], cwd=CONTRIB,
                            capture_output=True, text=True, timeout=60)
    assert config.returncode == 0, config.stdout + config.stderr
