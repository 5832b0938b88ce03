# SPDX-License-Identifier: GPL-2.0-or-later
"""Floods: a host flooding blocked names as fast as dnsperf can send them
(far beyond what one queue decides) must not carry another blocked query past
the gateway. By default a full queue drops, in both fail modes; with
`on_overload: pass` the overflow goes through and is counted; with
`--rate-limit` the flooding host is held back before the queue and other
hosts' queries are still decided."""
import json
import subprocess
import time

import pytest

from lab import CLIENT2_V4, CLIENT_V4, UPSTREAM_V4

FLOOD_SECONDS = 4
PROBES = 100

PROBE = """
import json, socket, sys, time, dns.message, dns.rcode
names = [f"p{i}.probe.flood.example" for i in range(%d)]
socks = []
for name in names:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("%s", 0)); s.setblocking(False)
    s.sendto(dns.message.make_query(name, "A").to_wire(), ("%s", 53))
    socks.append(s)
    time.sleep(0.01)
deadline = time.monotonic() + 2.0
result = {"forged": 0, "upstream": 0, "none": 0}
answered = set()
while time.monotonic() < deadline and len(answered) < len(socks):
    for i, s in enumerate(socks):
        if i in answered:
            continue
        try:
            wire = s.recv(4096)
        except BlockingIOError:
            continue
        answered.add(i)
        response = dns.message.from_wire(wire)
        result["upstream" if "203.0.113.7" in response.to_text() else "forged"] += 1
    time.sleep(0.01)
result["none"] = len(socks) - len(answered)
print(json.dumps(result))
"""


def flood_and_probe(lab, config_text: str, rules=(), name="flood"):
    (lab.dir / "flood-list.txt").write_text("*.flood.example\n")
    (lab.dir / "flood-names.txt").write_text("".join(f"f{i}.x.flood.example A\n" for i in range(5000)))
    config = lab.write_config(f"""queues: "0-1"
stats_socket: {lab.socket_path}
domain_lists: [{{name: f, file: flood-list.txt}}]
rule_groups: [{{name: g, priority: 1, rules: [{{name: r, priority: 1, domain_list: f, action: BLOCK}}]}}]
{config_text}
""", f"{name}.yaml")
    lab.apply_rules(*rules)
    lab.start_dnsgate(config)
    try:
        flood = subprocess.Popen(
            ["ip", "netns", "exec", lab.client, "dnsperf", "-s", UPSTREAM_V4, "-a", CLIENT2_V4,
             "-d", str(lab.dir / "flood-names.txt"), "-l", str(FLOOD_SECONDS), "-c", "8", "-q", "5000", "-t", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.0)
        probes = json.loads(lab.ns(lab.client, "/usr/bin/python3", "-c", PROBE % (PROBES, CLIENT_V4, UPSTREAM_V4),
                                   timeout=30).stdout)
        out, _ = flood.communicate(timeout=FLOOD_SECONDS + 30)
        sent = int(next(l.split()[-1] for l in out.splitlines() if "Queries sent:" in l))
        stats = lab.stats()
        assert lab.dnsgate.poll() is None, "the daemon survived the flood"
        report = {"flood_qps": round(sent / FLOOD_SECONDS), "probes": probes,
                  "decided": stats["packets"]["received"], "overflow_dropped": stats["packets"]["overflow_dropped"],
                  "overflow_passed": stats["packets"]["overflow_passed"]}
        print(f"\n{name}: {report}")
        return report
    finally:
        lab.stop_dnsgate()
        lab.remove_rules()


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_a_flood_never_carries_a_blocked_query_through_by_default(lab, mode):
    report = flood_and_probe(lab, f"fail_mode: {mode}", rules=(["--closed"] if mode == "closed" else []),
                             name=f"flood-{mode}")
    assert report["probes"]["upstream"] == 0, "no blocked probe was answered by the resolver"
    assert report["flood_qps"] > 1000


def test_on_overload_pass_counts_what_it_lets_through(lab):
    report = flood_and_probe(lab, "fail_mode: open\non_overload: pass", name="flood-pass")
    leaked = report["probes"]["upstream"]
    assert report["overflow_passed"] >= leaked, "every query let through undecided is counted"
    assert report["overflow_dropped"] == 0


def test_a_rate_limit_keeps_the_flooder_from_starving_others(lab):
    report = flood_and_probe(lab, "fail_mode: open", rules=("--rate-limit", "500"), name="flood-rate-limited")
    assert report["probes"]["upstream"] == 0
    assert report["probes"]["forged"] >= 0.95 * PROBES, "other hosts' queries are still decided and answered"
    assert report["overflow_dropped"] == 0, "the queue never filled"
