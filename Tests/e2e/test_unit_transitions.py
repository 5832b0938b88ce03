# SPDX-License-Identifier: GPL-2.0-or-later
"""Fail-closed stays closed through the systemd unit's transitions.

No systemd runs here, so each test replays by hand the steps systemd takes for
systemd/dnsgate.service and systemd/dnsgate-firewall.service (PartOf=
dnsgate.service, ExecStart= applies the rules, ExecStop= is
`dnsgate-firewall unit-stopped %n`): the daemon's process is killed or stopped
as systemd would, and the rules unit's ExecStop= runs with the environment
systemd gives it and a stand-in `systemctl` on PATH that lists the jobs
systemd would have queued at that moment. Meanwhile a client asks for blocked
names without pause: none may reach the resolver, and none may get a real
answer, until the unit is stopped on request."""
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab import CLIENT_V4, ROOT, UPSTREAM_V4

FIREWALL = str(ROOT / "iptables" / "dnsgate-firewall")
RULES_UNIT = "dnsgate-firewall.service"
DAEMON_UNIT = "dnsgate.service"

CONFIG = """
queues: "0-1"
fail_mode: closed
stats_socket: {socket}
domain_lists:
  - {{name: blocked, domains: ["*.blocked.example"]}}
rule_groups:
  - name: base
    priority: 1
    rules:
      - {{name: block, priority: 1, domain_list: blocked, action: BLOCK}}
"""

# Asks for a new blocked name every 5 ms until told to stop (a file appears) or
# `seconds` pass, and writes what came back: rcode counts and any name that got
# an answer other than the forged NXDOMAIN.
PROBER = r"""
import json, os, socket, sys, time
import dns.message, dns.rcode
server, source, prefix, seconds, stop_file, out = sys.argv[1:7]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((source, 0))
sock.setblocking(False)
sent, rcodes, leaked, asked = 0, {}, [], {}
deadline = time.monotonic() + float(seconds)
def drain():
    while True:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        answer = dns.message.from_wire(data)
        name = asked.get(answer.id, "?")
        rcode = dns.rcode.to_text(answer.rcode())
        rcodes[rcode] = rcodes.get(rcode, 0) + 1
        if rcode != "NXDOMAIN":
            leaked.append(name)
while time.monotonic() < deadline and sent < 20000 and not os.path.exists(stop_file):
    name = f"{prefix}-{sent}.blocked.example"
    query = dns.message.make_query(name, "A")
    query.id = sent & 0xFFFF
    asked[query.id] = name
    sock.sendto(query.to_wire(), (server, 53))
    sent += 1
    time.sleep(0.005)
    drain()
time.sleep(0.5)
drain()
json.dump({"sent": sent, "rcodes": rcodes, "leaked": leaked}, open(out, "w"))
"""


class Prober:
    """Blocked queries from the client namespace, for as long as a transition takes."""

    def __init__(self, lab, prefix: str):
        self.lab = lab
        self.prefix = prefix
        self.stop_file = lab.dir / f"{prefix}.stop"
        self.out = lab.dir / f"{prefix}.json"
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", lab.client, "/usr/bin/python3", "-c", PROBER, UPSTREAM_V4, CLIENT_V4, prefix,
             "60", str(self.stop_file), str(self.out)], stderr=subprocess.PIPE, text=True)
        lab.processes.append(self.process)

    def finish(self) -> dict:
        self.stop_file.touch()
        _, stderr = self.process.communicate(timeout=30)
        assert self.process.returncode == 0, stderr
        return json.loads(self.out.read_text())


class FakeSystemctl:
    """A `systemctl` on PATH whose `list-jobs --no-legend` prints the jobs given."""

    def __init__(self, lab):
        self.folder = lab.dir / "fake-systemctl"
        self.folder.mkdir(exist_ok=True)
        self.jobs = self.folder / "jobs"
        self.status = self.folder / "status"
        script = self.folder / "systemctl"
        script.write_text(f"""#!/bin/sh
echo "$*" >> {self.folder}/calls
case "$1" in
    list-jobs) cat {self.jobs}; exit "$(cat {self.status})" ;;
esac
exit 0
""")
        script.chmod(0o755)
        self.set_jobs([])

    def set_jobs(self, jobs: list[tuple[str, str, str]], status: int = 0) -> None:
        """`jobs`: (unit, type, state), numbered as systemd numbers jobs."""
        self.jobs.write_text("".join(f"{100 + i:>4} {unit} {kind} {state}\n" for i, (unit, kind, state) in enumerate(jobs)))
        self.status.write_text(str(status))

    def calls(self) -> list[str]:
        path = self.folder / "calls"
        return path.read_text().splitlines() if path.exists() else []


def run_rules_unit_stop(lab, systemctl: FakeSystemctl, post: bool = False, **environment: str) -> str:
    """The rules unit's ExecStop=, as systemd runs it: `dnsgate-firewall unit-stopped %n`
    (with `post`, as an ExecStopPost= of a unit of its own: `… --post`)."""
    env = [f"PATH={systemctl.folder}:/usr/sbin:/usr/bin:/sbin:/bin"] + [f"{k}={v}" for k, v in environment.items()]
    result = lab.ns(lab.gateway, "env", "-i", *env, FIREWALL, "unit-stopped", RULES_UNIT, *(["--post"] if post else []))
    return result.stdout + result.stderr


def rule_lines(lab) -> list[str]:
    saved = lab.ns(lab.gateway, "iptables-save").stdout + lab.ns(lab.gateway, "ip6tables-save").stdout
    return sorted(line for line in saved.splitlines() if line.startswith("-A"))


def queue_rules(lab) -> list[str]:
    saved = lab.ns(lab.gateway, "iptables-save").stdout + lab.ns(lab.gateway, "ip6tables-save").stdout
    return [line for line in saved.splitlines() if "NFQUEUE" in line]


def assert_closed_rules_in_place(lab) -> None:
    rules = queue_rules(lab)
    # Queries, and answers (on clients' flows; untracked ones; on flows a forged answer opened), IPv4 and IPv6.
    assert len(rules) == 8, rules
    assert all("--queue-bypass" not in rule for rule in rules), rules


def start_unit(lab, config: Path) -> None:
    """systemd starting dnsgate.service: dnsgate-firewall.service's ExecStart=
    first (After=), then the daemon's ExecStartPre= check and ExecStart=."""
    lab.ns(lab.gateway, FIREWALL, "apply", "--closed")
    lab.rules_applied = ["--closed"]
    check = lab.ns(lab.gateway, str(lab.binary), "check", "--config", str(config), check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    lab.start_dnsgate(config)


def leaked_to_resolver(lab, prefix: str) -> list[str]:
    return [line for line in lab.upstream_queries() if f"{prefix}-" in line]


@pytest.fixture
def unit(lab):
    config = lab.write_config(CONFIG.format(socket=lab.socket_path), "unit.yaml")
    systemctl = FakeSystemctl(lab)
    start_unit(lab, config)
    yield config, systemctl
    lab.stop_dnsgate()
    lab.remove_rules()


def assert_nothing_leaked(lab, prefix: str, report: dict) -> None:
    assert report["sent"] > 100, report
    assert report["leaked"] == [], f"answers other than the forged NXDOMAIN: {report}"
    assert leaked_to_resolver(lab, prefix) == [], "blocked names reached the resolver"


def test_a_crash_keeps_the_rules_until_the_automatic_restart(lab, client, unit):
    config, systemctl = unit
    prober = Prober(lab, "crash")
    time.sleep(0.3)
    lab.dnsgate.send_signal(signal.SIGKILL)
    lab.dnsgate.wait(timeout=10)
    # A crash leaves dnsgate-firewall.service alone (PartOf= propagates jobs,
    # not failures). Run as an ExecStopPost= of a unit of its own, as the
    # brief's single-unit variant would, the hook sees the crash's result and
    # no job yet: systemd queues the restart job only after RestartSec.
    out = run_rules_unit_stop(lab, systemctl, post=True, SERVICE_RESULT="signal", EXIT_CODE="killed", EXIT_STATUS="KILL")
    assert "keeping the rules" in out, out
    assert_closed_rules_in_place(lab)
    # ... and with the restart job already listed (what Restart= queues after RestartSec=1s).
    systemctl.set_jobs([(DAEMON_UNIT, "restart", "running")])
    out = run_rules_unit_stop(lab, systemctl, SERVICE_RESULT="signal", EXIT_CODE="killed", EXIT_STATUS="KILL")
    assert "keeping the rules" in out, out
    time.sleep(1.0)  # RestartSec=1s: the daemon is down, the fail-closed rules drop
    assert_closed_rules_in_place(lab)
    # The restart job reaches the rules unit through PartOf= as a restart job:
    # its ExecStop= keeps the rules, its ExecStart= applies them again in place.
    systemctl.set_jobs([(DAEMON_UNIT, "restart", "waiting"), (RULES_UNIT, "restart", "running")])
    out = run_rules_unit_stop(lab, systemctl, SERVICE_RESULT="success")
    assert "is restarting (restart job): keeping the rules" in out, out
    assert_closed_rules_in_place(lab)
    start_unit(lab, config)
    report = prober.finish()
    assert_nothing_leaked(lab, "crash", report)
    assert report["rcodes"].get("NXDOMAIN", 0) > 0, "enforced again after the restart"
    assert "list-jobs --no-legend --no-pager" in systemctl.calls()
    assert client.probe("after-crash.blocked.example")["rcode"] == "NXDOMAIN"


def test_a_restart_on_request_keeps_the_rules(lab, client, unit):
    config, systemctl = unit
    prober = Prober(lab, "restart")
    time.sleep(0.3)
    # systemctl restart dnsgate: the restart job stops the daemon (SIGTERM)...
    lab.stop_dnsgate()
    # ... and restarts dnsgate-firewall.service (PartOf=), whose ExecStop= runs
    # with the restart jobs listed.
    systemctl.set_jobs([(DAEMON_UNIT, "restart", "running"), (RULES_UNIT, "restart", "running")])
    out = run_rules_unit_stop(lab, systemctl, SERVICE_RESULT="success")
    assert "keeping the rules" in out, out
    assert_closed_rules_in_place(lab)
    time.sleep(0.5)
    start_unit(lab, config)
    report = prober.finish()
    assert_nothing_leaked(lab, "restart", report)
    assert client.probe("after-restart.blocked.example")["rcode"] == "NXDOMAIN"


def test_a_stop_on_request_removes_the_rules(lab, client, unit):
    _, systemctl = unit
    prober = Prober(lab, "stop")
    time.sleep(0.3)
    # systemctl stop dnsgate: the daemon stops first (After=), then the rules unit.
    lab.stop_dnsgate()
    time.sleep(0.3)
    assert_closed_rules_in_place(lab)
    report = prober.finish()
    assert_nothing_leaked(lab, "stop", report)
    # PartOf= gives dnsgate-firewall.service a stop job.
    systemctl.set_jobs([(DAEMON_UNIT, "stop", "running"), (RULES_UNIT, "stop", "running")])
    out = run_rules_unit_stop(lab, systemctl, SERVICE_RESULT="success")
    assert "stopped on request: removing the rules" in out, out
    assert queue_rules(lab) == []
    # Without the unit, DNS is not filtered any more: the stop was asked for.
    assert client.probe("after-stop.blocked.example")["rcode"] == "NOERROR"
    lab.rules_applied = None


def test_a_stop_of_the_failed_unit_removes_the_rules(lab, client, unit):
    """After Restart= gave up (start limit), `systemctl stop dnsgate` still
    reaches the rules unit: systemd propagates the stop job whatever the state."""
    _, systemctl = unit
    lab.dnsgate.send_signal(signal.SIGKILL)
    lab.dnsgate.wait(timeout=10)
    assert client.probe("failed.blocked.example", timeout=1.0)["timeout"] is True, "closed while failed"
    assert_closed_rules_in_place(lab)
    systemctl.set_jobs([(DAEMON_UNIT, "stop", "running"), (RULES_UNIT, "stop", "waiting")])
    out = run_rules_unit_stop(lab, systemctl, SERVICE_RESULT="success")
    assert "removing the rules" in out, out
    assert queue_rules(lab) == []
    lab.rules_applied = None


@pytest.mark.parametrize("jobs, status, result, post, kept", [
    ([(RULES_UNIT, "stop", "running")], 0, "success", False, False),
    ([(RULES_UNIT, "stop", "running")], 0, "timeout", False, False),   # a stop that had to SIGKILL is still a stop
    ([(RULES_UNIT, "restart", "running")], 0, "success", False, True),
    ([(RULES_UNIT, "start", "waiting")], 0, "exit-code", False, True),
    ([(RULES_UNIT, "try-restart", "running")], 0, "success", False, True),
    ([], 0, "success", False, True),                                     # ExecStop= with no job: jobs misread, stay closed
    ([("other.service", "stop", "running")], 0, "success", False, True),
    ([], 0, "signal", True, True),                                       # ExecStopPost= after a crash
    ([], 0, "core-dump", True, True),
    ([], 0, "exit-code", True, True),
    ([], 0, "success", True, False),                                     # exited cleanly, nothing will restart it
    ([], 1, "success", False, True),                                     # jobs unreadable: stay closed
], ids=["stop", "stop-after-timeout", "restart", "start", "try-restart", "no-job-found", "other-unit-stopping",
        "post-crash-signal", "post-crash-core", "post-crash-exit-code", "post-clean-exit", "jobs-unreadable"])
def test_the_hook_removes_the_rules_only_for_a_stop(lab, jobs, status, result, post, kept):
    systemctl = FakeSystemctl(lab)
    lab.apply_rules("--closed")
    try:
        systemctl.set_jobs(jobs, status)
        out = run_rules_unit_stop(lab, systemctl, post=post, SERVICE_RESULT=result)
        assert (queue_rules(lab) != []) == kept, out
        if status:
            assert "dnsgate-firewall remove" in out, "says how to remove them by hand"
    finally:
        lab.remove_rules()


def test_apply_over_applied_rules_never_leaves_a_moment_without_them(lab, client, unit):
    """The rules unit's ExecStart= during a restart runs over rules in place:
    with the daemon down, 20 re-applications under a stream of blocked queries
    let none through, and leave exactly one copy of each rule."""
    lab.stop_dnsgate()
    before = rule_lines(lab)
    prober = Prober(lab, "reapply")
    for _ in range(20):
        lab.ns(lab.gateway, FIREWALL, "apply", "--closed")
    report = prober.finish()
    assert report["sent"] > 50 and report["rcodes"] == {} and report["leaked"] == [], report
    assert leaked_to_resolver(lab, "reapply") == []
    assert rule_lines(lab) == before


def test_the_units_say_what_the_replay_assumes():
    rules_unit = (ROOT / "systemd" / "dnsgate-firewall.service").read_text()
    daemon_unit = (ROOT / "systemd" / "dnsgate.service").read_text()
    assert "PartOf=dnsgate.service" in rules_unit
    assert "ExecStart=/usr/local/share/dnsgate/iptables/dnsgate-firewall apply" in rules_unit
    assert "ExecStop=/usr/local/share/dnsgate/iptables/dnsgate-firewall unit-stopped %n" in rules_unit
    assert "RemainAfterExit=yes" in rules_unit
    assert "Requires=dnsgate-firewall.service" in daemon_unit and "After=dnsgate-firewall.service" in daemon_unit
    assert "dnsgate-firewall remove" not in daemon_unit, "the daemon's unit never removes the rules itself"
    assert "Restart=on-failure" in daemon_unit
