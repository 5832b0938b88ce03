# SPDX-License-Identifier: GPL-2.0-or-later
"""The client matrix of issue #9: forged answers that every real client stack
takes as meant.

Every client stack that installs from Debian bookworm or PyPI (scripts/setup
installs them all) asks through the gateway, with an IPv4 and an IPv6 server
and, where the stack can, over UDP and over TCP, for names blocked with each
block response, then for an allowed name. Each cell proves what a user wants:

- NXDOMAIN, NODATA, REFUSED: the lookup ends at once (under 1 s) with the
  stack's own "not found", "no data" or failure report, never with an address;
- OVERRIDE A / AAAA: the sinkhole address arrives (203.0.113.66 /
  2001:db8:ff::66);
- OVERRIDE CNAME (to sinkhole.lab.example): the target's address arrives as the
  client's own resolver answers it (the lab upstream: 203.0.113.53 for A,
  2001:db8:ff::53 for AAAA), both for an A and for an AAAA lookup;
- an allowed name asked right after, in the same process (on the same channel
  or resolver object where the stack has one), resolves at once, over the
  cell's transport (checked in the upstream's log);
- no blocked name ever reaches the upstream.

Stacks (lab/clients/ holds the small programs; one process per cell for
programs, one per lookup for command-line tools):

  glibc         getent ahostsv4/ahostsv6; TCP: `options use-vc`
  musl          getaddrinfo() built with musl-gcc (UDP only: musl has no TCP)
  go, go-cgo    net.Resolver.LookupIP, GODEBUG=netdns=go / netdns=cgo; TCP: use-vc
  node-lookup   dns.lookup (getaddrinfo on libuv's pool); TCP: use-vc
  node-resolve  dns.promises.Resolver resolve4/resolve6 (node's c-ares); TCP: use-vc
  pycares       c-ares >= 1.33 from PyPI, EDNS on; TCP: ARES_FLAG_USEVC
  dnspython     dns.resolver; TCP: tcp=True
  busybox       busybox nslookup (UDP only)
  getdns        getdns_query -s (stub); -U / -T
  libunbound    unbound-host with a forward-zone; TCP: tcp-upstream
  dig, kdig, drill   +tcp / +tcp / -t
  netdns        Perl Net::DNS; TCP: usevc
  unbound-fwd, bind-fwd, dnsmasq-fwd   LAN-side forwarders in the client
                namespace (192.0.2.30-34, 2001:db8:1::30-34), asked by dig,
                forwarding to the upstream through the gateway; TCP: Unbound
                tcp-upstream, BIND `server { tcp-only yes; }`, dnsmasq asked
                over TCP (it forwards a TCP query over TCP)

Every client runs with an /etc/resolv.conf of its own per cell (bind-mounted in
a private mount namespace), since most read it, even with a server given: the
cell's server, `timeout:2 attempts:1`, and `use-vc` for TCP; the others get the
same 2 s and one try on their command line.

DROP waits out each client's timeout, so the matrix only has two cheap DROP
cells with 1 s client timeouts. DNSGATE_MATRIX_DROP=1 also measures every
stack's DROP wait with its default timeouts, all stacks at once, at most 60 s.

A cell that fails through the client's own behaviour, which no DNS server can
change, is marked xfail (strict) with the measured reason (CLIENT_BEHAVIOUR).
DNSGATE_MATRIX_REPORT=PATH writes every cell's outcome and seconds as JSON to
PATH, and a Markdown table (stack x response) to PATH with the suffix .md.
"""
import functools
import ipaddress
import json
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from lab import (CLIENT_V4, CLIENT_V6, PYTHON, ROOT, UPSTREAM_V4, UPSTREAM_V6, named_forwarder_config,
                 unbound_forwarder_config)

CLIENTS = ROOT / "lab" / "clients"
FAST = 1.0                  # seconds: "at once", for a blocked and for an allowed lookup
MATRIX_TIMEOUT = 2          # the clients' timeout per try in the matrix (one try)
DROP_TIMEOUT = 1            # the clients' timeout in the cheap DROP cells
LOOKUP_BOUND = 60.0         # no lookup process may take longer, whatever its defaults
ALLOWED = {"A": "203.0.113.7", "AAAA": "2001:db8:ff::7"}   # every other name at the lab upstream

# What a stack made of a lookup, in one vocabulary across stacks.
ADDRESS = "address"
NOT_FOUND = "not-found"       # NXDOMAIN, as the stack reports it
NO_DATA = "no-data"           # the name exists but has no address of that type
NO_ADDRESS = "no-address"     # no address; the stack does not say why (getent)
FAILURE = "failure"           # REFUSED, SERVFAIL, "temporary failure"
TIMEOUT = "timeout"
OTHER = "other"

# Each stack's error names -> outcome.
OUTCOME_OF_ERROR = {
    # DNS rcodes, as dig, kdig, drill, getdns, unbound-host, busybox and Net::DNS report them
    "NXDOMAIN": NOT_FOUND, "NODATA": NO_DATA, "REFUSED": FAILURE, "SERVFAIL": FAILURE, "TIMEOUT": TIMEOUT,
    "query timed out": TIMEOUT, "CNAME only": NO_DATA,   # NOERROR, a CNAME and no address for its target
    # getaddrinfo (musl; glibc under node's dns.lookup)
    "EAI_NONAME": NOT_FOUND, "EAI_NODATA": NO_DATA, "EAI_AGAIN": FAILURE, "EAI_FAIL": FAILURE,
    # node; "EMPTY" is a success with an empty list (node and c-ares given a CNAME alone)
    "ENOTFOUND": NOT_FOUND, "ENODATA": NO_DATA, "EREFUSED": FAILURE, "ESERVFAIL": FAILURE, "ETIMEOUT": TIMEOUT,
    "ECONNREFUSED": FAILURE, "EMPTY": NO_DATA,
    # c-ares through pycares
    "ARES_ENOTFOUND": NOT_FOUND, "ARES_ENODATA": NO_DATA, "ARES_EREFUSED": FAILURE, "ARES_ESERVFAIL": FAILURE,
    "ARES_ETIMEOUT": TIMEOUT, "ARES_ECONNREFUSED": FAILURE,
    # dnspython's exceptions
    "NoAnswer": NO_DATA, "NoNameservers": FAILURE, "LifetimeTimeout": TIMEOUT,
    # Go's net.DNSError, as lab/clients/lookup.go names it
    "not-found": NOT_FOUND, "no-data": NO_DATA, "temporary": FAILURE, "failure": FAILURE, "timeout": TIMEOUT,
    # getent: exit status 2 is any failure of getaddrinfo
    "no address (exit 2)": NO_ADDRESS,
}


# -- block responses ----------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class Response:
    kind: str                          # test id and report key
    label: str                         # report column
    zone: str                          # blocked names are *.ZONE.matrix.example
    rule: str                          # the rule's block_response (and override)
    asks: tuple[str, ...]              # one blocked lookup per type, then the allowed one
    addresses: dict[str, str] = field(default_factory=dict)   # wanted per type; empty: none at all
    outcomes: frozenset[str] = frozenset()                    # acceptable when no address is wanted

    def __repr__(self) -> str:
        return self.kind


RESPONSES = [
    Response("nxdomain", "NXDOMAIN", "nx", "block_response: NXDOMAIN", ("A",),
             outcomes=frozenset({NOT_FOUND, NO_ADDRESS})),
    Response("nodata", "NODATA", "nodata", "block_response: NODATA", ("A",),
             outcomes=frozenset({NO_DATA, NOT_FOUND, NO_ADDRESS})),
    # A stub is free to call REFUSED a failure; what matters is that it says so at once.
    Response("refused", "REFUSED", "refused", "block_response: REFUSED", ("A",),
             outcomes=frozenset({FAILURE, NOT_FOUND, NO_DATA, NO_ADDRESS})),
    Response("override-a", "OVERRIDE A", "ova",
             "block_response: OVERRIDE, override: {type: A, value: 203.0.113.66, ttl: 60}", ("A",),
             {"A": "203.0.113.66"}),
    Response("override-aaaa", "OVERRIDE AAAA", "ovaaaa",
             'block_response: OVERRIDE, override: {type: AAAA, value: "2001:db8:ff::66", ttl: 60}', ("AAAA",),
             {"AAAA": "2001:db8:ff::66"}),
    Response("override-cname", "OVERRIDE CNAME", "ovcname",
             "block_response: OVERRIDE, override: {type: CNAME, value: sinkhole.lab.example, ttl: 60}", ("A", "AAAA"),
             {"A": "203.0.113.53", "AAAA": "2001:db8:ff::53"}),
]
DROP = Response("drop", "DROP", "drop", "block_response: DROP", ("A",),
                outcomes=frozenset({TIMEOUT, NO_ADDRESS, FAILURE}))


def matrix_config(lab) -> str:
    """One rule per block response, each on its own list."""
    responses = [*RESPONSES, DROP]
    lists = "\n".join(f'  - {{name: {r.zone}, domains: ["*.{r.zone}.matrix.example"]}}' for r in responses)
    rules = "\n".join(f"      - {{name: {r.kind}, priority: {index}, domain_list: {r.zone}, action: BLOCK, {r.rule}}}"
                      for index, r in enumerate(responses, 1))
    return f"""queues: "0-1"
stats_socket: {lab.socket_path}
domain_lists:
{lists}
rule_groups:
  - name: matrix
    priority: 1
    rules:
{rules}
"""


# -- lookups ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    qtype: str        # A or AAAA
    name: str
    role: str         # "blocked" or "allowed"


def canonical(address: str) -> str:
    """One spelling per address (Net::DNS writes 2001:db8:ff:0:0:0:0:66)."""
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address


@dataclass
class Answer:
    name: str
    qtype: str
    role: str
    seconds: float
    addresses: list[str]
    error: str | None
    outcome: str = ""

    def __post_init__(self):
        self.addresses = sorted({canonical(address) for address in self.addresses})
        if self.addresses:
            self.outcome = ADDRESS
        elif not self.outcome:
            self.outcome = OUTCOME_OF_ERROR.get(self.error or "", OTHER)

    def describe(self) -> str:
        said = ", ".join(self.addresses) if self.addresses else (self.error or "nothing")
        return f"{self.qtype} {self.name}: {said} ({self.outcome}) in {self.seconds:.3f} s"


@dataclass(frozen=True)
class Invocation:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def server(family: str) -> str:
    return UPSTREAM_V4 if family == "ipv4" else UPSTREAM_V6


def address_family_flag(qtype: str) -> str:
    return "ahostsv6" if qtype == "AAAA" else "ahostsv4"


# -- parsing what command-line tools print -------------------------------------------------------
TIMEOUT_MARKS = ("timed out", "no servers could be reached", "response timeout", "error sending query")


def parse_dig_like(result: subprocess.CompletedProcess, qtype: str) -> tuple[list[str], str | None]:
    """dig, kdig (`status: X`) and drill (`rcode: X`): the rcode, and the answer
    section's records of the type asked (a CNAME target's included)."""
    text = result.stdout + result.stderr
    status = re.search(r"(?:status|rcode): (\w+)", text)
    if status is None:
        return [], "TIMEOUT" if any(mark in text for mark in TIMEOUT_MARKS) else f"exit {result.returncode}"
    records = [line.split() for line in result.stdout.splitlines() if not line.startswith(";")]
    records = [fields for fields in records if len(fields) >= 5 and fields[2] == "IN"]
    addresses = [fields[4] for fields in records if fields[3] == qtype]
    if status.group(1) != "NOERROR":
        return addresses, status.group(1)
    if not addresses:
        return [], "CNAME only" if any(fields[3] == "CNAME" for fields in records) else "NODATA"
    return addresses, None


def parse_getent(result: subprocess.CompletedProcess, qtype: str) -> tuple[list[str], str | None]:
    if result.returncode == 2:
        return [], "no address (exit 2)"
    if result.returncode != 0:
        return [], f"exit {result.returncode}"
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()], None


def parse_busybox(result: subprocess.CompletedProcess, qtype: str) -> tuple[list[str], str | None]:
    """`** server can't find NAME: RCODE`, or `Address: X` lines after the
    server's own block (which ends with the first blank line)."""
    text = result.stdout + result.stderr
    failed = re.search(r"can't find [^:]+: (\w+)", text)
    if failed:
        return [], failed.group(1)
    if any(mark in text for mark in TIMEOUT_MARKS):
        return [], "TIMEOUT"
    answers = result.stdout.split("\n\n", 1)[1] if "\n\n" in result.stdout else ""
    addresses = re.findall(r"^Address:\s*(\S+)\s*$", answers, re.MULTILINE)
    if not addresses:
        return [], "CNAME only" if "canonical name =" in answers else "NODATA"
    return addresses, None


RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def parse_getdns(result: subprocess.CompletedProcess, qtype: str) -> tuple[list[str], str | None]:
    """getdns_query -j: status 902 is "all timed out"; else the first reply's
    rcode and the answer section's addresses of the type asked."""
    try:
        reply = json.loads(result.stdout)
    except json.JSONDecodeError:
        return [], f"exit {result.returncode}: {result.stderr.strip()[:80]}"
    if reply.get("status") == 902:
        return [], "TIMEOUT"
    trees = reply.get("replies_tree") or []
    if not trees:
        return [], f"getdns status {reply.get('status')}"
    rdtype, key = (28, "ipv6_address") if qtype == "AAAA" else (1, "ipv4_address")
    answer = trees[0].get("answer", [])
    addresses = [rr["rdata"][key] for rr in answer if rr.get("type") == rdtype]
    rcode = RCODES.get(trees[0]["header"]["rcode"], str(trees[0]["header"]["rcode"]))
    if rcode != "NOERROR":
        return addresses, rcode
    if not addresses:
        return [], "CNAME only" if any(rr.get("type") == 5 for rr in answer) else "NODATA"
    return addresses, None


def parse_unbound_host(result: subprocess.CompletedProcess, qtype: str) -> tuple[list[str], str | None]:
    """unbound-host -v: `NAME has [IPv6 ]address X`, `has no [IPv6 ]address`,
    `not found: 3(NXDOMAIN)`, `2(SERVFAIL)`."""
    text = result.stdout + result.stderr
    addresses = re.findall(r"has (?:IPv6 )?address (\S+)", text)
    if addresses:
        return addresses, None
    failed = re.search(r"not found: \d+\((\w+)\)", text)
    if failed:
        return [], failed.group(1)
    if re.search(r"has no (?:IPv6 )?address", text):
        return [], "NODATA"
    return [], text.strip()[:80] or f"exit {result.returncode}"


# -- stacks -------------------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class Stack:
    """A client stack. `program` runs once per cell with every query (a
    library on one resolver object); `command` runs once per query (a
    command-line tool) and `parse` reads what it printed. `timeout` is the
    client's timeout per try, None for its defaults."""
    name: str
    label: str
    requires: tuple[str, ...]            # executables on PATH, "program:NAME" (built per session), "python:MODULE",
                                         # "perl:MODULE"
    packages: tuple[str, ...]            # Debian packages / PyPI modules, for the report's versions
    transports: tuple[str, ...] = ("udp", "tcp")
    program: Callable[["Matrix", str, str, int | None, list[Query]], Invocation] | None = None
    command: Callable[["Matrix", str, str, int | None, Query], Invocation] | None = None
    parse: Callable[[subprocess.CompletedProcess, str], tuple[list[str], str | None]] | None = None

    def __repr__(self) -> str:
        return self.name

    def unavailable(self, matrix: "Matrix") -> str | None:
        for need in self.requires:
            kind, _, what = need.partition(":") if ":" in need else ("", "", need)
            if kind == "program" and what not in matrix.programs:
                why = matrix.program_errors.get(what, what + " was not built")
                return f"{self.name}: {why} (scripts/setup installs it)"
            if kind == "python" and not python_module_present(what):
                return f"{self.name}: Python module {what} is missing (scripts/setup installs it)"
            if kind == "perl" and not perl_module_present(what):
                return f"{self.name}: Perl module {what} is missing (scripts/setup installs it)"
            if not kind and shutil.which(what) is None:
                return f"{self.name}: {what} is not installed (scripts/setup installs it)"
        return None

    def lookups(self, matrix: "Matrix", family: str, transport: str, queries: list[Query],
                timeout: int | None = MATRIX_TIMEOUT) -> list[Answer]:
        if self.program is not None:
            return matrix.run_program(self.program(matrix, family, transport, timeout, queries), family, transport,
                                      timeout, queries)
        return [matrix.run_command(self.command(matrix, family, transport, timeout, query), self.parse, family,
                                   transport, timeout, query) for query in queries]


@functools.cache
def python_module_present(module: str) -> bool:
    """In the interpreter the clients run with, not the one running pytest."""
    return subprocess.run([PYTHON, "-c", f"import {module}"], capture_output=True).returncode == 0


def perl_module_present(module: str) -> bool:
    return subprocess.run(["perl", f"-M{module}", "-e", "1"], capture_output=True).returncode == 0


def specs(queries: list[Query]) -> list[str]:
    return [f"{query.qtype}:{query.name}" for query in queries]


def optional(value: int | None, scale: int = 1) -> str:
    return "-" if value is None else str(value * scale)


def dig_command(target: Callable[["Matrix", str, str], str], tcp_flag: bool = True, per_try: int = 0):
    """dig asking `target(matrix, family, transport)`; `per_try` adds seconds to
    the cell's timeout (a forwarder needs its own round trip)."""
    def command(matrix, family, transport, timeout, query):
        limits = [] if timeout is None else ["+tries=1", f"+time={timeout + per_try}"]
        tcp = ["+tcp"] if transport == "tcp" and tcp_flag else []
        return Invocation(["dig", f"@{target(matrix, family, transport)}", *limits, *tcp, "+noall", "+comments",
                           "+answer", query.name, query.qtype])
    return command


def forwarder_stack(kind: str, label: str, binary: str, package: str, client_tcp: bool) -> Stack:
    return Stack(kind + "-fwd", label, (binary, "dig"), (package,),
                 command=dig_command(lambda m, family, transport: m.forwarders.address(kind, family, transport),
                                     tcp_flag=client_tcp, per_try=1),
                 parse=parse_dig_like)


STACKS = [
    Stack("glibc", "glibc getent", ("getent",), ("libc6",),
          command=lambda m, family, transport, timeout, q: Invocation(
              ["getent", address_family_flag(q.qtype), q.name]),
          parse=parse_getent),
    Stack("musl", "musl getaddrinfo", ("program:getaddrinfo-musl",), ("musl",), transports=("udp",),
          program=lambda m, family, transport, timeout, qs: Invocation([m.programs["getaddrinfo-musl"], *specs(qs)])),
    Stack("go", "Go resolver (netdns=go)", ("program:lookup-go",), ("golang-go",),
          program=lambda m, family, transport, timeout, qs: Invocation([m.programs["lookup-go"], *specs(qs)],
                                                                      {"GODEBUG": "netdns=go"})),
    Stack("go-cgo", "Go cgo (netdns=cgo)", ("program:lookup-go",), ("golang-go",),
          program=lambda m, family, transport, timeout, qs: Invocation([m.programs["lookup-go"], *specs(qs)],
                                                                      {"GODEBUG": "netdns=cgo"})),
    Stack("node-lookup", "node dns.lookup", ("node",), ("nodejs",),
          program=lambda m, family, transport, timeout, qs: Invocation(
              ["node", str(CLIENTS / "node_client.js"), "lookup", "-", "-", "-", *specs(qs)])),
    # c-ares reads `options use-vc` from resolv.conf; the servers come from setServers.
    Stack("node-resolve", "node Resolver (c-ares)", ("node",), ("nodejs",),
          program=lambda m, family, transport, timeout, qs: Invocation(
              ["node", str(CLIENTS / "node_client.js"), "resolve", server(family), optional(timeout, 1000),
               "-" if timeout is None else "1", *specs(qs)])),
    Stack("pycares", "pycares (c-ares)", ("python:pycares",), ("pycares",),
          program=lambda m, family, transport, timeout, qs: Invocation(
              [PYTHON, str(CLIENTS / "python_client.py"), "pycares", server(family), transport, optional(timeout),
               "-" if timeout is None else "1", *specs(qs)])),
    Stack("dnspython", "dnspython", ("python:dns",), ("python3-dnspython",),
          program=lambda m, family, transport, timeout, qs: Invocation(
              [PYTHON, str(CLIENTS / "python_client.py"), "dnspython", server(family), transport, optional(timeout),
               "-", *specs(qs)])),
    Stack("busybox", "busybox nslookup", ("busybox",), ("busybox",), transports=("udp",),
          command=lambda m, family, transport, timeout, q: Invocation(
              ["busybox", "nslookup", f"-type={q.qtype.lower()}",
               *([] if timeout is None else [f"-timeout={timeout}", "-retry=1"]), q.name, server(family)]),
          parse=parse_busybox),
    Stack("getdns", "getdns_query (stub)", ("getdns_query",), ("getdns-utils",),
          command=lambda m, family, transport, timeout, q: Invocation(
              ["getdns_query", "-s", "-j", "-T" if transport == "tcp" else "-U",
               *([] if timeout is None else ["-t", str(timeout * 1000)]), f"@{server(family)}", q.name, q.qtype]),
          parse=parse_getdns),
    Stack("libunbound", "libunbound (unbound-host)", ("unbound-host",), ("libunbound8",),
          command=lambda m, family, transport, timeout, q: Invocation(
              ["unbound-host", "-v", "-C", str(m.libunbound_config(family, transport)), "-t", q.qtype, q.name]),
          parse=parse_unbound_host),
    Stack("dig", "dig", ("dig",), ("bind9-dnsutils",),
          command=dig_command(lambda m, family, transport: server(family)), parse=parse_dig_like),
    Stack("kdig", "kdig", ("kdig",), ("knot-dnsutils",),
          command=lambda m, family, transport, timeout, q: Invocation(
              ["kdig", f"@{server(family)}", *([] if timeout is None else ["+retry=0", f"+time={timeout}"]),
               *(["+tcp"] if transport == "tcp" else []), q.name, q.qtype]),
          parse=parse_dig_like),
    # drill has no timeout option: a failing drill cell waits its 15 s.
    Stack("drill", "drill", ("drill",), ("ldnsutils",),
          command=lambda m, family, transport, timeout, q: Invocation(
              ["drill", "-t" if transport == "tcp" else "-u", f"@{server(family)}", q.name, q.qtype]),
          parse=parse_dig_like),
    Stack("netdns", "Perl Net::DNS", ("perl", "perl:Net::DNS"), ("libnet-dns-perl",),
          program=lambda m, family, transport, timeout, qs: Invocation(
              ["perl", str(CLIENTS / "netdns_client.pl"), server(family), transport, optional(timeout),
               "-" if timeout is None else "1", *specs(qs)])),
    forwarder_stack("unbound", "Unbound forwarder (dig)", "unbound", "unbound", client_tcp=False),
    forwarder_stack("bind", "BIND forwarder (dig)", "named", "bind9", client_tcp=False),
    forwarder_stack("dnsmasq", "dnsmasq forwarder (dig)", "dnsmasq", "dnsmasq-base", client_tcp=True),
]
STACK = {stack.name: stack for stack in STACKS}

# Cells that fail through the client's own behaviour, which no DNS server can
# change: (stack, response kind, transport or "*") -> the measured reason.
CLIENT_BEHAVIOUR = {
    ("musl", "refused", "*"): "musl ignores a REFUSED answer and waits for another server's until its timeout "
                              "(measured: the full 2 s of `timeout:2`, 5 s by default), then says EAI_AGAIN",
}


def client_behaviour(stack: str, kind: str, transport: str) -> str | None:
    return CLIENT_BEHAVIOUR.get((stack, kind, transport)) or CLIENT_BEHAVIOUR.get((stack, kind, "*"))


# -- LAN-side forwarders ------------------------------------------------------------------------
FORWARDER_ADDRESSES = {   # (kind, family, transport of the forwarded leg) -> listen address
    ("unbound", "ipv4", "udp"): "192.0.2.30", ("unbound", "ipv4", "tcp"): "192.0.2.31",
    ("unbound", "ipv6", "udp"): "2001:db8:1::30", ("unbound", "ipv6", "tcp"): "2001:db8:1::31",
    ("bind", "ipv4", "udp"): "192.0.2.32", ("bind", "ipv4", "tcp"): "192.0.2.33",
    ("bind", "ipv6", "udp"): "2001:db8:1::32", ("bind", "ipv6", "tcp"): "2001:db8:1::33",
    # dnsmasq forwards a query over the transport it came in on: one instance per family.
    ("dnsmasq", "ipv4", "udp"): "192.0.2.34", ("dnsmasq", "ipv4", "tcp"): "192.0.2.34",
    ("dnsmasq", "ipv6", "udp"): "2001:db8:1::34", ("dnsmasq", "ipv6", "tcp"): "2001:db8:1::34",
}


class Forwarders:
    """Unbound, BIND and dnsmasq in the client namespace, each started on
    first use, stopped by PID at the end."""

    def __init__(self, lab):
        self.lab = lab
        self.running: dict[tuple[str, str, str], subprocess.Popen] = {}
        self.failed: dict[tuple[str, str, str], str] = {}   # a forwarder that would not start is not tried again

    def address(self, kind: str, family: str, transport: str) -> str:
        key = (kind, family, "udp" if kind == "dnsmasq" else transport)
        if key in self.failed:
            raise RuntimeError(self.failed[key])
        if key not in self.running:
            try:
                self.start(*key)
            except RuntimeError as error:
                self.failed[key] = str(error)
                raise
        return FORWARDER_ADDRESSES[key]

    def start(self, kind: str, family: str, transport: str) -> None:
        listen, upstream = FORWARDER_ADDRESSES[(kind, family, transport)], server(family)
        directory = self.lab.dir / "forwarders" / f"{kind}-{family}-{transport}"
        directory.mkdir(parents=True, exist_ok=True)
        if kind == "unbound":
            config = directory / "unbound.conf"
            extra = "  tcp-upstream: yes\n" if transport == "tcp" else ""
            config.write_text(unbound_forwarder_config(listen, directory, upstream, extra))
            argv = ["unbound", "-d", "-c", str(config)]
        elif kind == "bind":
            config = directory / "named.conf"
            config.write_text(named_forwarder_config(listen, directory, upstream, tcp_only=transport == "tcp"))
            argv = ["named", "-g", "-n", "1", "-c", str(config)]
        else:
            argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                    f"--server={upstream}", f"--listen-address={listen}", "--bind-interfaces", "--user=root",
                    f"--pid-file={directory / 'dnsmasq.pid'}", f"--log-facility={directory / 'dnsmasq.log'}"]
        with open(directory / "output.log", "w") as log:
            self.running[(kind, family, transport)] = subprocess.Popen(
                ["ip", "netns", "exec", self.lab.client, *argv], stdout=log, stderr=subprocess.STDOUT)
        # Ready once it answers a name from the upstream (bounded: 50 tries, 10 s).
        deadline = time.monotonic() + 10
        for attempt in range(50):
            out = self.lab.ns(self.lab.client, "dig", f"@{listen}", "+tries=1", "+time=1", "+short",
                              f"ready{attempt}-{kind}-{family}-{transport}.ok.matrix.example", check=False).stdout
            if ALLOWED["A"] in out:
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.stop_one(self.running.pop((kind, family, transport)))
        raise RuntimeError(f"{kind} forwarder on {listen} did not answer: "
                           f"{(directory / 'output.log').read_text()[-2000:]}")

    def stop(self) -> None:
        for process in self.running.values():
            self.stop_one(process)
        self.running = {}

    @staticmethod
    def stop_one(process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- the matrix ---------------------------------------------------------------------------------
# `ip netns exec` bind-mounts the namespace's resolv.conf; a private mount
# namespace lets each cell mount its own on top without touching the lab's.
MOUNT_RESOLV_CONF = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'


class Matrix:
    def __init__(self, lab, programs: dict[str, str], program_errors: dict[str, str]):
        self.lab = lab
        self.programs = programs
        self.program_errors = program_errors
        self.forwarders = Forwarders(lab)
        self.directory = lab.dir / "matrix"
        self.directory.mkdir(exist_ok=True)
        self.cells: list[dict] = []
        self.drop_cells: list[dict] = []
        self.drop_defaults: dict[str, dict] = {}

    def resolv_conf(self, family: str, transport: str, timeout: int | None) -> Path:
        options = [] if timeout is None else [f"timeout:{timeout}", "attempts:1"]
        options += ["use-vc"] if transport == "tcp" else []
        path = self.directory / f"resolv-{family}-{transport}-{optional(timeout)}.conf"
        if not path.exists():
            path.write_text(f"nameserver {server(family)}\n" + (f"options {' '.join(options)}\n" if options else ""))
        return path

    def libunbound_config(self, family: str, transport: str) -> Path:
        path = self.directory / f"libunbound-{family}-{transport}.conf"
        if not path.exists():
            path.write_text(f"""server:
  do-ip6: yes
  tcp-upstream: {"yes" if transport == "tcp" else "no"}
  verbosity: 0
forward-zone:
  name: "."
  forward-addr: {server(family)}
""")
        return path

    def argv(self, invocation: Invocation, family: str, transport: str, timeout: int | None) -> list[str]:
        argv = ["ip", "netns", "exec", self.lab.client, "unshare", "--mount", "sh", "-c", MOUNT_RESOLV_CONF,
                str(self.resolv_conf(family, transport, timeout))]
        if invocation.env:
            argv += ["env", *(f"{key}={value}" for key, value in invocation.env.items())]
        return argv + [str(part) for part in invocation.argv]

    def run_program(self, invocation: Invocation, family: str, transport: str, timeout: int | None,
                    queries: list[Query]) -> list[Answer]:
        """One process, every query; it times each lookup itself."""
        try:
            result = subprocess.run(self.argv(invocation, family, transport, timeout), capture_output=True, text=True,
                                    timeout=LOOKUP_BOUND)
            output, why = result.stdout, f"no output (exit {result.returncode}: {result.stderr[-200:]})"
        except subprocess.TimeoutExpired as expired:
            # Killed at the bound: the lookups it printed count, the one under way timed out.
            output, why = expired.stdout or "", "TIMEOUT"
            output = output.decode() if isinstance(output, bytes) else output
        lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        answers = []
        for index, query in enumerate(queries):
            if index < len(lines):
                line = lines[index]
                answers.append(Answer(query.name, query.qtype, query.role, float(line["seconds"]),
                                      line.get("addresses", []), line.get("error")))
            else:
                answers.append(Answer(query.name, query.qtype, query.role, LOOKUP_BOUND, [], why))
        return answers

    def run_command(self, invocation: Invocation, parse, family: str, transport: str, timeout: int | None,
                    query: Query) -> Answer:
        """One process for one query, timed from outside (process start included)."""
        started = time.monotonic()
        try:
            result = subprocess.run(self.argv(invocation, family, transport, timeout), capture_output=True, text=True,
                                    timeout=LOOKUP_BOUND)
        except subprocess.TimeoutExpired:
            return Answer(query.name, query.qtype, query.role, LOOKUP_BOUND, [], "TIMEOUT")
        seconds = time.monotonic() - started
        addresses, error = parse(result, query.qtype)
        return Answer(query.name, query.qtype, query.role, seconds, addresses, error)


def build_programs(directory: Path) -> tuple[dict[str, str], dict[str, str]]:
    """musl's getaddrinfo program and the Go program, built once per session."""
    directory.mkdir(parents=True, exist_ok=True)
    built, errors = {}, {}
    jobs = {
        "getaddrinfo-musl": (["musl-gcc", "-O1", "-static", "-o", str(directory / "getaddrinfo-musl"),
                              str(CLIENTS / "getaddrinfo.c")], {}, "musl-gcc"),
        # cgo on (needs gcc) so that one binary serves netdns=go and netdns=cgo.
        "lookup-go": (["go", "build", "-o", str(directory / "lookup-go"), str(CLIENTS / "lookup.go")],
                      {"CGO_ENABLED": "1", "GO111MODULE": "off", "GOCACHE": str(directory / "go-cache"),
                       "GOPATH": str(directory / "go-path"), "HOME": str(directory)}, "go"),
    }
    for name, (argv, env, tool) in jobs.items():
        if shutil.which(tool) is None:
            errors[name] = f"{tool} is not installed"
            continue
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, **env})
        if result.returncode == 0:
            built[name] = str(directory / name)
        else:
            errors[name] = f"building {name} failed: {result.stderr[-500:]}"
    return built, errors


@pytest.fixture(scope="module")
def matrix(lab):
    programs, program_errors = build_programs(lab.dir / "matrix-programs")
    config = lab.write_config(matrix_config(lab), "matrix.yaml")
    addresses = sorted(set(FORWARDER_ADDRESSES.values()))
    for address in addresses:
        lab.ns(lab.client, "ip", "addr", "add", f"{address}/{64 if ':' in address else 24}", "dev", "c0",
               *(["nodad"] if ":" in address else []))
    lab.apply_rules()
    lab.start_dnsgate(config)
    # The lab's first IPv6 packet waits about a second for neighbour discovery:
    # warm both paths so that timings measure the clients and dnsgate.
    for upstream, source in ((UPSTREAM_V4, CLIENT_V4), (UPSTREAM_V6, CLIENT_V6)):
        lab.ns(lab.client, "dig", f"@{upstream}", "-b", source, "+tries=2", "+time=2", "warm.ok.matrix.example",
               check=False)
    instance = Matrix(lab, programs, program_errors)
    yield instance
    instance.forwarders.stop()
    lab.stop_dnsgate()
    lab.remove_rules()
    for address in addresses:
        lab.ns(lab.client, "ip", "addr", "del", f"{address}/{64 if ':' in address else 24}", "dev", "c0", check=False)
    report = os.environ.get("DNSGATE_MATRIX_REPORT")
    if report:
        write_report(instance, Path(report))


# -- judging a cell -------------------------------------------------------------------------------
def upstream_lines(lab, name: str) -> list[str]:
    return [line for line in lab.upstream_queries() if line.split(" ", 1)[0] == name + "."]


def judge(lab, response: Response, transport: str, answers: list[Answer]) -> list[str]:
    problems = []
    for answer in answers:
        if answer.role == "blocked":
            wanted = response.addresses.get(answer.qtype)
            if wanted and answer.addresses != [wanted]:
                problems.append(f"wanted {wanted}: {answer.describe()}")
            elif not wanted and (answer.addresses or answer.outcome not in response.outcomes):
                problems.append(f"wanted {' or '.join(sorted(response.outcomes))}: {answer.describe()}")
            if answer.seconds >= FAST:
                problems.append(f"not at once: {answer.describe()}")
            if upstream_lines(lab, answer.name):
                problems.append(f"the blocked name reached the upstream: {answer.name}")
        else:
            if answer.addresses != [ALLOWED[answer.qtype]] or answer.seconds >= FAST:
                problems.append(f"the allowed name after the blocked ones: {answer.describe()}")
            seen = upstream_lines(lab, answer.name)
            over_tcp = [line.endswith(" tcp") for line in seen]
            if seen and any(over_tcp) != (transport == "tcp"):
                problems.append(f"the allowed name went over {'TCP' if any(over_tcp) else 'UDP'}, not {transport}")
    return problems


def record(matrix: Matrix, into: list, stack: Stack, kind: str, family: str, transport: str, answers: list[Answer],
           problems: list[str]) -> None:
    behaviour = client_behaviour(stack.name, kind, transport)
    status = ("xfail" if problems else "xpass") if behaviour else ("fail" if problems else "pass")
    into.append({"stack": stack.name, "response": kind, "family": family, "transport": transport, "status": status,
                 "problems": problems, "client_behaviour": behaviour, "lookups": [asdict(a) for a in answers]})


def cells():
    for stack in STACKS:
        for response in RESPONSES:
            for family in ("ipv4", "ipv6"):
                for transport in stack.transports:
                    behaviour = client_behaviour(stack.name, response.kind, transport)
                    marks = [pytest.mark.xfail(strict=True, reason=behaviour)] if behaviour else []
                    yield pytest.param(stack, response, family, transport, marks=marks,
                                       id=f"{stack.name}-{response.kind}-{family}-{transport}")


@pytest.mark.parametrize("stack,response,family,transport", list(cells()))
def test_cell(matrix, stack, response, family, transport):
    reason = stack.unavailable(matrix)
    if reason:
        pytest.skip(reason)
    tag = f"{stack.name}-{family[-1]}-{transport}"
    queries = [Query(qtype, f"b{index}-{tag}.{response.zone}.matrix.example", "blocked")
               for index, qtype in enumerate(response.asks, 1)]
    queries.append(Query(response.asks[0], f"after-{response.kind}-{tag}.ok.matrix.example", "allowed"))
    answers = stack.lookups(matrix, family, transport, queries)
    problems = judge(matrix.lab, response, transport, answers)
    record(matrix, matrix.cells, stack, response.kind, family, transport, answers, problems)
    assert not problems, "\n".join(problems)


# -- DROP -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("stack_name", ["dig", "glibc"])
def test_drop_waits_out_a_short_client_timeout(matrix, stack_name):
    """DROP answers nothing: the client gives up after its own timeout (1 s
    here), and the next, allowed, name resolves at once."""
    stack = STACK[stack_name]
    reason = stack.unavailable(matrix)
    if reason:
        pytest.skip(reason)
    queries = [Query("A", f"short-{stack.name}.drop.matrix.example", "blocked"),
               Query("A", f"after-drop-{stack.name}.ok.matrix.example", "allowed")]
    answers = stack.lookups(matrix, "ipv4", "udp", queries, timeout=DROP_TIMEOUT)
    blocked = answers[0]
    problems = judge(matrix.lab, DROP, "udp", answers[1:])
    if blocked.addresses or blocked.outcome not in DROP.outcomes:
        problems.append(f"wanted a timeout: {blocked.describe()}")
    if not DROP_TIMEOUT * 0.9 <= blocked.seconds < DROP_TIMEOUT + 1.5:
        problems.append(f"wanted about the client's {DROP_TIMEOUT} s: {blocked.describe()}")
    if upstream_lines(matrix.lab, blocked.name):
        problems.append(f"the dropped name reached the upstream: {blocked.name}")
    record(matrix, matrix.drop_cells, stack, "drop", "ipv4", "udp", answers, problems)
    assert not problems, "\n".join(problems)


@pytest.mark.skipif(os.environ.get("DNSGATE_MATRIX_DROP") != "1",
                    reason="a one-off measurement (up to 60 s): set DNSGATE_MATRIX_DROP=1")
def test_drop_with_each_stacks_default_timeouts(matrix):
    """How long DROP keeps each stack waiting with its default timeouts (IPv4,
    UDP, one lookup, every stack at once, at most 60 s). A measurement for the
    README: it only asserts that no address and no upstream query came of it."""
    available = [stack for stack in STACKS if stack.unavailable(matrix) is None]
    for stack in available:   # forwarders start one at a time, before the clock runs
        if stack.name.endswith("-fwd"):
            matrix.forwarders.address(stack.name[:-4], "ipv4", "udp")

    def measure(stack: Stack) -> Answer:
        query = Query("A", f"default-{stack.name}.drop.matrix.example", "blocked")
        return stack.lookups(matrix, "ipv4", "udp", [query], timeout=None)[0]

    with ThreadPoolExecutor(max_workers=len(available)) as pool:
        measured = dict(zip((stack.name for stack in available), pool.map(measure, available)))
    for name, answer in measured.items():
        matrix.drop_defaults[name] = asdict(answer)
    problems = [f"{name}: {answer.describe()}" for name, answer in measured.items()
                if answer.addresses or upstream_lines(matrix.lab, answer.name)]
    assert not problems, "\n".join(problems)


# -- the report -----------------------------------------------------------------------------------
VARIANTS = [("ipv4", "udp"), ("ipv6", "udp"), ("ipv4", "tcp"), ("ipv6", "tcp")]


def fold(variants: set[tuple[str, str]], available: list[tuple[str, str]]) -> str:
    """The shortest words for a set of variants: "" for all of them."""
    if variants == set(available):
        return ""
    for word, group in (("UDP", {v for v in available if v[1] == "udp"}),
                        ("TCP", {v for v in available if v[1] == "tcp"}),
                        ("IPv4", {v for v in available if v[0] == "ipv4"}),
                        ("IPv6", {v for v in available if v[0] == "ipv6"})):
        if variants == group:
            return word
    return ", ".join(f"{'IPv4' if f == 'ipv4' else 'IPv6'}/{t.upper()}" for f, t in available if (f, t) in variants)


def said(lookups: list[dict]) -> str:
    """What the stack made of the blocked lookups of a cell."""
    words = []
    for lookup in lookups:
        if lookup["role"] != "blocked":
            continue
        words.append(", ".join(lookup["addresses"]) if lookup["addresses"] else (lookup["error"] or "nothing"))
    return " / ".join(dict.fromkeys(words))


SYMBOL = {"pass": "✅", "fail": "❌", "xfail": "⚠️", "xpass": "❗"}


def markdown_cell(cells: list[dict], available: list[tuple[str, str]]) -> str:
    if not cells:
        return "–"
    groups: dict[tuple[str, str], list[dict]] = {}
    for cell in cells:
        groups.setdefault((cell["status"], said(cell["lookups"])), []).append(cell)
    parts = []
    for (status, what), members in groups.items():
        slowest = max(lookup["seconds"] for cell in members for lookup in cell["lookups"]
                      if lookup["role"] == "blocked")
        where = fold({(cell["family"], cell["transport"]) for cell in members}, available)
        parts.append(f"{SYMBOL[status]} {where + ': ' if where else ''}{what} ({slowest:.2f} s)")
    return "<br>".join(parts)


def drop_cell(measured: dict | None) -> str:
    if measured is None:
        return "–"
    what = ", ".join(measured["addresses"]) or measured["error"] or "nothing"
    if measured["seconds"] >= LOOKUP_BOUND:
        return f"still waiting after {LOOKUP_BOUND:.0f} s"
    return f"{measured['seconds']:.1f} s, then {what}"


def package_versions() -> dict[str, str]:
    packages = sorted({package for stack in STACKS for package in stack.packages if package != "pycares"})
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Version}\n", *packages], capture_output=True,
                         text=True).stdout
    versions = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    try:
        import pycares
        versions["pycares"] = f"c-ares {pycares.ARES_VERSION}"
    except ImportError:
        pass
    return versions


def write_report(matrix: Matrix, path: Path) -> None:
    versions = package_versions()
    report = {"dnsgate": str(matrix.lab.binary), "fast_seconds": FAST, "client_timeout_seconds": MATRIX_TIMEOUT,
              "versions": versions, "cells": matrix.cells, "drop_short_timeout": matrix.drop_cells,
              "drop_default_timeouts": matrix.drop_defaults}
    path.write_text(json.dumps(report, indent=1) + "\n")
    columns = [response.label for response in RESPONSES] + ["DROP (default timeouts)"]
    lines = ["| stack | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for stack in STACKS:
        cells = [cell for cell in matrix.cells if cell["stack"] == stack.name]
        if not cells and stack.name not in matrix.drop_defaults:
            continue
        available = [v for v in VARIANTS if v[1] in stack.transports]
        version = next((versions[p] for p in stack.packages if p in versions), "")
        row = [f"{stack.label} <sub>{version}</sub>" if version else stack.label]
        row += [markdown_cell([c for c in cells if c["response"] == response.kind], available)
                for response in RESPONSES]
        row.append(drop_cell(matrix.drop_defaults.get(stack.name)))
        lines.append("| " + " | ".join(row) + " |")
    tallies = {status: sum(1 for cell in matrix.cells if cell["status"] == status) for status in SYMBOL}
    lines += ["", f"{len(matrix.cells)} cells: " + ", ".join(f"{SYMBOL[s]} {s} {n}" for s, n in tallies.items() if n)
              + ". A cell is one stack, response, server address family (IPv4, IPv6) and transport (UDP, TCP); "
              "the table folds those that agree and shows what the stack made of the blocked lookups (an "
              "OVERRIDE CNAME cell asks A, then AAAA) and the slowest of them. Every cell also asks an allowed "
              f"name right after, which must resolve within {FAST:.0f} s. Clients' timeout {MATRIX_TIMEOUT} s, one "
              "try. ✅ pass, ❌ fail, ⚠️ fails through the client's own behaviour (xfail, below).",
              "", "DROP (default timeouts): one lookup per stack, IPv4 over UDP, with the stack's default timeouts "
              f"(a resolv.conf with the nameserver alone), all stacks at once, stopped at {LOOKUP_BOUND:.0f} s: how "
              "long until it gives up and what it then says.", ""]
    for cell in matrix.drop_cells:
        blocked, allowed = cell["lookups"]
        lines.append(f"- DROP, {cell['stack']} with a {DROP_TIMEOUT} s timeout: {blocked['seconds']:.2f} s, then "
                     f"{blocked['error']}; the next name {allowed['seconds']:.2f} s ({SYMBOL[cell['status']]})")
    behaviours: dict[tuple[str, str, str], list[str]] = {}
    for cell in matrix.cells:
        if cell["client_behaviour"]:
            key = (cell["stack"], cell["response"], cell["client_behaviour"])
            behaviours.setdefault(key, []).append(f"{cell['family']}/{cell['transport']}")
    for (stack, response, behaviour), variants in behaviours.items():
        lines.append(f"- ⚠️ {stack}, {response} ({', '.join(variants)}): {behaviour}")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
