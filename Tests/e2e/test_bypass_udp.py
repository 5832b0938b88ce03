# SPDX-License-Identifier: GPL-2.0-or-later
"""Red team over UDP: no malformed-but-answerable query lets a blocked name
resolve through the gateway, with real resolvers behind it.

Unbound, dnsmasq, Knot Resolver and BIND run in the upstream namespace
(lab/resolvers.py), each answering blocked.bypass.example (and every name below
it) with A 203.0.113.66. dnsgate blocks that name with a forged NXDOMAIN. Every
attack below is a query for the blocked name that some real resolver still
answers although it is malformed or unusual: an opcode other than QUERY, a
broken OPT record, a forward compression pointer, a name longer than 255
octets, IPv6 extension headers before UDP, ...

Each attack is first sent with no firewall in the way (the control): at least
one real resolver must give out 203.0.113.66 for it, so the attack is real.
(Two questions in one query are the exception: none of the four resolvers gives
out the address for them, but each receives and answers them, so their control
only requires an answer, and the gateway must still let nothing of it through.)
Then the same packets go through the gateway with dnsgate running, fail-open
and fail-closed, with `undecodable: drop` written out and with the key left at
its default: what comes back to the client must be nothing or dnsgate's forged
NXDOMAIN, never a resolver's answer, and no frame that reaches the client may
carry 203.0.113.66 (an AF_PACKET sniffer on c0 checks that apart from the
sockets).

All probes of one run go out in one batch from the client namespace (each from
a socket of its own), so a run costs one answer window, not one per probe.

DNSGATE_E2E_OMIT_UNDECODABLE=1 leaves the `undecodable:` key out of every
config (for a daemon that does not know it yet). DNSGATE_E2E_REPORT=PATH writes
what every probe got in every run as JSON.
"""
import json
import os
import random
import struct
from dataclasses import dataclass, field
from typing import Callable

import pytest

from lab import CLIENT_V4, CLIENT_V6, ROOT
from resolvers import (ALLOWED_BYTES, ALLOWED_NAME, BLOCKED_BYTES, BLOCKED_NAME, FORGED_MARK, RealResolvers,
                       probe_batch)

WINDOW = 2.0  # seconds every batch waits for answers after its last packet

try:
    import scapy.layers.inet  # noqa: F401
    import scapy.layers.inet6  # noqa: F401
    HAVE_SCAPY = True
except ImportError:
    HAVE_SCAPY = False


# -- DNS messages ---------------------------------------------------------------------------------
def wire_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\x00"


def header(qid: int, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!6H", qid, flags, qd, an, ns, ar)  # flags 0x0100: a QUERY with RD


def question(name: str = BLOCKED_NAME, qtype: int = 1) -> bytes:
    return wire_name(name) + struct.pack("!HH", qtype, 1)


def opt(owner: bytes = b"\x00", rdata: bytes = b"", rdlength: int | None = None) -> bytes:
    return owner + struct.pack("!HHIH", 41, 1232, 0, len(rdata) if rdlength is None else rdlength) + rdata


def long_name(octets: int) -> bytes:
    """A wire name of exactly `octets` octets ending in blocked.bypass.example."""
    tail = wire_name(BLOCKED_NAME)
    need, labels = octets - len(tail), []
    for _ in range(16):
        if need <= 0:
            break
        size = min(63, need - 1)
        if need - (size + 1) == 1:  # never leave one octet: a label needs two
            size -= 1
        labels.append(bytes([size]) + b"a" * size)
        need -= size + 1
    name = b"".join(labels) + tail
    assert len(name) == octets
    return name


A_RECORD = wire_name(BLOCKED_NAME) + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 99])
QTAIL = struct.pack("!HH", 1, 1)  # type A, class IN


@dataclass(frozen=True)
class Attack:
    name: str
    message: Callable[[int], bytes]  # the DNS message for a query ID
    answered_by: tuple[str, ...]     # resolvers seen giving out the blocked address for it (Unbound 1.17, dnsmasq
                                     # 2.90, Knot Resolver 5.6, BIND 9.18); when none of them runs, the tests skip
    wrap: str = "udp"                # udp (over IPv4 and IPv6), or a hand-made IP packet: ipv6-*, ipv4-options
    note: str = ""
    control: str = "address"         # the control's bar: "address" (203.0.113.66 comes back) or "answered"


def plain(qid: int) -> bytes:
    return header(qid) + question()


def opcode_query(opcode: int) -> Callable[[int], bytes]:
    return lambda qid: header(qid, flags=(opcode << 11) | 0x0100) + question()


ATTACKS = [
    *[Attack(f"opcode-{op}", opcode_query(op), ("kresd",), note="Knot Resolver answers any opcode like QUERY")
      for op in (1, 2, 3, 4, 5, 6, 15)],
    Attack("qdcount2-blocked-first", lambda q: header(q, qd=2) + question() + question(ALLOWED_NAME), (),
           control="answered",
           note="no installed resolver gives out the address (dnsmasq REFUSED, Unbound and BIND FORMERR, Knot "
                "silent), but they do receive and answer it: nothing of the kind may get past the gateway"),
    Attack("qdcount2-blocked-second", lambda q: header(q, qd=2) + question(ALLOWED_NAME) + question(), (),
           control="answered", note="as qdcount2-blocked-first, the blocked name second"),
    Attack("opt-owner-not-root", lambda q: header(q, ar=1) + question() + opt(owner=wire_name("x")),
           ("kresd", "dnsmasq")),
    Attack("edns-option-past-rdlength",
           lambda q: header(q, ar=1) + question() + opt(rdata=struct.pack("!HH", 10, 16) + bytes(8)),
           ("unbound", "dnsmasq"), note="a COOKIE option of 16 octets in an OPT RDATA of 12"),
    Attack("duplicate-opt", lambda q: header(q, ar=2) + question() + opt() + opt(), ("dnsmasq",)),
    Attack("rdlength-past-end", lambda q: header(q, ar=1) + question() + opt(rdata=bytes.fromhex("000a0008"), rdlength=40),
           ("dnsmasq",)),
    Attack("arcount-too-large", lambda q: header(q, ar=3) + question() + opt(), ("dnsmasq",)),
    Attack("arcount-no-record", lambda q: header(q, ar=1) + question(), ("dnsmasq",)),
    Attack("ancount-record", lambda q: header(q, an=1) + question() + A_RECORD, ("kresd", "named"),
           note="a query with an answer record"),
    Attack("nscount-record", lambda q: header(q, ns=1) + question() + A_RECORD, ("kresd", "named")),
    Attack("trailing-bytes", lambda q: header(q) + question() + bytes(7), ("unbound", "dnsmasq", "named")),
    Attack("forward-pointer", lambda q: header(q) + b"\xc0\x12" + QTAIL + wire_name(BLOCKED_NAME), ("dnsmasq",),
           note="question name = pointer to the name placed after the question"),
    Attack("forward-pointer-suffix",
           lambda q: header(q) + b"\x07blocked\xc0\x1a" + QTAIL + wire_name("bypass.example"), ("dnsmasq",),
           note="'blocked' + pointer to 'bypass.example' placed after the question"),
    *[Attack(f"long-name-{n}", (lambda n: lambda q: header(q) + long_name(n) + QTAIL)(n), ("dnsmasq",),
             note=f"a {n}-octet name ending in {BLOCKED_NAME}") for n in (256, 280, 300)],
    Attack("ipv6-eight-destopts", plain, ("unbound", "dnsmasq", "kresd", "named"), wrap="ipv6-eight-destopts"),
    Attack("ipv6-routing-header-1k", plain, ("unbound", "dnsmasq", "kresd", "named"), wrap="ipv6-rh0-1k",
           note="type 0, segments left 0, 63 addresses"),
    Attack("ipv6-destopts-1k", plain, ("unbound", "dnsmasq", "kresd", "named"), wrap="ipv6-destopts-1k"),
    Attack("ipv4-options", plain, ("unbound", "dnsmasq", "kresd", "named"), wrap="ipv4-options",
           note="40 octets of IPv4 options (NOPs, EOL)"),
]
BASELINES = [Attack("plain-blocked", plain, ("unbound", "dnsmasq", "kresd", "named")),
             Attack("plain-allowed", lambda q: header(q) + question(ALLOWED_NAME), ())]
BY_NAME = {attack.name: attack for attack in ATTACKS + BASELINES}


# -- hand-made IP packets (scapy) -----------------------------------------------------------------
def ip_packet(wrap: str, source: str, destination: str, sport: int, message: bytes) -> bytes:
    from scapy.layers.inet import IP, UDP, IPOption, IPOption_NOP
    from scapy.layers.inet6 import HBHOptUnknown, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting
    from scapy.packet import Raw

    udp = UDP(sport=sport, dport=53) / Raw(message)
    if wrap == "ipv4-options":
        return bytes(IP(src=source, dst=destination, ttl=64, options=[IPOption_NOP()] * 39 + [IPOption(b"\x00")]) / udp)
    packet = IPv6(src=source, dst=destination, hlim=64)
    if wrap == "ipv6-eight-destopts":
        for _ in range(8):
            packet = packet / IPv6ExtHdrDestOpt()
    elif wrap == "ipv6-rh0-1k":
        packet = packet / IPv6ExtHdrRouting(type=0, segleft=0, addresses=[f"2001:db8:3::{i:x}" for i in range(1, 64)])
    elif wrap == "ipv6-destopts-1k":  # options of an unknown type with action "skip" (PadN over 7 octets is dropped)
        packet = packet / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x1E, optdata=bytes(250)) for _ in range(4)])
    else:
        raise ValueError(wrap)
    return bytes(packet / udp)


# -- runs -----------------------------------------------------------------------------------------
CONFIG = """queues: "0-1"
fail_mode: {fail_mode}
{undecodable}stats_socket: {socket}
domain_lists:
  - name: bypass
    domains: ["{blocked}", "*.{blocked}"]
rule_groups:
  - name: red-team
    priority: 1
    rules:
      - {{name: block-bypass, priority: 1, domain_list: bypass, action: BLOCK, block_response: NXDOMAIN}}
"""

# name: (fail_mode, undecodable key written out). "direct": no rules, no dnsgate.
MODES = {"open": ("open", True), "closed": ("closed", True),
         "open-default": ("open", False), "closed-default": ("closed", False)}
RUNS = ["direct", *MODES]


@dataclass
class Probe:
    attack: str
    resolver: str
    family: str
    sport: int | None = None
    error: str | None = None
    datagrams: list[bytes] = field(default_factory=list)
    sniffed: list[bytes] = field(default_factory=list)  # UDP payloads from port 53 to this probe's port, seen on c0

    @property
    def where(self) -> str:
        return f"{self.resolver}/{self.family}"


@dataclass
class Run:
    name: str
    probes: list[Probe]
    stray: list[str]            # frames at the client carrying the blocked address that match no probe
    sniffer: bool
    stats: dict | None = None
    dnsgate_alive: bool = True

    def of(self, attack: str) -> list[Probe]:
        return [p for p in self.probes if p.attack == attack]


def classify(data: bytes) -> str:
    if BLOCKED_BYTES in data:
        return "BLOCKED ADDRESS 203.0.113.66"
    if len(data) < 12 or not data[2] & 0x80:
        return f"not a DNS response ({len(data)} octets)"
    rcode = data[3] & 0x0F
    if rcode == 3 and FORGED_MARK in data:
        return "forged NXDOMAIN"
    if ALLOWED_BYTES in data:
        return "allowed address"
    names = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
    return f"resolver {names.get(rcode, f'rcode {rcode}')}"


def describe(probes: list[Probe]) -> str:
    return "; ".join(f"{p.where}: " + (p.error or ", ".join(classify(d) for d in p.datagrams) or "nothing")
                     for p in probes)


def firewall_config(lab, mode: str):
    fail_mode, key = MODES[mode]
    omit = os.environ.get("DNSGATE_E2E_OMIT_UNDECODABLE") == "1"
    text = CONFIG.format(fail_mode=fail_mode, socket=lab.socket_path, blocked=BLOCKED_NAME,
                         undecodable="undecodable: drop\n" if key and not omit else "")
    return lab.write_config(text, f"bypass-udp-{mode}.yaml")


def perform(lab, resolvers: RealResolvers, run: str, port_base: int) -> Run:
    lab.stop_dnsgate()
    lab.remove_rules()
    lab.ns(lab.gateway, str(ROOT / "iptables" / "dnsgate-firewall"), "remove", check=False)
    if run != "direct":
        lab.apply_rules(*(["--closed"] if MODES[run][0] == "closed" else []))
        lab.start_dnsgate(firewall_config(lab, run))
    jobs, probes = [], {}
    port = port_base
    for attack in ATTACKS + BASELINES:
        if attack.wrap != "udp" and not HAVE_SCAPY:
            continue
        for resolver in resolvers.running.values():
            families = [("ipv4", CLIENT_V4, resolver.v4), ("ipv6", CLIENT_V6, resolver.v6)]
            if attack.wrap.startswith("ipv6"):
                families = families[1:]
            elif attack.wrap == "ipv4-options":
                families = families[:1]
            for family, source, destination in families:
                key = f"{attack.name}|{resolver.name}|{family}"
                probes[key] = Probe(attack.name, resolver.name, family)
                message = attack.message(random.randrange(1, 65536))
                if attack.wrap == "udp":
                    jobs.append({"key": key, "kind": "udp", "src": source, "dst": destination, "payload": message.hex()})
                else:
                    port += 1
                    jobs.append({"key": key, "kind": "raw", "src": source, "sport": port,
                                 "packet": ip_packet(attack.wrap, source, destination, port, message).hex()})
    out = probe_batch(lab, jobs, window=WINDOW)
    by_port = {}
    for key, result in out["results"].items():
        probe = probes[key]
        probe.sport, probe.error = result["sport"], result["error"]
        probe.datagrams = [bytes.fromhex(d["hex"]) for d in result["datagrams"]]
        if probe.sport:
            by_port[probe.sport] = probe
    stray = []
    for frame in out["sniffed"]:
        data = bytes.fromhex(frame["hex"])
        probe = by_port.get(frame["dport"])
        if probe is not None:
            probe.sniffed.append(data)
        elif BLOCKED_BYTES in data:
            stray.append(f"{frame['src']}:{frame['sport']} -> port {frame['dport']}: {data.hex()}")
    result = Run(run, list(probes.values()), stray, out["sniffer"])
    if run != "direct":
        result.dnsgate_alive = lab.dnsgate is not None and lab.dnsgate.poll() is None
        result.stats = lab.try_stats() if result.dnsgate_alive else None
        lab.stop_dnsgate()
        lab.remove_rules()
    return result


class Runs:
    """Each run is performed once, when a test first needs it."""

    def __init__(self, lab, resolvers: RealResolvers):
        self.lab, self.resolvers, self.done, self.failed = lab, resolvers, {}, {}

    def __getitem__(self, run: str) -> Run:
        if run not in self.done and run not in self.failed:
            try:
                self.done[run] = perform(self.lab, self.resolvers, run, 20000 + 1000 * RUNS.index(run))
            except Exception as error:  # reported by every test that needs this run, attempted once
                self.failed[run] = f"{type(error).__name__}: {error}"
                self.lab.stop_dnsgate()
                self.lab.remove_rules()
        if run in self.failed:
            pytest.fail(f"the {run} run could not be performed: {self.failed[run]}")
        return self.done[run]

    def report(self) -> dict:
        return {name: {"dnsgate_alive": run.dnsgate_alive, "stats_verdicts": (run.stats or {}).get("verdicts"),
                       "stray": run.stray,
                       "probes": {f"{p.attack} {p.where}": p.error or [classify(d) for d in p.datagrams]
                                  for p in run.probes}}
                for name, run in self.done.items()}


@pytest.fixture(scope="module")
def resolvers(lab):
    instance = RealResolvers(lab).start()
    if not instance.running:
        instance.stop()
        pytest.skip("no real resolver could run: " + "; ".join(f"{k}: {v}" for k, v in
                                                                 {**instance.missing, **instance.failed}.items()))
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def runs(lab, resolvers):
    instance = Runs(lab, resolvers)
    yield instance
    lab.stop_dnsgate()
    lab.remove_rules()
    path = os.environ.get("DNSGATE_E2E_REPORT")
    if path:
        report = instance.report()
        report["resolvers"] = {"running": sorted(resolvers.running), "missing": resolvers.missing,
                               "failed": resolvers.failed}
        with open(path, "w") as out:
            json.dump(report, out, indent=1)


def needs(attack: Attack, resolvers: RealResolvers) -> None:
    if attack.wrap != "udp" and not HAVE_SCAPY:
        pytest.skip("python3-scapy is not installed: the hand-made IP packets cannot be built")
    if attack.answered_by and not set(attack.answered_by) & set(resolvers.running):
        why = "; ".join(f"{name}: {resolvers.missing.get(name) or resolvers.failed.get(name, '?')}"
                        for name in attack.answered_by)
        pytest.skip(f"{attack.name} is answered only by {', '.join(attack.answered_by)}, which is not running ({why})")


def assert_real(attack: Attack, direct: Run) -> None:
    """The control: with no firewall in the way, the attack gets the blocked address out of a real resolver
    (or, for control="answered", at least reaches one and is answered)."""
    probes = direct.of(attack.name)
    assert probes, f"{attack.name} was not sent"
    note = f" [{attack.note}]" if attack.note else ""
    if attack.control == "address":
        hits = [p.where for p in probes if any(BLOCKED_BYTES in d for d in p.datagrams)]
        assert hits, (f"control: no resolver gave out 203.0.113.66 for {attack.name} without the firewall, so the "
                      f"attack is not real here{note} ({describe(probes)})")
    else:
        answered = [p.where for p in probes if p.datagrams]
        assert answered, f"control: no resolver answered {attack.name} at all without the firewall{note} ({describe(probes)})"


# -- the resolvers and the path -------------------------------------------------------------------
def test_every_installed_resolver_runs(resolvers):
    for name, why in sorted(resolvers.missing.items()):
        print(f"\n{name} not tested: {why}")
    assert not resolvers.failed, "\n".join(f"{name}: {why}" for name, why in resolvers.failed.items())


def test_without_the_firewall_each_resolver_answers_both_names(runs):
    direct = runs["direct"]
    assert direct.sniffer, "the AF_PACKET sniffer on c0 could not be opened"
    for probe in direct.of("plain-blocked"):
        assert [classify(d) for d in probe.datagrams] == ["BLOCKED ADDRESS 203.0.113.66"], probe.where
    for probe in direct.of("plain-allowed"):
        assert [classify(d) for d in probe.datagrams] == ["allowed address"], probe.where


@pytest.mark.parametrize("mode", MODES)
def test_through_the_gateway_the_allowed_name_resolves_and_the_blocked_one_is_forged(runs, mode):
    """The path works (so "nothing came back" below means dnsgate stopped it) and the policy is in force."""
    run = runs[mode]
    assert run.dnsgate_alive, "dnsgate died during the batch"
    for probe in run.of("plain-allowed"):
        assert [classify(d) for d in probe.datagrams] == ["allowed address"], f"{probe.where}: {describe([probe])}"
    for probe in run.of("plain-blocked"):
        assert [classify(d) for d in probe.datagrams] == ["forged NXDOMAIN"], f"{probe.where}: {describe([probe])}"


@pytest.mark.parametrize("mode", MODES)
def test_dnsgate_survives_the_attacks_and_no_frame_at_the_client_carries_the_blocked_address(runs, mode):
    run = runs[mode]
    assert run.sniffer, "the AF_PACKET sniffer on c0 could not be opened"
    assert run.dnsgate_alive, "dnsgate died during the batch"
    assert run.stats is not None and run.stats["packets"]["received"] >= len(run.probes), \
        "the batch did not go through dnsgate's queues"
    leaks = [f"{p.attack} {p.where}" for p in run.probes if any(BLOCKED_BYTES in s for s in p.sniffed)]
    assert not leaks and not run.stray, f"frames with 203.0.113.66 reached the client: {leaks} {run.stray}"


# -- the attacks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_attack_is_real_without_the_firewall(runs, resolvers, attack):
    needs(attack, resolvers)
    direct = runs["direct"]
    assert_real(attack, direct)
    if attack.control == "address":
        hits = sorted(p.where for p in direct.of(attack.name) if any(BLOCKED_BYTES in d for d in p.datagrams))
        print(f"\n{attack.name}: 203.0.113.66 from {', '.join(hits)}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_blocked_name_never_resolves_through_the_gateway(runs, resolvers, attack, mode):
    needs(attack, resolvers)
    assert_real(attack, runs["direct"])
    probes = runs[mode].of(attack.name)
    errors = [f"{p.where}: {p.error}" for p in probes if p.error]
    assert not errors, f"probes not sent: {errors}"
    leaked = [p.where for p in probes if any(BLOCKED_BYTES in d for d in p.datagrams + p.sniffed)]
    assert not leaked, f"{attack.name} resolved the blocked name through the gateway via {leaked}: {describe(probes)}"
    passed = [p.where for p in probes if any(classify(d) != "forged NXDOMAIN" for d in p.datagrams)]
    assert not passed, (f"{attack.name} reached a resolver through the gateway (the client must get nothing or "
                        f"dnsgate's NXDOMAIN): {describe(probes)}")
