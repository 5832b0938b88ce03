# SPDX-License-Identifier: GPL-2.0-or-later
"""The firewall end to end: real clients in a client namespace, dnsgate behind
the project's own shipped rules in the gateway namespace, a resolver upstream."""
import datetime
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from answers import answer_stage, udp_segment
from lab import (CLIENT_V4, CLIENT2_V4, CLIENT_V6, CLIENT2_V6, GATEWAY_LAN_V4, GATEWAY_LAN_V6, PYTHON, ROOT,
                 UPSTREAM_V4, UPSTREAM_V6)

POLICY = """
queues: "0-1"
fail_mode: {fail_mode}
undecodable: {undecodable}
stats_socket: {socket}
query_log:
  path: {log}
  actions: [BLOCK, ALERT]
block_defaults:
  ttl: 42
  extended_error: true
domain_lists:
  - name: corp-allow
    domains: ["allowed.nx.example"]
  - name: nx
    file: lists/nx.txt
  - name: hostsfile
    file: lists/hosts.txt
    format: hosts
  - {{name: nodata, domains: [nodata.example]}}
  - {{name: refused, domains: [refused.example]}}
  - {{name: drop, domains: [drop.example]}}
  - {{name: sink-a, domains: [sink-a.example]}}
  - {{name: sink-aaaa, domains: [sink-aaaa.example]}}
  - {{name: sink-cname, domains: [sink-cname.example]}}
  - {{name: guest, domains: [games.example]}}
  - {{name: watched, domains: [watched.example]}}
  - {{name: txt-only, domains: [txt-only.example]}}
rule_groups:
  - name: guests
    priority: 50
    clients: ["{client2_v4}/32", "{client2_v6}/128"]
    rules:
      - {{name: no-games, priority: 1, domain_list: guest, action: BLOCK, block_response: REFUSED}}
  - name: base
    priority: 100
    rules:
      - {{name: allow-corp, priority: 5, domain_list: corp-allow, action: ALLOW}}
      - {{name: block-nx, priority: 10, domain_list: nx, action: BLOCK, block_response: NXDOMAIN}}
      - {{name: block-hosts, priority: 11, domain_list: hostsfile, action: BLOCK}}
      - {{name: nodata, priority: 20, domain_list: nodata, action: BLOCK, block_response: NODATA}}
      - {{name: refused, priority: 30, domain_list: refused, action: BLOCK, block_response: REFUSED}}
      - {{name: drop, priority: 40, domain_list: drop, action: BLOCK, block_response: DROP}}
      - name: sink-a
        priority: 50
        domain_list: sink-a
        action: BLOCK
        block_response: OVERRIDE
        override: {{type: A, value: 192.0.2.250, ttl: 300}}
      - name: sink-aaaa
        priority: 51
        domain_list: sink-aaaa
        action: BLOCK
        block_response: OVERRIDE
        override: {{type: AAAA, value: "2001:db8::250", ttl: 301}}
      - name: sink-cname
        priority: 52
        domain_list: sink-cname
        action: BLOCK
        block_response: OVERRIDE
        override: {{type: CNAME, value: sinkhole.example.net, ttl: 302}}
      - {{name: watch, priority: 60, domain_list: watched, action: ALERT}}
      - {{name: txt-only, priority: 70, domain_list: txt-only, action: BLOCK, qtypes: [TXT]}}
"""


def start(lab, fail_mode="open", rules=(), undecodable="drop"):
    (lab.dir / "lists").mkdir(exist_ok=True)
    (lab.dir / "lists" / "nx.txt").write_text("# blocked names\nnx.example\n*.nx.example\n")
    (lab.dir / "lists" / "hosts.txt").write_text("0.0.0.0 hosts-blocked.example other.example  # two names\n")
    log = lab.dir / "queries.jsonl"
    if log.exists():
        log.unlink()
    config = lab.write_config(POLICY.format(fail_mode=fail_mode, undecodable=undecodable, socket=lab.socket_path, log=log,
                                            client2_v4=CLIENT2_V4, client2_v6=CLIENT2_V6))
    lab.apply_rules(*rules)
    lab.start_dnsgate(config)
    return config


@pytest.fixture(scope="module")
def firewall(lab):
    config = start(lab)
    yield lab
    lab.stop_dnsgate()
    lab.remove_rules()


SERVERS = [pytest.param((UPSTREAM_V4, CLIENT_V4), id="ipv4"), pytest.param((UPSTREAM_V6, CLIENT_V6), id="ipv6")]


def reached_upstream(lab, name: str) -> bool:
    return any(line.split()[0] == name.lower().rstrip(".") + "." for line in lab.upstream_queries())


@pytest.mark.parametrize("server", SERVERS)
def test_unlisted_name_is_answered_by_the_upstream(firewall, client, server):
    upstream, source = server
    response = client.probe("pass-through.example", server=upstream, source=source)
    assert response["rcode"] == "NOERROR"
    assert response["answer"][0]["data"] == ["203.0.113.7"]
    assert reached_upstream(firewall, "pass-through.example")


@pytest.mark.parametrize("server", SERVERS)
def test_nxdomain_is_forged_with_soa_ede_and_cookies_echoed_never_invented(firewall, client, server):
    upstream, source = server
    name = "Mixed.Case.NX.example"
    response = client.probe(name, server=upstream, source=source, cookie="0102030405060708", qid=4321)
    assert response["rcode"] == "NXDOMAIN"
    assert response["id"] == 4321
    assert sorted(response["flags"]) == ["QR", "RA", "RD"]  # AA and AD clear
    assert response["question_name_wire_case"] == name + "."  # case preserved
    soa = response["authority"][0]
    assert soa["type"] == "SOA" and soa["ttl"] == 42
    assert soa["data"][0].split()[-1] == "42"  # SOA MINIMUM = block TTL
    assert response["ede"] == [{"code": 15, "text": "blocked by dnsgate rule base/block-nx"}]
    assert response["cookie"] is None, "no server cookie is invented for a client cookie alone"
    both = "0102030405060708" + "a1b2c3d4e5f60718"
    assert client.probe("cookie." + name, server=upstream, source=source, cookie=both)["cookie"] == both, \
        "a client and server cookie are echoed unchanged"
    assert not reached_upstream(firewall, name)


@pytest.mark.parametrize("server", SERVERS)
def test_dig_shows_the_block(firewall, server):
    upstream, source = server
    out = firewall.dig("-b", source, "x.nx.example", server=upstream)
    assert "status: NXDOMAIN" in out
    assert "EDE: 15 (Blocked): (blocked by dnsgate rule base/block-nx)" in out
    assert re.search(r"^nx\.example\.\s+42\s+IN\s+SOA\s+dnsgate\.invalid\. hostmaster\.dnsgate\.invalid\.", out, re.MULTILINE), "NXDOMAIN: the SOA is owned by the blocked name's parent"
    kdig = firewall.ns(firewall.client, "kdig", f"@{upstream}", "+cookie", "-b", source, "y.nx.example",
                       check=False).stdout
    assert "status: NXDOMAIN" in kdig and "EDE: 15 (Blocked)" in kdig


def test_exact_entry_from_hosts_file_blocks_only_that_name(firewall, client):
    assert client.probe("hosts-blocked.example")["rcode"] == "NXDOMAIN"
    assert client.probe("other.example")["rcode"] == "NXDOMAIN"
    assert client.probe("sub.hosts-blocked.example")["rcode"] == "NOERROR"


def test_without_edns_the_answer_has_no_opt(firewall, client):
    response = client.probe("nx.example", edns=False)
    assert response["rcode"] == "NXDOMAIN"
    assert response["edns"] == -1 and response["ede"] == []


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("name,qtype,rcode,answer,ede", [
    ("nodata.example", "A", "NOERROR", None, 15),
    ("refused.example", "A", "REFUSED", None, 15),
    ("sink-a.example", "A", "NOERROR", ("A", 300, "192.0.2.250"), 4),
    ("sink-a.example", "AAAA", "NOERROR", None, 4),  # another type than the override: NODATA
    ("sink-aaaa.example", "AAAA", "NOERROR", ("AAAA", 301, "2001:db8::250"), 4),
    ("sink-cname.example", "TXT", "NOERROR", ("CNAME", 302, "sinkhole.example.net."), 4),
])
def test_block_responses(firewall, client, server, name, qtype, rcode, answer, ede):
    upstream, source = server
    response = client.probe(name, server=upstream, source=source, qtype=qtype)
    assert response["rcode"] == rcode
    assert response["ede"][0]["code"] == ede
    if answer:
        rtype, ttl, data = answer
        assert [(r["type"], r["ttl"], r["data"]) for r in response["answer"]] == [(rtype, ttl, [data])]
        # A CNAME to a type dnsgate does not chase ends in NODATA: an SOA says so.
        assert bool(response["authority"]) == (rtype == "CNAME")
    else:
        assert response["answer"] == []
        has_soa = rcode != "REFUSED"
        assert bool(response["authority"]) == has_soa
    assert not reached_upstream(firewall, name)


@pytest.mark.parametrize("server", SERVERS)
def test_drop_sends_nothing(firewall, client, server):
    upstream, source = server
    assert client.probe("drop.example", server=upstream, source=source, timeout=1.0)["timeout"] is True
    assert not reached_upstream(firewall, "drop.example")


def test_allow_rule_ends_evaluation_before_a_later_block(firewall, client):
    response = client.probe("allowed.nx.example")
    assert response["rcode"] == "NOERROR" and response["answer"][0]["data"] == ["203.0.113.7"]


@pytest.mark.parametrize("guest,other", [(CLIENT2_V4, CLIENT_V4), (CLIENT2_V6, CLIENT_V6)], ids=["ipv4", "ipv6"])
def test_rule_group_applies_only_to_its_clients(firewall, client, guest, other):
    server = UPSTREAM_V6 if ":" in guest else UPSTREAM_V4
    assert client.probe("games.example", server=server, source=guest)["rcode"] == "REFUSED"
    assert client.probe("games.example", server=server, source=other)["rcode"] == "NOERROR"


def test_qtypes_scope_a_rule(firewall, client):
    assert client.probe("txt-only.example", qtype="TXT")["rcode"] == "NXDOMAIN"
    response = client.probe("txt-only.example", qtype="A")
    assert response["rcode"] == "NOERROR" and response["answer"]


def test_alert_passes_and_is_logged(firewall, client):
    response = client.probe("watched.example", source=CLIENT_V4)
    assert response["answer"][0]["data"] == ["203.0.113.7"]
    assert reached_upstream(firewall, "watched.example")
    entry = wait_for_log(firewall, "watched.example.")
    assert entry["firewall_rule_action"] == "ALERT"
    assert entry["srcaddr"] == CLIENT_V4 and entry["dstaddr"] == UPSTREAM_V4 and entry["dstport"] == "53"
    assert "block_response" not in entry


def test_query_log_has_route53_fields(firewall, client):
    client.probe("logged.nx.example", server=UPSTREAM_V6, source=CLIENT_V6)
    entry = wait_for_log(firewall, "logged.nx.example.")
    assert entry == entry | {
        "srcaddr": CLIENT_V6, "dstaddr": UPSTREAM_V6, "dstport": "53", "transport": "UDP",
        "query_type": "A", "query_class": "IN", "firewall_rule_group": "base", "firewall_rule": "block-nx",
        "firewall_domain_list": "nx", "firewall_rule_action": "BLOCK", "block_response": "NXDOMAIN"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", entry["query_timestamp"])
    logged = datetime.datetime.strptime(entry["query_timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - logged).total_seconds()) < 30
    assert int(entry["srcport"]) > 0


def wait_for_log(lab, name: str, timeout: float = 5.0) -> dict:
    path = lab.dir / "queries.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                if entry["query_name"] == name:
                    return entry
        time.sleep(0.05)
    raise AssertionError(f"{name} not in the query log")


def test_glibc_resolution_through_the_gateway(firewall):
    ok = firewall.ns(firewall.client, "getent", "ahostsv4", "glibc-ok.example", check=False)
    assert ok.returncode == 0 and "203.0.113.7" in ok.stdout
    ok6 = firewall.ns(firewall.client, "getent", "hosts", "glibc-ok.example", check=False)
    assert ok6.returncode == 0 and "2001:db8:ff::7" in ok6.stdout
    blocked = firewall.ns(firewall.client, "getent", "hosts", "glibc.nx.example", check=False)
    assert blocked.returncode == 2 and blocked.stdout == ""
    sinkhole = firewall.ns(firewall.client, "getent", "ahostsv4", "sink-a.example", check=False)
    assert "192.0.2.250" in sinkhole.stdout
    assert not reached_upstream(firewall, "glibc.nx.example")


def test_glibc_resolution_over_ipv6_transport(firewall):
    resolv = Path("/etc/netns") / firewall.client / "resolv.conf"
    original = resolv.read_text()
    resolv.write_text(f"nameserver {UPSTREAM_V6}\noptions timeout:2 attempts:1\n")
    try:
        ok = firewall.ns(firewall.client, "getent", "ahostsv6", "glibc6-ok.example", check=False)
        assert ok.returncode == 0 and "2001:db8:ff::7" in ok.stdout
        blocked = firewall.ns(firewall.client, "getent", "hosts", "glibc6.nx.example", check=False)
        assert blocked.returncode == 2
        sinkhole = firewall.ns(firewall.client, "getent", "ahostsv6", "sink-aaaa.example", check=False)
        assert "2001:db8::250" in sinkhole.stdout
        peers = [line.split()[2] for line in firewall.upstream_queries() if line.startswith("glibc6-ok.example.")]
        assert peers and all(":" in peer for peer in peers), "asked over IPv6"
    finally:
        resolv.write_text(original)


def test_forged_packets_pass_a_validating_capture(firewall, client):
    pcap = firewall.dir / "answers.pcap"
    capture = subprocess.Popen(["ip", "netns", "exec", firewall.client, "tcpdump", "-i", "c0", "-U", "-c", "4",
                                "-w", str(pcap), "udp src port 53"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        client.probe("cap.nx.example", server=UPSTREAM_V4, source=CLIENT_V4, cookie="1111111111111111")
        client.probe("cap.nx.example", server=UPSTREAM_V6, source=CLIENT_V6, cookie="1111111111111111")
        client.probe("sink-cname.example", server=UPSTREAM_V4, source=CLIENT_V4)
        client.probe("sink-aaaa.example", server=UPSTREAM_V6, source=CLIENT_V6, qtype="AAAA")
        capture.wait(timeout=10)
    finally:
        if capture.poll() is None:
            capture.kill()
            capture.wait()
    text = subprocess.run(["tcpdump", "-vv", "-n", "-r", str(pcap)], capture_output=True, text=True).stdout
    assert text.count("udp sum ok") == 4, text
    assert "bad" not in text.lower(), text


GARBAGE = [b"\x00", b"not a dns message at all",
           bytes.fromhex("1234 0100 0001 0000 0000 0000") + b"\xc0\x0c\x00\x01\x00\x01",  # compression loop
           bytes.fromhex("1234 0100 0001 0000 0000 0000") + b"\x05ab"]  # truncated
RESPONSE = bytes.fromhex("1234 8100 0001 0000 0000 0000") + b"\x03abc\x00\x00\x01\x00\x01"  # QR=1
BLOCKED_RESPONSE = bytes.fromhex("1234 8100 0001 0000 0000 0000") + b"\x01x\x02nx\x07example\x00\x00\x01\x00\x01"


def test_undecodable_queries_are_dropped_even_when_fail_open(firewall, client):
    """What cannot be read as a question might still be answered by a lenient
    server, so by default it is dropped whatever the fail mode; a response sent
    to port 53 (QR=1) resolves nothing and passes, unless it names a blocked name."""
    before = firewall.stats()
    seen = len(firewall.upstream_queries())
    for payload in GARBAGE + [RESPONSE, BLOCKED_RESPONSE]:
        client.send_raw(payload)
        client.send_raw(payload, server=UPSTREAM_V6)
    time.sleep(0.3)
    after = firewall.stats()
    assert after["verdicts"]["not_dns"] - before["verdicts"]["not_dns"] == 2 * len(GARBAGE)
    assert after["verdicts"]["not_query"] - before["verdicts"]["not_query"] == 4
    assert after["verdicts"]["block"] == before["verdicts"]["block"], "a response is no decision"
    assert after["packets"]["dropped"] - before["packets"]["dropped"] == 2 * len(GARBAGE) + 2
    assert after["packets"]["accepted"] - before["packets"]["accepted"] == 2
    reached = firewall.upstream_queries()[seen:]
    assert len(reached) == 2 and all("abc." in line for line in reached), reached
    # And it keeps deciding.
    assert client.probe("after-garbage.nx.example")["rcode"] == "NXDOMAIN"


def test_a_stats_client_that_says_nothing_is_closed_within_the_deadline(firewall):
    """The whole exchange on the stats socket must be over within 3 s."""
    code = ("import socket,sys,time\n"
            "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(10); t=time.monotonic()\n"
            "s.recv(100); print(round(time.monotonic()-t, 2))\n")
    waited = float(subprocess.run(["/usr/bin/python3", "-c", code, str(firewall.socket_path)], capture_output=True,
                                  text=True, check=True).stdout)
    assert 2.5 <= waited <= 4.5, f"closed after {waited} s"


def test_socket_commands(firewall):
    metrics = firewall.cli("stats", "--socket", str(firewall.socket_path)).stdout
    assert "verdicts" in metrics and "base/block-nx" in metrics
    raw = subprocess.run(["/usr/bin/python3", "-c", (
        "import socket,sys\n"
        "def ask(c):\n"
        " s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(c+b'\\n'); d=b''\n"
        " while (b:=s.recv(65536)): d+=b\n"
        " return d.decode()\n"
        "print(ask(b'version')); print(ask(b'metrics')); print(ask(b'bogus'))"),
        str(firewall.socket_path)], capture_output=True, text=True, check=True).stdout
    assert "dnsgate 0.1.0" in raw
    assert re.search(r'^dnsgate_verdicts_total\{verdict="block"\} \d+$', raw, re.M)
    assert re.search(r'^dnsgate_rule_hits_total\{group="base",rule="block-nx",action="BLOCK"\} [1-9]\d*$', raw, re.M)
    assert "# TYPE dnsgate_packets_total counter" in raw
    assert "error: unknown command 'bogus'" in raw
    assert "# TYPE dnsgate_rule_hits_total counter" in firewall.cli("stats", "--metrics", "--socket", str(firewall.socket_path)).stdout
    assert oct(firewall.socket_path.stat().st_mode & 0o777) == "0o660"


def test_undecodable_pass_lets_garbage_through(lab, client):
    lab.stop_dnsgate()
    start(lab, undecodable="pass")
    try:
        seen = len(lab.upstream_queries())
        for payload in GARBAGE:
            client.send_raw(payload)
        time.sleep(0.3)
        stats = lab.stats()
        assert stats["undecodable"] == "pass" and stats["verdicts"]["not_dns"] == len(GARBAGE)
        assert stats["packets"]["accepted"] == len(GARBAGE)
        assert len(lab.upstream_queries()) - seen == len(GARBAGE)
    finally:
        lab.stop_dnsgate()
        start(lab)


def test_stats_counters_equal_what_was_sent(lab, client):
    lab.stop_dnsgate()
    start(lab)
    sent = {"pass": 3, "nx": 4, "nodata": 2, "refused": 1, "drop": 1, "sink": 2, "alert": 2, "allow": 1, "junk": 3}
    for i in range(sent["pass"]):
        client.probe(f"p{i}.example")
    for i in range(sent["nx"]):
        client.probe(f"n{i}.nx.example", server=UPSTREAM_V6 if i % 2 else UPSTREAM_V4,
                     source=CLIENT_V6 if i % 2 else CLIENT_V4)
    for _ in range(sent["nodata"]):
        client.probe("nodata.example")
    client.probe("refused.example")
    client.probe("drop.example", timeout=0.5)
    for _ in range(sent["sink"]):
        client.probe("sink-a.example")
    for _ in range(sent["alert"]):
        client.probe("watched.example")
    client.probe("allowed.nx.example")
    client.send_raw(b"junk", count=sent["junk"])
    time.sleep(0.3)
    stats = lab.stats()
    total = sum(sent.values())
    blocked = sent["nx"] + sent["nodata"] + sent["refused"] + sent["drop"] + sent["sink"]
    assert stats["packets"]["received"] == total
    assert stats["packets"]["dropped"] == blocked + sent["junk"], "undecodable packets are dropped by default"
    assert stats["packets"]["accepted"] == total - blocked - sent["junk"]
    assert stats["packets"]["answered"] == blocked - sent["drop"]
    assert stats["packets"]["overflow_passed"] == 0 and stats["packets"]["overflow_dropped"] == 0
    assert stats["verdicts"] == {"allow": 1, "block": blocked, "alert": 2, "no_match": 3, "not_dns": 3, "not_query": 0,
                                 "no_match_dropped": 0}
    # The resolver's answers (to the pass, alert and allow queries) went through the answer stage.
    assert answer_stage(stats)["received"] == sent["pass"] + sent["alert"] + sent["allow"]
    assert stats["responses"] == {"nxdomain": 4, "nodata": 2, "refused": 1, "override": 2, "drop": 1}
    hits = {r["rule"]: r["hits"] for r in stats["rules"] if r["hits"]}
    assert hits == {"block-nx": 4, "nodata": 2, "refused": 1, "drop": 1, "sink-a": 2, "watch": 2, "allow-corp": 1}
    assert sum(q["received"] for q in stats["queues"]) == total
    assert [q["queue"] for q in stats["queues"]] == [0, 1]
    assert stats["errors"]["inject_failures"] == 0


def test_fail_closed_drops_what_it_cannot_decide(lab, client):
    lab.stop_dnsgate()
    start(lab, fail_mode="closed", rules=("--closed",))
    try:
        before = len(lab.upstream_queries())
        client.send_raw(b"\x01\x02garbage", count=2)
        time.sleep(0.3)
        stats = lab.stats()
        assert stats["verdicts"]["not_dns"] == 2 and stats["packets"]["dropped"] == 2
        assert len(lab.upstream_queries()) == before
        assert client.probe("still-works.example")["rcode"] == "NOERROR"
        assert client.probe("still.nx.example")["rcode"] == "NXDOMAIN"
    finally:
        lab.stop_dnsgate()
        lab.remove_rules()


def test_without_the_daemon_the_rules_fail_as_chosen(lab, client):
    lab.stop_dnsgate()
    lab.apply_rules()  # fail-open: --queue-bypass
    assert client.probe("open-no-daemon.example")["rcode"] == "NOERROR"
    lab.apply_rules("--closed")
    assert client.probe("closed-no-daemon.example", timeout=1.0)["timeout"] is True
    assert not reached_upstream(lab, "closed-no-daemon.example")
    lab.remove_rules()


def test_gateway_own_lookups_with_the_output_hook(lab):
    """`dnsgate-firewall apply --output` also decides the gateway's own queries;
    the forged answer is delivered locally and never queued again."""
    lab.stop_dnsgate()
    config = start(lab, rules=("--output",))
    try:
        out = lab.ns(lab.gateway, "dig", f"@{UPSTREAM_V4}", "+tries=1", "+time=2", "own.nx.example", check=False).stdout
        assert "status: NXDOMAIN" in out and "EDE: 15 (Blocked)" in out
        out6 = lab.ns(lab.gateway, "dig", f"@{UPSTREAM_V6}", "+tries=1", "+time=2", "own6.nx.example", check=False).stdout
        assert "status: NXDOMAIN" in out6
        ok = lab.ns(lab.gateway, "dig", f"@{UPSTREAM_V4}", "+tries=1", "+time=2", "+short", "own-ok.example").stdout
        assert ok.strip() == "203.0.113.7"
        stats = lab.stats()
        assert stats["verdicts"]["block"] == 2 and stats["verdicts"]["no_match"] == 1
        # Three questions and one real answer (own-ok's, through INPUT) were queued; the forged answers were not.
        assert stats["packets"]["received"] + answer_stage(stats, strict=False)["received"] == 4, \
            "the forged answers were not queued again"
        assert not reached_upstream(lab, "own.nx.example")
        # Over TCP: nat OUTPUT redirects to the relay, whose own connection is not redirected again.
        for server in (UPSTREAM_V4, UPSTREAM_V6):
            tcp = lab.ns(lab.gateway, "dig", f"@{server}", "+tcp", "+tries=1", "+time=2", "own-tcp.nx.example",
                         check=False).stdout
            assert "status: NXDOMAIN" in tcp, tcp
            ok_tcp = lab.ns(lab.gateway, "dig", f"@{server}", "+tcp", "+tries=1", "+time=2", "+short", "own-tcp-ok.example",
                            check=False).stdout
            assert ok_tcp.strip() in ("203.0.113.7", "2001:db8:ff::7") or "203.0.113.7" in ok_tcp, ok_tcp
        assert lab.stats()["tcp"]["relayed"] == 2 and not reached_upstream(lab, "own-tcp.nx.example")
    finally:
        lab.stop_dnsgate()
        lab.remove_rules()
        del config


def test_sigusr1_reopens_the_query_log_after_rotation(lab, client):
    lab.stop_dnsgate()
    config = start(lab)
    log = lab.dir / "queries.jsonl"
    try:
        client.probe("before.nx.example")
        wait_for_log(lab, "before.nx.example.")
        rotated = lab.dir / "queries.jsonl.1"
        log.rename(rotated)
        lab.dnsgate.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        client.probe("after.nx.example")
        wait_for_log(lab, "after.nx.example.")  # reads the new file at the old path
        assert "after.nx.example." not in rotated.read_text()
        assert "before.nx.example." not in log.read_text()
    finally:
        lab.stop_dnsgate()
        lab.remove_rules()
        del config


# -- answers through the queues (issue #12): what the shipped rules queue, without a daemon ---------------
QUEUE_STATEMENT = re.compile(r"queue flags [a-z,]+ to 0-1")
GATEWAY_ASKS = ("import socket, sys, dns.message\n"
                "server, mark = sys.argv[1], int(sys.argv[2], 0)\n"
                "s = socket.socket(socket.AF_INET6 if ':' in server else socket.AF_INET, socket.SOCK_DGRAM)\n"
                "if mark: s.setsockopt(socket.SOL_SOCKET, getattr(socket, 'SO_MARK', 36), mark)\n"
                "s.settimeout(3)\n"
                "s.sendto(dns.message.make_query('own.example', 'A').to_wire(), (server, 53))\n"
                "print(dns.message.from_wire(s.recv(4096)).answer[0].to_text())\n")
# A datagram from port 53 that the gateway sends itself through a raw socket, as dnsgate sends forged answers.
GATEWAY_SENDS_FROM_53 = ("import socket, sys\n"
                         "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)\n"
                         "mark = int(sys.argv[3], 0)\n"
                         "if mark: s.setsockopt(socket.SOL_SOCKET, getattr(socket, 'SO_MARK', 36), mark)\n"
                         "s.bind((sys.argv[1], 0)); s.sendto(bytes.fromhex(sys.argv[4]), (sys.argv[2], 0))\n")


def queued(lab, backend: str) -> dict:
    """Packets dnsgate's queue rules took so far, IPv4 and IPv6: {"dport": queries, "sport": answers}.
    With nftables the queue statements are staged as counters (see apply_staged)."""
    counts = {"dport": 0, "sport": 0}
    if backend == "iptables":
        for tool in ("iptables", "ip6tables"):
            for line in lab.ns(lab.gateway, tool, "-w", "-L", "DNSGATE", "-v", "-x", "-n").stdout.splitlines():
                if "NFQUEUE" in line:
                    counts["sport" if "spt:53" in line else "dport"] += int(line.split()[0])
    else:
        listed = lab.ns(lab.gateway, "nft", "list", "chain", "inet", "dnsgate", "divert").stdout
        for direction in counts:
            counts[direction] = sum(int(n) for n in re.findall(rf"udp {direction} 53 counter packets (\d+)", listed))
    return counts


def apply_staged(lab, backend: str, output: bool) -> None:
    """The shipped rules through dnsgate-firewall; nftables from a staged copy whose
    queue statements are counters (not every kernel has nft's queue, and without a
    daemon a fail-closed queue would drop what is counted)."""
    options = ["--output"] if output else []
    if backend == "iptables":
        lab.apply_rules(*options)  # fail-open: with no daemon, --queue-bypass lets everything through
        return
    lab.remove_rules()
    staged = lab.dir / "staged-rules"
    staged.mkdir(exist_ok=True)
    for name in ("dnsgate.nft", "dnsgate-output.nft"):
        (staged / name).write_text(QUEUE_STATEMENT.sub("counter", (ROOT / "iptables" / name).read_text()))
    lab.ns(lab.gateway, "env", f"DNSGATE_RULES_DIR={staged}", str(ROOT / "iptables" / "dnsgate-firewall"), "apply",
           "--nft", *options)


@pytest.mark.parametrize("backend", ["iptables", "nft"])
def test_answers_are_queued_but_never_dnsgates_own_packets(lab, backend):
    """Each packet's way through the shipped rules, counted at the queue rules:
    answers to LAN clients (FORWARD) and from a resolver on the gateway (OUTPUT)
    are queued; dnsgate's forged answers (mark), the answers to its own
    queries (connection mark) and datagrams from port 53 that answer no flow
    never are; the gateway's own lookups and their answers only with --output,
    and a local resolver's answer to them once."""
    lab.stop_dnsgate()
    resolver = subprocess.Popen(["ip", "netns", "exec", lab.gateway, PYTHON, str(ROOT / "lab" / "upstream.py"),
                                 str(lab.dir / "gateway-resolver.log"), GATEWAY_LAN_V4, GATEWAY_LAN_V6],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "ready" in resolver.stdout.readline()

        def client_asks(server):
            return lambda: lab.dig("+short", "lan.example", server=server).strip() in ("203.0.113.7",)

        def gateway_asks(server, mark):
            return lambda: "203.0.113.7" in lab.ns(lab.gateway, PYTHON, "-c", GATEWAY_ASKS, server, hex(mark)).stdout

        def gateway_sends_from_53(mark, port):
            segment = udp_segment(GATEWAY_LAN_V4, CLIENT_V4, 53, port, bytes(12))
            return lambda: lab.ns(lab.gateway, PYTHON, "-c", GATEWAY_SENDS_FROM_53, GATEWAY_LAN_V4, CLIENT_V4,
                                  hex(mark), segment.hex()).returncode == 0

        mark = 0x444E53
        cases = [  # what, the action (True when it worked), queued without --output, with --output
            ("a LAN client asks a resolver beyond the gateway", client_asks(UPSTREAM_V4), (1, 1), (1, 1)),
            ("the same over IPv6", client_asks(UPSTREAM_V6), (1, 1), (1, 1)),
            ("a LAN client asks the gateway's resolver", client_asks(GATEWAY_LAN_V4), (1, 1), (1, 1)),
            ("the same over IPv6", client_asks(GATEWAY_LAN_V6), (1, 1), (1, 1)),
            ("dnsgate asks a resolver beyond the gateway (marked)", gateway_asks(UPSTREAM_V4, mark), (0, 0), (0, 0)),
            ("the same over IPv6", gateway_asks(UPSTREAM_V6, mark), (0, 0), (0, 0)),
            ("dnsgate asks the gateway's resolver (marked)", gateway_asks(GATEWAY_LAN_V4, mark), (0, 0), (0, 0)),
            ("a forged answer (marked, from port 53)", gateway_sends_from_53(mark, 9), (0, 0), (0, 0)),
            # On the flow that forged answer opened, a later packet from port 53 is queued whatever its state
            # (the resolver's real answer to the other of A and AAAA asked from one socket).
            ("an unmarked datagram from port 53 on that flow", gateway_sends_from_53(0, 9), (0, 1), (0, 1)),
            # Answering no flow a client opened, it is no answer: left to the gateway's own firewall.
            ("an unmarked datagram from port 53 nobody asked for", gateway_sends_from_53(0, 10), (0, 0), (0, 0)),
            ("the gateway's own lookup", gateway_asks(UPSTREAM_V4, 0), (0, 0), (1, 1)),
            ("the same over IPv6", gateway_asks(UPSTREAM_V6, 0), (0, 0), (1, 1)),
            # The query in OUTPUT (with --output) and again in INPUT, as before; its answer once, in OUTPUT.
            ("the gateway's own lookup from its own resolver", gateway_asks(GATEWAY_LAN_V4, 0), (1, 1), (2, 1)),
        ]
        for output in (False, True):
            apply_staged(lab, backend, output)
            for what, action, without, with_output in cases:
                before = queued(lab, backend)
                assert action(), f"{what}: no answer"
                time.sleep(0.2)
                after = queued(lab, backend)
                got = (after["dport"] - before["dport"], after["sport"] - before["sport"])
                expected = with_output if output else without
                assert got == expected, f"{backend}{' --output' if output else ''}: {what}: queued (queries, answers) {got}, expected {expected}"
    finally:
        resolver.terminate()
        resolver.wait(timeout=10)
        if backend == "nft":
            lab.ns(lab.gateway, str(ROOT / "iptables" / "dnsgate-firewall"), "remove", "--nft", check=False)
        lab.remove_rules()
