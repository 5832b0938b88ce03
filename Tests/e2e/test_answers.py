# SPDX-License-Identifier: GPL-2.0-or-later
"""Answer inspection (issue #12): the answers coming back from resolvers go
through the queues too, and dnsgate decides every name of their CNAME/DNAME
chain with the policy, their A/AAAA addresses against `ip_list:` rules, and
rebinding protection. A blocked answer is dropped and the client gets the
blocking rule's forged answer for its original question (UDP), or its TCP
connection is reset.

Through the shipped rules, with real resolvers upstream (lab/answers.py:
BIND serving the test zones behind Unbound, then behind Knot Resolver, on the
lab's resolver addresses; every test runs against both) and real clients in
the client namespace. `test_the_lab_*` check the lab itself, without dnsgate.
"""
import json
import socket
import struct
import time
from pathlib import Path

import pytest

from answers import (CHAINS, KINDS, Capture, ChainResolver, Forwarder, answer_stage, listen_for,
                     send_response)
from lab import CLIENT2_V4, CLIENT_V4, CLIENT_V6, GATEWAY_LAN_V4, GATEWAY_LAN_V6, UPSTREAM_V4, UPSTREAM_V6

SERVERS = [pytest.param((UPSTREAM_V4, CLIENT_V4), id="ipv4"), pytest.param((UPSTREAM_V6, CLIENT_V6), id="ipv6")]

CONFIG = """queues: "0-1"
fail_mode: {fail_mode}{dns64}
stats_socket: {socket}
query_log:
  path: {log}
  actions: [BLOCK, ALERT]
block_defaults:
  ttl: 30
  extended_error: true
domain_lists:
  - name: blocked
    domains: ["blocked.test", "*.blocked.test"]
  - name: corp
    domains: ["corp.test", "*.corp.test"]
  - name: raced
    domains: ["raced.answers.test"]
{trusted_list}ip_lists:
  - name: bad-nets
    addresses: ["203.0.113.96/28", "2001:db8:bad::/48"]
rule_groups:
  - name: answers
    priority: 10
    rules:
{allow_rule}      - name: no-aaaa-raced
        priority: 6
        domain_list: raced
        qtypes: [AAAA]
        action: BLOCK
        block_response: NODATA
      - name: block-listed
        priority: 10
        domain_list: blocked
        action: BLOCK
        block_response: NXDOMAIN
      - name: block-bad-nets
        priority: 20
        ip_list: bad-nets
        action: BLOCK
        block_response: REFUSED
      - name: stop-rebinding
        priority: 30
        rebinding_protection: true
        exempt_domain_lists: [corp]
        action: BLOCK
        block_response: NXDOMAIN
"""
TRUSTED_LIST = """  - name: trusted
    domains: ["answers.test", "*.answers.test"]
"""
ALLOW_RULE = """      - name: allow-clean
        priority: 5
        domain_list: trusted
        action: ALLOW
        redirection: {redirection}
"""

# The addresses at the end of the blocked chains: a client must never see them.
BLOCKED_ADDRESSES = {"203.0.113.66", "203.0.113.67", "203.0.113.68"}
BLOCKED_CHAINS = [("cloaked.answers.test", "A"), ("Cloaked.Answers.TEST", "A"), ("cloaked.answers.test", "AAAA"),
                  ("hop1.answers.test", "A"), ("x.alias.test", "A"), ("x.alias.test", "AAAA")]
REBINDING = [("rebind.answers.test", "A"), ("rebind6.answers.test", "AAAA"), ("loop.answers.test", "A"),
             ("cgnat.answers.test", "A"), ("linklocal.answers.test", "A"), ("mapped.answers.test", "AAAA")]


def ede(rule: str) -> list[dict]:
    return [{"code": 15, "text": f"blocked by dnsgate rule answers/{rule}"}]


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=KINDS)
def chains(lab, request):
    """BIND with the test zones behind `request.param` on the lab's resolver addresses."""
    resolver = ChainResolver(lab, request.param).start()
    yield resolver
    resolver.stop()


class Gate:
    """dnsgate behind the shipped rules, restarted with the answer policy."""

    def __init__(self, lab, resolver: ChainResolver):
        self.lab, self.resolver = lab, resolver
        self.log = lab.dir / "answers.jsonl"
        self.mode: str | None = None

    def start(self, fail_mode: str = "open", redirection: str | None = None, dns64_prefix: str | None = None) -> None:
        self.lab.stop_dnsgate()
        config = self.lab.write_config(CONFIG.format(
            fail_mode=fail_mode, socket=self.lab.socket_path, log=self.log,
            dns64=f'\ndns64_prefixes: ["{dns64_prefix}"]' if dns64_prefix else "",
            trusted_list=TRUSTED_LIST if redirection else "",
            allow_rule=ALLOW_RULE.format(redirection=redirection) if redirection else ""), "answers.yaml")
        if self.mode != fail_mode:
            self.lab.apply_rules(*(["--closed"] if fail_mode == "closed" else []))
            self.mode = fail_mode
        self.lab.start_dnsgate(config)

    def stop(self) -> None:
        self.lab.stop_dnsgate()
        self.lab.remove_rules()
        self.mode = None


@pytest.fixture(scope="module")
def gate(lab, chains):
    instance = Gate(lab, chains)
    try:
        instance.start()
    except BaseException:
        instance.stop()  # no rules left behind for the tests of the lab itself
        raise
    yield instance
    instance.stop()


# -- helpers --------------------------------------------------------------------------------------
def addresses_in(response: dict) -> set[str]:
    return {data for record in response.get("answer", []) if record["type"] in ("A", "AAAA") for data in record["data"]}


def chain_of(response: dict) -> list[str]:
    """The CNAME targets of an answer, in order (lowercase, no trailing dot)."""
    return [record["data"][0].lower().rstrip(".") for record in response["answer"] if record["type"] == "CNAME"]


def assert_forged(response: dict, name: str, rcode: str, rule: str, edns: bool = True) -> None:
    assert not response["timeout"], f"no answer for {name}"
    assert response["rcode"] == rcode, response
    assert response["question_name_wire_case"] == name + ".", "the client's own question, case and all"
    assert response["answer"] == [], response
    assert response["ede"] == (ede(rule) if edns else []), response
    if rcode != "REFUSED":
        assert response["authority"] and response["authority"][0]["type"] == "SOA", response
        assert response["authority"][0]["data"][0].startswith("dnsgate.invalid."), response


def wait_for_log(path: Path, predicate, since: int = 0, timeout: float = 5.0) -> dict:
    """The first query-log record after byte `since` of `path` that `predicate` accepts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            with open(path, "rb") as log:
                log.seek(since)
                for line in log.read().decode().splitlines():
                    entry = json.loads(line)
                    if predicate(entry):
                        return entry
        time.sleep(0.05)
    raise AssertionError(f"no matching record in {path}: {path.read_text() if path.exists() else '(no file)'}")


def logged_answers(entry: dict) -> set[tuple[str, str, str]]:
    """The `answers` of a query-log record (Route 53's names: Rdata, Type, Class)
    as (Type, Rdata without a trailing dot, lowercase, Class)."""
    return {(a["Type"], a["Rdata"].rstrip(".").lower(), a["Class"]) for a in entry["answers"]}


def stage_deltas(before: dict, after: dict) -> tuple[dict, dict]:
    """What changed between two `stats` snapshots: the question stage
    (packets and verdicts, as before answer inspection) and the answer stage."""
    question = {f"packets.{k}": after["packets"][k] - before["packets"][k] for k in ("received", "accepted", "dropped")}
    question.update({f"verdicts.{k}": after["verdicts"][k] - before["verdicts"][k] for k in after["verdicts"]})
    answers_before, answers_after = answer_stage(before), answer_stage(after)
    answers = {k: answers_after[k] - answers_before.get(k, 0) for k in answers_after}
    return question, answers


def payloads_from(packets, server: str, client: str, qid: int) -> list[bytes]:
    """The DNS payloads of the UDP answers from server:53 to client with this ID."""
    return [p.payload for p in packets if p.protocol == "udp" and p.src == server and p.sport == 53
            and p.dst == client and p.payload[:2] == qid.to_bytes(2, "big")]


def compare_both_sides(lab, client, server: str, source: str, qtype: str, qid: int) -> tuple[list[bytes], list[bytes], dict]:
    """Asks clean.answers.test while capturing on the resolver's side (u0) and
    the client's (c0); returns the answers' payloads seen on each side."""
    with Capture(lab, lab.upstream, "u0", f"resolver-side-{qid}", "udp port 53") as resolver_side, \
            Capture(lab, lab.client, "c0", f"client-side-{qid}", "udp port 53") as client_side:
        response = client.probe("clean.answers.test", server=server, source=source, qtype=qtype, qid=qid)
    return (payloads_from(resolver_side.packets(), server, source, qid),
            payloads_from(client_side.packets(), server, source, qid), response)


# -- the lab itself, without dnsgate ---------------------------------------------------------------------
@pytest.mark.parametrize("server", SERVERS)
def test_the_lab_resolver_serves_every_chain(lab, client, chains, server):
    """What the later tests rely on: each name's chain and addresses, as a real
    resolver answers them, with no dnsgate rule in the way."""
    assert lab.rules_applied is None and lab.dnsgate is None
    upstream, source = server
    for chain in CHAINS:
        response = client.probe(chain.name, server=upstream, source=source, qtype=chain.qtype)
        assert response["rcode"] == "NOERROR", (chains.kind, chain, response)
        assert chain_of(response) == list(chain.via), (chains.kind, chain, response)
        assert addresses_in(response) == set(chain.addresses), (chains.kind, chain, response)
        dnames = [(r["name"].lower().rstrip("."), r["data"][0].lower().rstrip(".")) for r in response["answer"]
                  if r["type"] == "DNAME"]
        assert dnames == ([(chain.dname, "blocked.test")] if chain.dname else []), response
    # The question comes back as asked (dnsgate's forged answer must do the same).
    mixed = client.probe("Cloaked.Answers.TEST", server=upstream, source=source)
    assert mixed["question_name_wire_case"] == "Cloaked.Answers.TEST."


@pytest.mark.parametrize("server", SERVERS)
def test_the_lab_captures_see_an_answer_on_both_sides(lab, client, chains, server):
    upstream, source = server
    resolver_side, client_side, response = compare_both_sides(lab, client, upstream, source, "A", 4242)
    assert addresses_in(response) == {"203.0.113.10"}
    assert len(resolver_side) == 1 and resolver_side == client_side


# -- chains into blocked names ----------------------------------------------------------------------------
@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("name,qtype", BLOCKED_CHAINS)
def test_a_chain_into_a_blocked_name_gets_the_rules_answer_for_the_original_question(gate, client, server, name,
                                                                                     qtype):
    upstream, source = server
    response = client.probe(name, server=upstream, source=source, qtype=qtype, qid=4321)
    assert response["id"] == 4321
    assert_forged(response, name, "NXDOMAIN", "block-listed")
    assert not addresses_in(response) & BLOCKED_ADDRESSES


def test_without_edns_the_forged_answer_has_no_opt(gate, client):
    response = client.probe("cloaked.answers.test", edns=False)
    assert_forged(response, "cloaked.answers.test", "NXDOMAIN", "block-listed", edns=False)
    assert response["edns"] == -1


def test_dig_shows_the_block(gate):
    out = gate.lab.dig("hop1.answers.test")
    assert "status: NXDOMAIN" in out and "EDE: 15 (Blocked): (blocked by dnsgate rule answers/block-listed)" in out
    assert "203.0.113.67" not in out


def test_glibc_gets_no_address_for_a_blocked_chain(gate, lab):
    resolv = Path("/etc/netns") / lab.client / "resolv.conf"
    original = resolv.read_text()
    try:
        for nameserver in (UPSTREAM_V4, UPSTREAM_V6):
            resolv.write_text(f"nameserver {nameserver}\noptions timeout:2 attempts:1\n")
            for name in ("cloaked.answers.test", "hop1.answers.test", "x.alias.test"):
                blocked = lab.ns(lab.client, "getent", "ahosts", name, check=False)
                assert blocked.returncode == 2 and blocked.stdout == "", (nameserver, name, blocked)
            clean = lab.ns(lab.client, "getent", "ahosts", "clean.answers.test", check=False)
            assert clean.returncode == 0, (nameserver, clean)
            assert "203.0.113.10" in clean.stdout and "2001:db8:3::10" in clean.stdout, clean.stdout
    finally:
        resolv.write_text(original)


# A and AAAA for one name from one socket at once, as glibc and musl ask: prints each answer's
# RCODE and addresses, or "timeout".
ASK_BOTH = ("import socket, sys, dns.message, dns.rdatatype\n"
            "server, name = sys.argv[1], sys.argv[2]\n"
            "s = socket.socket(socket.AF_INET6 if ':' in server else socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.settimeout(3)\n"
            "queries = [dns.message.make_query(name, t, use_edns=0) for t in ('A', 'AAAA')]\n"
            "for q in queries: s.sendto(q.to_wire(), (server, 53))\n"
            "got = {}\n"
            "try:\n"
            "    while len(got) < 2:\n"
            "        r = dns.message.from_wire(s.recv(4096))\n"
            "        got[dns.rdatatype.to_text(r.question[0].rdtype)] = (dns.rcode.to_text(r.rcode()),\n"
            "            sorted(i.to_text() for rr in r.answer if rr.rdtype in (1, 28) for i in rr))\n"
            "except socket.timeout: pass\n"
            "print(repr(got))\n")


def test_a_question_blocked_beside_another_leaves_the_others_answer_inspected(gate, lab):
    """glibc and musl ask A and AAAA from one socket at once. When the policy
    forges the AAAA's answer (NODATA here) while the A waits in the queue, the
    resolver's answer to the A, whose chain leads into a blocked name, is
    still inspected: dnsgate's forged answers open no conntrack flow (tracked,
    one made the real answer a new packet of its flow, which no rule queues)."""
    for server in (UPSTREAM_V4, UPSTREAM_V6):
        for attempt in range(20):
            got = eval(lab.ns(lab.client, "/usr/bin/python3", "-c", ASK_BOTH, server, "raced.answers.test").stdout)
            assert got.get("A") == ("NXDOMAIN", []), (server, attempt, got)
            assert got.get("AAAA") == ("NOERROR", []), (server, attempt, got)
    resolv = Path("/etc/netns") / lab.client / "resolv.conf"
    original = resolv.read_text()
    try:
        for nameserver in (UPSTREAM_V4, UPSTREAM_V6):
            resolv.write_text(f"nameserver {nameserver}\noptions timeout:2 attempts:1\n")
            for attempt in range(10):
                lookup = lab.ns(lab.client, "getent", "ahosts", "raced.answers.test", check=False)
                assert "203.0.113.66" not in lookup.stdout and lookup.returncode != 0, (nameserver, attempt, lookup)
    finally:
        resolv.write_text(original)


def test_behind_dns_interception_the_forged_answer_comes_from_the_address_asked(gate, lab):
    """A gateway that intercepts DNS (DNAT of every query to 203.0.113.53, a
    public resolver's address in the lab, to the lab's resolver): a response
    blocked on its answer is answered from the address the client asked,
    since the forged answer goes out on the response's flow and conntrack
    undoes the DNAT on it too; clients take nothing from another address."""
    rule = ["PREROUTING", "-i", "g0", "-p", "udp", "-d", "203.0.113.53", "--dport", "53", "-j", "DNAT",
            "--to-destination", UPSTREAM_V4]
    lab.ns(lab.client, "ip", "route", "replace", "203.0.113.53/32", "via", GATEWAY_LAN_V4)
    lab.ns(lab.gateway, "iptables", "-w", "-t", "nat", "-I", *rule)
    try:
        out = lab.ns(lab.client, "dig", "@203.0.113.53", "+tries=1", "+time=3", "cloaked.answers.test",
                     check=False).stdout
        assert "status: NXDOMAIN" in out and "SERVER: 203.0.113.53#53" in out, out
        assert "203.0.113.66" not in out, out
        clean = lab.ns(lab.client, "dig", "@203.0.113.53", "+tries=1", "+time=3", "+short", "clean.answers.test",
                       check=False).stdout
        assert "203.0.113.10" in clean, clean
    finally:
        lab.ns(lab.gateway, "iptables", "-w", "-t", "nat", "-D", *rule, check=False)
        lab.ns(lab.client, "ip", "route", "del", "203.0.113.53/32", check=False)


def test_a_caching_forwarder_in_the_client_namespace_gets_the_block(gate, lab):
    """dnsmasq on the client's side forwards to the resolver through the
    gateway: it gets the forged NXDOMAIN, caches it, and serves it again."""
    forwarder = Forwarder(lab, listen=CLIENT2_V4, upstream=UPSTREAM_V4).start()
    try:
        for attempt in range(2):  # the second from dnsmasq's cache
            out = lab.dig("cloaked.answers.test", server=CLIENT2_V4)
            assert "status: NXDOMAIN" in out and "203.0.113.66" not in out, (attempt, out)
        out = lab.dig("x.alias.test", "AAAA", server=CLIENT2_V4)
        assert "status: NXDOMAIN" in out, out
        assert lab.dig("+short", "clean.answers.test", server=CLIENT2_V4).split()[-1:] == ["203.0.113.10"]
    finally:
        forwarder.stop()


@pytest.mark.parametrize("server", SERVERS)
def test_a_client_asking_again_from_the_same_port_is_still_inspected(gate, lab, server):
    """A forged answer opens a conntrack flow from the resolver's side; a client
    that asks again from the same port makes its next real answer that flow's
    original direction: it is inspected all the same."""
    upstream, source = server
    port = 40077 if ":" not in source else 40078
    def dig(name: str) -> str:
        return lab.ns(lab.client, "dig", f"@{upstream}", "-b", f"{source}#{port}", "+tries=1", "+time=3", name,
                      check=False, timeout=30).stdout
    assert "status: NXDOMAIN" in dig("x.blocked.test"), "blocked on its question: a forged answer"
    out = dig("cloaked.answers.test")
    assert "status: NXDOMAIN" in out and "203.0.113.66" not in out, out


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_a_forwarder_on_the_gateway_asked_from_port_53_is_still_inspected(gate, lab, family):
    """A resolver on the gateway (dnsmasq, forwarding upstream) and a client
    asking it from port 53, as forwarders such as dnsmasq do. The client's
    first packet is a blocked question: it is dropped before conntrack keeps
    its flow, so the forged answer, from port 53 to port 53, is that flow's
    first packet. The resolver's later answers on the flow are still
    inspected: chains, ip lists and rebinding alike (the shipped CONNMARK rule
    once marked such a flow as dnsgate's own, and none of them was)."""
    # A client address of its own: no flow from earlier tests on this port.
    source, prefix, listen = (("192.0.2.41", 24, GATEWAY_LAN_V4) if family == "ipv4"
                              else ("2001:db8:1::41", 64, GATEWAY_LAN_V6))
    lab.ns(lab.client, "ip", "addr", "add", f"{source}/{prefix}", "dev", "c0", *(["nodad"] if family == "ipv6" else []))
    forwarder = Forwarder(lab, listen=listen, upstream=UPSTREAM_V4, namespace=lab.gateway)
    try:
        forwarder.start()
        def dig(name: str) -> str:
            return lab.ns(lab.client, "dig", f"@{listen}", "-b", f"{source}#53", "+tries=1", "+time=3", name,
                          check=False, timeout=30).stdout
        assert "status: NXDOMAIN" in dig("x.blocked.test"), "blocked on its question: a forged answer"
        for name, rcode, address in (("cloaked.answers.test", "NXDOMAIN", "203.0.113.66"),
                                     ("rebind.answers.test", "NXDOMAIN", "192.168.1.10"),
                                     ("badaddr.answers.test", "REFUSED", "203.0.113.99")):
            out = dig(name)
            assert f"status: {rcode}" in out and address not in out, (name, out)
        assert dig("clean.answers.test").count("203.0.113.10") == 1, "an unblocked answer still arrives"
    finally:
        forwarder.stop()
        lab.ns(lab.client, "ip", "addr", "del", f"{source}/{prefix}", "dev", "c0", check=False)


@pytest.mark.parametrize("server", SERVERS)
def test_over_tcp_a_blocked_chain_resets_the_connection(gate, lab, server):
    upstream, source = server
    blocked_bytes = [socket.inet_pton(socket.AF_INET, a) for a in BLOCKED_ADDRESSES]
    with Capture(lab, lab.client, "c0", f"tcp-{upstream}", "tcp port 53") as capture:
        out = lab.ns(lab.client, "dig", f"@{upstream}", "-b", source, "+tcp", "+tries=1", "+time=3",
                     "cloaked.answers.test", check=False, timeout=30).stdout
    assert "status: NOERROR" not in out and "203.0.113.66" not in out, out
    from_server = [p for p in capture.packets() if p.src == upstream and p.sport == 53 and p.dst == source]
    assert from_server, "the connection was made"
    assert any(p.reset for p in from_server), "the client's connection is reset"
    assert not any(b in p.payload for p in from_server for b in blocked_bytes), "no blocked address reached the client"
    # The relay still answers an unblocked chain on a new connection.
    clean = lab.ns(lab.client, "dig", f"@{upstream}", "-b", source, "+tcp", "+tries=1", "+time=3", "+short",
                   "clean.answers.test", check=False).stdout.split()
    assert clean[-1:] == ["203.0.113.10"], clean


def test_trust_on_an_allow_rule_lets_the_whole_answer_through(gate, client):
    try:
        gate.start(redirection="TRUST")
        response = client.probe("cloaked.answers.test")
        assert response["rcode"] == "NOERROR" and addresses_in(response) == {"203.0.113.66"}, response
        assert chain_of(response) == ["tracker.blocked.test"]
        response = client.probe("hop1.answers.test", server=UPSTREAM_V6, source=CLIENT_V6)
        assert response["rcode"] == "NOERROR" and addresses_in(response) == {"203.0.113.67"}, response
        # A question the ALLOW rule does not match is inspected as before.
        assert_forged(client.probe("x.alias.test"), "x.alias.test", "NXDOMAIN", "block-listed")
        # ALLOW alone (INSPECT, the default) lets the question through and still inspects the chain.
        gate.start(redirection="INSPECT")
        assert_forged(client.probe("cloaked.answers.test"), "cloaked.answers.test", "NXDOMAIN", "block-listed")
    finally:
        gate.start()


# -- unblocked answers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("qtype,address", [("A", "203.0.113.10"), ("AAAA", "2001:db8:3::10")])
def test_an_unblocked_chain_reaches_the_client_byte_identical(gate, lab, client, server, qtype, address):
    upstream, source = server
    qid = 0x5A00 + (qtype == "AAAA") + 2 * (":" in upstream)
    resolver_side, client_side, response = compare_both_sides(lab, client, upstream, source, qtype, qid)
    assert response["rcode"] == "NOERROR" and addresses_in(response) == {address}, response
    assert chain_of(response) == ["cdn.answers.test"]
    assert len(resolver_side) == 1, "one answer left the resolver"
    assert client_side == resolver_side, "the client got the resolver's answer, byte for byte"


def test_dns64_answers_are_decided_on_the_ipv4_address_they_stand_for(gate, lab, chains, client):
    """The resolver does DNS64 (Unbound with the network's own prefix, named
    in dnsgate's dns64_prefixes; Knot Resolver with the well-known
    64:ff9b::/96, which dnsgate always knows): an AAAA it makes from a listed
    A record is blocked like the A record, one made from a private address is
    rebinding, and one made from a clean address reaches the client."""
    prefix = "2001:db8:64::/96" if chains.kind == "unbound" else "64:ff9b::/96"
    synthesized = {"unbound": "2001:db8:64::cb00:710b", "kresd": "64:ff9b::cb00:710b"}[chains.kind]
    chains.stop()
    dns64 = ChainResolver(lab, chains.kind, dns64_prefix=prefix)
    try:
        dns64.start()
        gate.start(dns64_prefix="2001:db8:64::/96")
        for server, source in ((UPSTREAM_V4, CLIENT_V4), (UPSTREAM_V6, CLIENT_V6)):
            clean = client.probe("v4only.answers.test", server=server, source=source, qtype="AAAA")
            assert addresses_in(clean) == {synthesized}, clean
            listed = client.probe("badaddr.answers.test", server=server, source=source, qtype="AAAA")
            assert listed["rcode"] == "REFUSED" and listed["answer"] == [], listed
            assert listed["ede"] == ede("block-bad-nets"), listed
            if chains.kind == "unbound":  # resolvers make no AAAA from a private A with the well-known prefix
                private = client.probe("rebind.answers.test", server=server, source=source, qtype="AAAA")
                assert private["rcode"] == "NXDOMAIN" and private["ede"] == ede("stop-rebinding"), private
    finally:
        dns64.stop()
        chains.start()
        gate.start()


# Asks over UDP and prints the raw answer's RCODE and ANCOUNT and whether it holds the address
# bytes given: a client's view of answers that dnspython and dig refuse to parse.
RAW_ASK = ("import socket, sys, dns.message\n"
           "server, name, qtype, needle = sys.argv[1], sys.argv[2], sys.argv[3], socket.inet_aton(sys.argv[4])\n"
           "s = socket.socket(socket.AF_INET6 if ':' in server else socket.AF_INET, socket.SOCK_DGRAM)\n"
           "s.settimeout(3)\n"
           "s.sendto(dns.message.make_query(name, qtype, use_edns=0, payload=1232).to_wire(), (server, 53))\n"
           "r = s.recv(4096)\n"
           "print(r[3] & 15, int.from_bytes(r[6:8], 'big'), needle in r)\n")


@pytest.mark.parametrize("name,qtype,address", [("hint.evil.test", "HTTPS", "192.168.1.30"),
                                                ("any.evil.test", "ANY", "192.168.1.40")], ids=["https", "any"])
def test_a_hostile_zones_broken_record_hides_nothing_after_it(gate, lab, chains, name, qtype, address):
    """A zone serves a broken HTTPS record (an ipv4hint of 6 bytes), which
    Unbound and Knot Resolver pass on unchecked, with a private address after
    it: the records after the broken one are read and the answer is blocked
    as rebinding, in every order the resolver puts them in (not passed as
    unreadable, which fail_mode open lets through)."""
    if qtype == "ANY" and chains.kind == "kresd":
        pytest.skip("Knot Resolver answers this ANY question with SERVFAIL")
    for attempt in range(6):  # resolvers rotate the records of a set
        out = lab.ns(lab.client, "/usr/bin/python3", "-c", RAW_ASK, UPSTREAM_V4, name, qtype, address).stdout.split()
        assert out == ["3", "0", "False"], (attempt, out)  # NXDOMAIN from stop-rebinding, nothing of the answer


def test_an_exempt_internal_name_keeps_its_private_address(gate, client):
    response = client.probe("printer.corp.test")
    assert response["rcode"] == "NOERROR" and addresses_in(response) == {"192.168.1.20"}, response


# -- addresses -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("name,qtype", [("badaddr.answers.test", "A"), ("badaddr6.answers.test", "AAAA")])
def test_an_address_in_an_ip_list_gets_the_rules_answer(gate, client, server, name, qtype):
    upstream, source = server
    assert_forged(client.probe(name, server=upstream, source=source, qtype=qtype), name, "REFUSED", "block-bad-nets")


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("name,qtype", REBINDING, ids=["private", "ula", "loopback", "cgnat", "link-local",
                                                       "v4-mapped"])
def test_rebinding_answers_are_blocked(gate, client, server, name, qtype):
    upstream, source = server
    assert_forged(client.probe(name, server=upstream, source=source, qtype=qtype), name, "NXDOMAIN", "stop-rebinding")


@pytest.mark.parametrize("name,rule", [("svc.answers.test", "stop-rebinding"), ("svcalias.answers.test", "block-listed")],
                         ids=["private-hint", "alias-target"])
def test_https_records_hints_and_targets_are_inspected(gate, client, name, rule):
    """An HTTPS record sends clients to its TargetName, and some connect to its
    address hints before asking for addresses: both are the answer's."""
    assert_forged(client.probe(name, qtype="HTTPS"), name, "NXDOMAIN", rule)


# -- counters and the query log -----------------------------------------------------------------------------------
def test_answers_are_counted_apart_from_questions(gate, lab, client):
    before = lab.stats()
    for _ in range(3):
        assert client.probe("clean.answers.test")["rcode"] == "NOERROR"
    assert client.probe("cloaked.answers.test")["rcode"] == "NXDOMAIN"
    assert client.probe("x.alias.test", server=UPSTREAM_V6, source=CLIENT_V6)["rcode"] == "NXDOMAIN"
    assert client.probe("badaddr.answers.test")["rcode"] == "REFUSED"
    time.sleep(0.3)
    question, answers = stage_deltas(before, lab.stats())
    # The questions were decided as before (no rule names them): responses change nothing there.
    assert question["packets.received"] == 6 and question["packets.accepted"] == 6, question
    assert question["packets.dropped"] == 0 and question["verdicts.no_match"] == 6, question
    assert question["verdicts.block"] == 0, question
    assert answers["received"] == 6 and answers["block"] == 3, answers
    # The operator's table shows what each rule matched in answers beside its questions.
    after = lab.stats()
    hits = {rule["rule"]: rule["answer_hits"] for rule in after["rules"]}
    table = lab.cli("stats", "--socket", str(lab.socket_path)).stdout
    for rule in ("block-listed", "block-bad-nets"):
        row = next(line for line in table.splitlines() if line.strip().startswith(f"answers/{rule}"))
        assert hits[rule] > 0 and row.endswith(f"(answers: {hits[rule]})"), (row, hits)


def test_a_blocked_question_never_makes_an_answer(gate, lab, client):
    before = lab.stats()
    assert_forged(client.probe("tracker.blocked.test"), "tracker.blocked.test", "NXDOMAIN", "block-listed")
    time.sleep(0.3)
    question, answers = stage_deltas(before, lab.stats())
    assert question["verdicts.block"] == 1 and question["packets.received"] == 1, question
    assert answers["received"] == 0, "the query never reached the resolver"


def test_answer_stage_blocks_are_logged_with_rcode_and_answers(gate, client):
    since = gate.log.stat().st_size if gate.log.exists() else 0
    client.probe("cLoAkEd.answers.test", server=UPSTREAM_V6, source=CLIENT_V6)
    entry = wait_for_log(gate.log, lambda e: e["query_name"] == "cLoAkEd.answers.test.", since)
    assert entry == entry | {"srcaddr": CLIENT_V6, "dstaddr": UPSTREAM_V6, "dstport": "53", "transport": "UDP",
                             "query_type": "A", "query_class": "IN", "firewall_rule_group": "answers",
                             "firewall_rule": "block-listed", "firewall_domain_list": "blocked",
                             "firewall_rule_action": "BLOCK", "block_response": "NXDOMAIN"}, entry
    assert isinstance(entry["rcode"], str) and entry["rcode"], entry
    assert {("CNAME", "tracker.blocked.test", "IN"), ("A", "203.0.113.66", "IN")} <= logged_answers(entry), entry

    client.probe("BadAddr6.answers.test", qtype="AAAA")
    entry = wait_for_log(gate.log, lambda e: e["query_name"] == "BadAddr6.answers.test.", since)
    assert entry["firewall_rule"] == "block-bad-nets" and entry["block_response"] == "REFUSED", entry
    assert entry["srcaddr"] == CLIENT_V4 and entry["query_type"] == "AAAA", entry
    assert ("AAAA", "2001:db8:bad::1", "IN") in logged_answers(entry), entry


# -- malformed answers ----------------------------------------------------------------------------------------------
def _name(text: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in text.split(".")) + b"\x00"


QUESTION = _name("clean.answers.test") + struct.pack("!HH", 1, 1)
GOOD_RR = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton("203.0.113.10")


def response(qid: int, records: bytes, ancount: int = 1) -> bytes:
    return struct.pack("!HHHHHH", qid, 0x8180, 1, ancount, 0, 0) + QUESTION + records


MALFORMED = {
    "cut-short": response(0x1001, GOOD_RR[:9]),                      # the answer stops inside its TTL
    "bad-pointer": response(0x1002, b"\xc0\xff" + GOOD_RR[2:]),      # its owner points past the message
    "header-cut": response(0x1004, GOOD_RR)[:7],                     # not even a whole header
}
WELL_FORMED = response(0x1003, GOOD_RR)
LISTEN_PORT = 40053


# What a rogue server can send that some stub still reads (musl matches an answer
# on its ID alone): no question, or the QR bit clear. Each carries a private address.
PRIVATE_RR = _name("x.example") + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton("192.168.7.7")
ROGUE = {
    "no-question": struct.pack("!HHHHHH", 0x2001, 0x8180, 0, 1, 0, 0) + PRIVATE_RR,
    "qr-clear": struct.pack("!HHHHHH", 0x2002, 0x0180, 1, 1, 0, 0) + QUESTION + PRIVATE_RR,
}


def test_what_a_rogue_server_sends_from_port_53_is_inspected_all_the_same(gate, lab):
    """Anything from port 53 on a client's flow is decided on its answers,
    whatever its header says; one without a question has nothing to be
    answered for, so it is dropped."""
    before = lab.stats()
    ready = lab.dir / "listening-rogue"
    ready.unlink(missing_ok=True)
    process = listen_for(lab, CLIENT_V4, LISTEN_PORT + 2, 2.5, ready, opens_flow_to=UPSTREAM_V4)
    for _ in range(100):
        if ready.exists() or process.poll() is not None:
            break
        time.sleep(0.02)
    for payload in ROGUE.values():
        send_response(lab, payload, src=UPSTREAM_V4, dst=CLIENT_V4, dport=LISTEN_PORT + 2)
    out, _ = process.communicate(timeout=30)
    received = [bytes.fromhex(d["hex"]) for d in json.loads(out)]
    assert ROGUE["no-question"] not in received, "dropped: no question to answer"
    assert ROGUE["qr-clear"] not in received
    forged = [m for m in received if m[:2] == b"\x20\x02"]
    assert len(forged) == 1 and forged[0][3] & 0x0f == 3, received  # NXDOMAIN for its question instead
    time.sleep(0.3)
    _, answers = stage_deltas(before, lab.stats())
    assert answers["block"] == 2 and answers["received"] == 2, answers


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
def test_a_malformed_answer_follows_the_fail_mode(gate, lab, fail_mode):
    """A response that cannot be read is not_dns: passed when fail-open,
    dropped when fail-closed; a well-formed one passes either way. A packet
    from port 53 that answers no flow the client opened is no answer: the
    shipped rules leave it to the gateway's own firewall, unqueued."""
    try:
        gate.start(fail_mode=fail_mode)
        before = lab.stats()
        listeners = []
        for address, upstream in ((CLIENT_V4, UPSTREAM_V4), (CLIENT_V6, UPSTREAM_V6)):
            ready = lab.dir / f"listening-{fail_mode}-{':' in address}"
            ready.unlink(missing_ok=True)
            listeners.append((address, listen_for(lab, address, LISTEN_PORT, 2.5, ready, opens_flow_to=upstream), ready))
        for _, process, ready in listeners:
            for _ in range(100):
                if ready.exists() or process.poll() is not None:
                    break
                time.sleep(0.02)
        for (address, _, _), upstream in zip(listeners, (UPSTREAM_V4, UPSTREAM_V6)):
            for payload in (*MALFORMED.values(), WELL_FORMED):
                send_response(lab, payload, src=upstream, dst=address, dport=LISTEN_PORT)
            # To a port with no flow: not queued at all.
            send_response(lab, WELL_FORMED, src=upstream, dst=address, dport=LISTEN_PORT + 1)
        received = {}
        for address, process, _ in listeners:
            out, _ = process.communicate(timeout=30)
            received[address] = [bytes.fromhex(d["hex"]) for d in json.loads(out)]
        for address in (CLIENT_V4, CLIENT_V6):
            expected = [*MALFORMED.values(), WELL_FORMED] if fail_mode == "open" else [WELL_FORMED]
            assert sorted(received[address]) == sorted(expected), (address, received[address])
        time.sleep(0.3)
        question, answers = stage_deltas(before, lab.stats())
        assert answers["not_dns"] == 2 * len(MALFORMED) and answers["received"] == 2 * (len(MALFORMED) + 1), answers
        # An unreadable message is not_dns wherever it came from: the question
        # stage's counters carry it too (received = accepted + dropped), and no
        # other verdict but the two flow openers' not_query.
        assert question["verdicts.not_dns"] == 2 * len(MALFORMED), question
        assert question["packets.received"] == 2 * len(MALFORMED) + 2, question
        assert question["verdicts.not_query"] == 2, question
        assert all(v == 0 for k, v in question.items()
                   if k.startswith("verdicts.") and k not in ("verdicts.not_dns", "verdicts.not_query")), question
    finally:
        gate.start()
