#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Real resolvers that answer with CNAME and DNAME chains, for answer
inspection (issue #12), and the tools to watch what crosses the gateway.

`ChainResolver(lab, "unbound" | "kresd").start()` runs, in the lab's upstream
namespace, BIND (named) as the authoritative server of the test zones below on
AUTH_V4/AUTH_V6 (added to u0), and in front of it a real recursive resolver,
Unbound or Knot Resolver (kresd), on the lab's resolver addresses
UPSTREAM_V4/UPSTREAM_V6 port 53, which lab/upstream.py holds otherwise: it is
stopped for the time and started again by `stop()`. The resolver resolves every
name under `test.` from BIND (Unbound: a stub zone; kresd: iterating from
BIND's root zone, which delegates the test zones to it) and refuses
everything else; it asks BIND over lo, so only its answers to clients
cross u0. Every record has a TTL of TTL seconds.

    answers.test                                    blocked.test
      cloaked   CNAME tracker.blocked.test.           tracker  A 203.0.113.66
      raced     CNAME tracker.blocked.test. (its AAAA question is blocked on its own)
      hop1      CNAME hop2                            deep     A 203.0.113.67
      hop2      CNAME deep.blocked.test.              x        A 203.0.113.68
      clean     CNAME cdn
      cdn       A 203.0.113.10, AAAA 2001:db8:3::10   alias.test
      badaddr   A 203.0.113.99                          @      DNAME blocked.test.
      badaddr6  AAAA 2001:db8:bad::1
      rebind    A 192.168.1.10                      corp.test
      rebind6   AAAA fd00::10                         printer  A 192.168.1.20
      loop      A 127.0.0.1
      cgnat     A 100.64.0.1
      linklocal A 169.254.1.1
      mapped    AAAA ::ffff:10.0.0.1
      v4only    A 203.0.113.11 (no AAAA: DNS64 makes one)

`CHAINS` says what each name resolves to, for checks of the lab itself.

evil.test is delegated to lab/hostile_authority.py on HOSTILE_V4, which serves
RDATA resolvers pass on unchecked (a broken HTTPS record).

Also here: `Capture` (tcpdump on a namespace's interface, read back as
packets), `Forwarder` (dnsmasq as a caching forwarder in the client namespace),
`send_response` (a UDP datagram from port 53, made by hand, sent from the
upstream namespace through a raw socket, so that it needs no free port 53),
and `answer_stage` (the answer-stage counters of `dnsgate stats --json`).

Only documentation addresses are used on the lab's links; the private,
loopback, CGNAT, link-local and mapped addresses above exist only as record data.
"""
import json
import select
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import CLIENT2_V4, PYTHON, UPSTREAM_V4, UPSTREAM_V6, terminate  # noqa: E402
from resolvers import find_binary, unbound_server  # noqa: E402

AUTH_V4, AUTH_V6 = "198.51.100.60", "2001:db8:2::60"
# lab/hostile_authority.py, which serves evil.test (delegated from the root).
HOSTILE_V4 = "198.51.100.61"
TTL = 5
KINDS = ("unbound", "kresd")
READY_TIMEOUT = 20.0


@dataclass(frozen=True)
class Chain:
    """What `name` resolves to: the names its CNAME/DNAME chain goes through
    (`via`, in order, synthesized CNAME targets included) and the final
    records of type `qtype`."""
    name: str
    qtype: str
    via: tuple[str, ...]
    addresses: tuple[str, ...]
    dname: str | None = None  # the DNAME owner the chain passes, if any


CHAINS = [
    Chain("cloaked.answers.test", "A", ("tracker.blocked.test",), ("203.0.113.66",)),
    Chain("hop1.answers.test", "A", ("hop2.answers.test", "deep.blocked.test"), ("203.0.113.67",)),
    Chain("x.alias.test", "A", ("x.blocked.test",), ("203.0.113.68",), dname="alias.test"),
    Chain("clean.answers.test", "A", ("cdn.answers.test",), ("203.0.113.10",)),
    Chain("clean.answers.test", "AAAA", ("cdn.answers.test",), ("2001:db8:3::10",)),
    Chain("badaddr.answers.test", "A", (), ("203.0.113.99",)),
    Chain("badaddr6.answers.test", "AAAA", (), ("2001:db8:bad::1",)),
    Chain("rebind.answers.test", "A", (), ("192.168.1.10",)),
    Chain("rebind6.answers.test", "AAAA", (), ("fd00::10",)),
    Chain("loop.answers.test", "A", (), ("127.0.0.1",)),
    Chain("cgnat.answers.test", "A", (), ("100.64.0.1",)),
    Chain("linklocal.answers.test", "A", (), ("169.254.1.1",)),
    Chain("mapped.answers.test", "AAAA", (), ("::ffff:10.0.0.1",)),
    Chain("printer.corp.test", "A", (), ("192.168.1.20",)),
]


def zones() -> dict[str, str]:
    """Zone name -> zone file text: the test zones and a root zone that
    delegates them, all served by one BIND on AUTH_V4/AUTH_V6 (`ns.`)."""
    def head(origin: str) -> str:
        return (f"$TTL {TTL}\n"
                f"@ IN SOA ns. hostmaster.{origin} 1 3600 600 86400 {TTL}\n"
                f"@ IN NS ns.\n")
    test_zones = {
        "answers.test": """cloaked IN CNAME tracker.blocked.test.
raced IN CNAME tracker.blocked.test.
hop1 IN CNAME hop2
hop2 IN CNAME deep.blocked.test.
clean IN CNAME cdn
cdn IN A 203.0.113.10
cdn IN AAAA 2001:db8:3::10
badaddr IN A 203.0.113.99
badaddr6 IN AAAA 2001:db8:bad::1
rebind IN A 192.168.1.10
rebind6 IN AAAA fd00::10
loop IN A 127.0.0.1
cgnat IN A 100.64.0.1
linklocal IN A 169.254.1.1
mapped IN AAAA ::ffff:10.0.0.1
v4only IN A 203.0.113.11
svc IN HTTPS 1 . alpn=h2 ipv4hint=192.168.1.30
svcalias IN HTTPS 0 tracker.blocked.test.
""",
        "blocked.test": """tracker IN A 203.0.113.66
deep IN A 203.0.113.67
x IN A 203.0.113.68
""",
        "alias.test": "@ IN DNAME blocked.test.\n",
        "corp.test": "printer IN A 192.168.1.20\n",
    }
    # The root, for a resolver that iterates (kresd): it delegates each test zone to the same server.
    root = head("root.") + f"ns. IN A {AUTH_V4}\nns. IN AAAA {AUTH_V6}\n" + \
        "".join(f"{zone}. IN NS ns.\n" for zone in test_zones) + \
        f"evil.test. IN NS ns.evil.test.\nns.evil.test. IN A {HOSTILE_V4}\n"
    return {".": root, **{zone: head(zone + ".") + text for zone, text in test_zones.items()}}


# -- configurations -------------------------------------------------------------------------
def named_config(workdir: Path) -> str:
    zone_statements = ""
    for zone, text in zones().items():
        path = workdir / f"{'root' if zone == '.' else zone}.zone"
        path.write_text(text)
        zone_statements += f'zone "{zone}" {{ type primary; file "{path}"; }};\n'
    return f"""options {{
    directory "{workdir}";
    pid-file "{workdir}/named.pid";
    session-keyfile "{workdir}/session.key";
    managed-keys-directory "{workdir}";
    listen-on port 53 {{ {AUTH_V4}; }};
    listen-on-v6 port 53 {{ {AUTH_V6}; }};
    recursion no;
    allow-query {{ any; }};
    dnssec-validation no;
    notify no;
    minimal-responses no;
}};
controls {{ }};
{zone_statements}"""


def unbound_config(workdir: Path, v4: str, v6: str, dns64_prefix: str | None = None) -> str:
    server = unbound_server(workdir, v4, v6, modules="dns64 iterator" if dns64_prefix else "iterator")
    if dns64_prefix:
        server += f"    dns64-prefix: {dns64_prefix}\n"
    return server + f"""\
    qname-minimisation: no
    # test. is a special-use name that Unbound answers itself by default:
    # resolved here (from BIND), and nothing else.
    local-zone: "test." transparent
    local-zone: "." refuse
stub-zone:
    name: "test."
    stub-addr: {AUTH_V4}
    stub-addr: {AUTH_V6}
remote-control:
    control-enable: no
"""


def kresd_config(v4: str, v6: str, dns64_prefix: str | None = None) -> str:
    dns64 = f"modules.load('dns64')\ndns64.config('{dns64_prefix.split('/')[0]}')\n" if dns64_prefix else ""
    return dns64 + f"""-- Knot Resolver in the dnsgate lab: iterates from the lab's BIND as the root,
-- resolves test. and nothing else.
net.listen('{v4}', 53, {{ kind = 'dns' }})
net.listen('{v6}', 53, {{ kind = 'dns' }})
trust_anchors.remove('.')
cache.size = 10 * MB
modules.load('hints > iterate')
hints.root({{ ['ns.'] = {{ '{AUTH_V4}', '{AUTH_V6}' }} }})
-- policy.rules come before the special-use names (test. is one), so PASS resolves it.
policy.add(policy.suffix(policy.PASS, {{ todname('test.') }}))
policy.add(policy.all(policy.REFUSE))
"""


class ChainResolver:
    """BIND with the test zones behind a real resolver (`kind`: unbound or
    kresd) on `v4`/`v6` port 53 in the lab's upstream namespace; with
    `dns64_prefix` (a /96), the resolver does DNS64 with it."""

    def __init__(self, lab, kind: str = "unbound", v4: str = UPSTREAM_V4, v6: str = UPSTREAM_V6,
                 dns64_prefix: str | None = None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        self.lab, self.kind, self.v4, self.v6 = lab, kind, v4, v6
        self.dns64_prefix = dns64_prefix
        self.workdir = lab.dir / "answers" / kind
        self.named: subprocess.Popen | None = None
        self.resolver: subprocess.Popen | None = None
        self.hostile: subprocess.Popen | None = None
        self.addresses: list[str] = []
        self.upstream_was_running = False

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")
        try:
            return subprocess.Popen(["ip", "netns", "exec", self.lab.upstream, *command], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        finally:
            log.close()

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def start(self) -> "ChainResolver":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        named, resolver = find_binary("named"), find_binary(self.kind)
        if named is None or resolver is None:
            raise RuntimeError(f"named and {self.kind} are needed (scripts/setup installs bind9 and "
                               f"{'unbound' if self.kind == 'unbound' else 'knot-resolver'})")
        for address, prefix in ((AUTH_V4, f"{AUTH_V4}/24"), (AUTH_V6, f"{AUTH_V6}/64"), (HOSTILE_V4, f"{HOSTILE_V4}/24")):
            family = ["-6"] if ":" in address else []
            self.lab.ns(self.lab.upstream, "ip", *family, "addr", "replace", prefix, "dev", "u0",
                        *(["nodad"] if family else []))
            self.addresses.append(prefix)
        (self.workdir / "named.conf").write_text(named_config(self.workdir))
        self.named = self._spawn("named", [named, "-g", "-n", "1", "-c", str(self.workdir / "named.conf")])
        self._wait("named", AUTH_V4, AUTH_V6, "clean.answers.test", recursion=False)
        self.hostile = self._spawn("hostile", [PYTHON, str(Path(__file__).resolve().parent / "hostile_authority.py"),
                                               HOSTILE_V4])
        if self.v4 == UPSTREAM_V4 or self.v6 == UPSTREAM_V6:
            self.upstream_was_running = self.lab.stop_upstream()
        if self.kind == "unbound":
            (self.workdir / "unbound.conf").write_text(unbound_config(self.workdir, self.v4, self.v6, self.dns64_prefix))
            command = [resolver, "-d", "-c", str(self.workdir / "unbound.conf")]
        else:
            (self.workdir / "kresd.conf").write_text(kresd_config(self.v4, self.v6, self.dns64_prefix))
            command = [resolver, "-n", "-c", str(self.workdir / "kresd.conf"), str(self.workdir)]
        self.resolver = self._spawn(self.kind, command)
        self._wait(self.kind, self.v4, self.v6, "cdn.answers.test", recursion=True)

    def _wait(self, name: str, v4: str, v6: str, probe: str, recursion: bool) -> None:
        """Until `probe` gets its A record over IPv4 and IPv6, from the upstream namespace."""
        code = ("import sys, time, dns.flags, dns.message, dns.query\n"
                "deadline = time.monotonic() + float(sys.argv[4])\n"
                "pending = set(sys.argv[1:3])\n"
                "for _ in range(400):\n"
                "    if not pending or time.monotonic() > deadline: break\n"
                "    for server in sorted(pending):\n"
                "        q = dns.message.make_query(sys.argv[3], 'A')\n"
                f"        q.flags = dns.flags.RD if {recursion} else 0\n"
                "        try:\n"
                "            r = dns.query.udp(q, server, timeout=0.3)\n"
                "            if '203.0.113.10' in r.to_text(): pending.discard(server)\n"
                "        except Exception: pass\n"
                "    time.sleep(0.05)\n"
                "print(' '.join(sorted(pending)) or 'ready')\n")
        out = self.lab.ns(self.lab.upstream, PYTHON, "-c", code, v4, v6, probe, str(READY_TIMEOUT), check=False,
                          timeout=READY_TIMEOUT + 20)
        process = self.named if name == "named" else self.resolver
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")
        if out.stdout.strip() != "ready":
            raise RuntimeError(f"{name} did not answer {probe} on {out.stdout.strip() or out.stderr.strip()} "
                               f"within {READY_TIMEOUT:.0f} s:\n{self.log_tail(name)}")

    @staticmethod
    def _end(process: subprocess.Popen | None) -> None:
        # `ip netns exec` execs the program: the PID is the daemon's own.
        if process is not None:
            terminate(process)

    def stop(self) -> None:
        self._end(self.resolver)
        self._end(self.named)
        self._end(self.hostile)
        self.resolver = self.named = self.hostile = None
        for prefix in self.addresses:
            family = ["-6"] if ":" in prefix else []
            self.lab.ns(self.lab.upstream, "ip", *family, "addr", "del", prefix, "dev", "u0", check=False)
        self.addresses.clear()
        if self.upstream_was_running:
            self.upstream_was_running = False
            self.lab.start_upstream()


# -- a caching forwarder in the client namespace ------------------------------------------------
class Forwarder:
    """dnsmasq on `listen` port 53 in the client namespace (or `namespace`),
    caching, forwarding every name to `upstream` (through the gateway, or from
    it)."""

    def __init__(self, lab, listen: str = CLIENT2_V4, upstream: str = UPSTREAM_V4, namespace: str | None = None):
        self.lab, self.listen, self.upstream = lab, listen, upstream
        self.namespace = namespace or lab.client
        self.workdir = lab.dir / f"forwarder-{self.namespace}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Forwarder":
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = find_binary("dnsmasq")
        if binary is None:
            raise RuntimeError("dnsmasq is needed (scripts/setup installs dnsmasq-base)")
        log = open(self.workdir / "dnsmasq.log", "ab")
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, binary, "--keep-in-foreground", "--conf-file=/dev/null",
             "--no-resolv", "--no-hosts", "--no-poll", "--bind-interfaces", f"--listen-address={self.listen}",
             "--port=53", f"--server={self.upstream}", "--cache-size=1000", f"--pid-file={self.workdir}/dnsmasq.pid",
             "--user=root", "--log-facility=-", "--log-queries"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dnsmasq exited with {self.process.returncode}: {self.log()}")
            out = self.lab.ns(self.lab.client, "dig", f"@{self.listen}", "+tries=1", "+time=1", "version.bind", "CH",
                              "TXT", check=False).stdout
            if "status:" in out:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"dnsmasq did not answer: {self.log()}")

    def log(self) -> str:
        path = self.workdir / "dnsmasq.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        ChainResolver._end(self.process)
        self.process = None


# -- captures -----------------------------------------------------------------------------------
@dataclass
class Packet:
    src: str
    dst: str
    protocol: str  # "udp" or "tcp"
    sport: int
    dport: int
    payload: bytes
    tcp_flags: int = 0

    @property
    def reset(self) -> bool:
        return self.protocol == "tcp" and bool(self.tcp_flags & 0x04)


def parse_frame(frame: bytes) -> Packet | None:
    """An Ethernet frame carrying IPv4 or IPv6 (no extension headers) and UDP or TCP, else None."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    ip = frame[14:]
    if ethertype == 0x0800 and len(ip) >= 20:
        header, protocol = (ip[0] & 0x0F) * 4, ip[9]
        total = struct.unpack_from("!H", ip, 2)[0]
        src, dst = socket.inet_ntop(socket.AF_INET, ip[12:16]), socket.inet_ntop(socket.AF_INET, ip[16:20])
        body = ip[header:total]
    elif ethertype == 0x86DD and len(ip) >= 40:
        protocol, length = ip[6], struct.unpack_from("!H", ip, 4)[0]
        src, dst = socket.inet_ntop(socket.AF_INET6, ip[8:24]), socket.inet_ntop(socket.AF_INET6, ip[24:40])
        body = ip[40:40 + length]
    else:
        return None
    if protocol == 17 and len(body) >= 8:
        sport, dport = struct.unpack_from("!HH", body, 0)
        return Packet(src, dst, "udp", sport, dport, body[8:])
    if protocol == 6 and len(body) >= 20:
        sport, dport = struct.unpack_from("!HH", body, 0)
        offset = (body[12] >> 4) * 4
        return Packet(src, dst, "tcp", sport, dport, body[offset:], body[13])
    return None


def read_pcap(path: Path) -> list[Packet]:
    """The packets of a classic pcap file with Ethernet link type (what tcpdump -w writes)."""
    data = path.read_bytes() if path.exists() else b""
    if len(data) < 24:
        return []
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    if struct.unpack_from(endian + "I", data, 20)[0] != 1:
        raise ValueError(f"{path}: not an Ethernet capture")
    packets, offset = [], 24
    while offset + 16 <= len(data):
        captured = struct.unpack_from(endian + "I", data, offset + 8)[0]
        frame = data[offset + 16:offset + 16 + captured]
        offset += 16 + captured
        packet = parse_frame(frame)
        if packet is not None:
            packets.append(packet)
    return packets


class Capture:
    """tcpdump on `interface` in `namespace`, from `start()` to `stop()`;
    `packets()` reads what it wrote. Use as a context manager."""

    def __init__(self, lab, namespace: str, interface: str, name: str, expression: str = "port 53"):
        self.lab, self.namespace, self.interface, self.expression = lab, namespace, interface, expression
        self.path = lab.dir / f"{name}.pcap"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Capture":
        if self.path.exists():
            self.path.unlink()
        # -Z root: write the file as root (the lab's folder is root's own); --immediate-mode and -U:
        # each packet is handed over and written at once (else a stop loses what the ring still holds).
        self.process = subprocess.Popen(["ip", "netns", "exec", self.namespace, "tcpdump", "-i", self.interface, "-n",
                                         "-U", "--immediate-mode", "-Z", "root", "-s", "0", "-w", str(self.path), self.expression],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        seen = b""
        while time.monotonic() < deadline and b"listening on" not in seen:
            ready, _, _ = select.select([self.process.stderr], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = self.process.stderr.read1(4096) if hasattr(self.process.stderr, "read1") else b""
            if not chunk:
                break
            seen += chunk
        if b"listening on" not in seen:
            self.stop()
            raise RuntimeError(f"tcpdump did not start on {self.namespace}/{self.interface}: {seen.decode(errors='replace')}")
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        time.sleep(0.2)  # what is in flight reaches the interface
        terminate(process)  # tcpdump writes what it holds and exits
        if process.stderr is not None:
            process.stderr.close()

    def packets(self) -> list[Packet]:
        return read_pcap(self.path)

    def __enter__(self) -> "Capture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- a response made by hand --------------------------------------------------------------------
def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_segment(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP header and payload with a valid checksum (IPv4 or IPv6 pseudo-header)."""
    length = 8 + len(payload)
    if ":" in src:
        pseudo = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + \
            struct.pack("!I3xB", length, 17)
    else:
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!xBH", 17, length)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    checksum = _checksum(pseudo + header + payload) or 0xFFFF
    return struct.pack("!HHHH", sport, dport, length, checksum) + payload


def send_response(lab, payload: bytes, *, src: str, dst: str, dport: int, sport: int = 53) -> None:
    """Sends `payload` as one UDP datagram from src:sport to dst:dport from the
    upstream namespace, through a raw socket (the port may be a resolver's)."""
    job = json.dumps({"src": src, "dst": dst, "segment": udp_segment(src, dst, sport, dport, payload).hex()})
    lab.ns(lab.upstream, PYTHON, str(Path(__file__).resolve()), "send-raw", input=job, timeout=30)


def _send_raw(job: dict) -> None:
    family = socket.AF_INET6 if ":" in job["src"] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_UDP)
    try:
        sock.bind((job["src"], 0))
        sock.sendto(bytes.fromhex(job["segment"]), (job["dst"], 0))
    finally:
        sock.close()


# -- what a client receives -----------------------------------------------------------------------
# What a listener sends to open its flow: a bare response header (QR=1, no
# question), which resolvers ignore and dnsgate passes as `not_query`.
FLOW_OPENER = bytes.fromhex("ffff 8180 0000 0000 0000 0000")


def listen_for(lab, address: str, port: int, seconds: float, ready: Path,
               opens_flow_to: str | None = None) -> subprocess.Popen:
    """A UDP socket bound to address:port in the client namespace that prints, as
    JSON when `seconds` have passed, every datagram it received ({"from", "hex"});
    `ready` is created once it is bound. With `opens_flow_to`, it first sends
    FLOW_OPENER to that address's port 53, so that what comes back from there is
    a reply to a flow the client opened, as the shipped rules require of answers."""
    code = ("import json, select, socket, sys, time\n"
            "family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n"
            "s = socket.socket(family, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2])))\n"
            f"if sys.argv[5]: s.sendto(bytes.fromhex('{FLOW_OPENER.hex()}'), (sys.argv[5], 53)); time.sleep(0.2)\n"
            "open(sys.argv[4], 'w').close()\n"
            "got, deadline = [], time.monotonic() + float(sys.argv[3])\n"
            "for _ in range(10000):\n"
            "    left = deadline - time.monotonic()\n"
            "    if left <= 0: break\n"
            "    if select.select([s], [], [], left)[0]:\n"
            "        data, peer = s.recvfrom(65535); got.append({'from': peer[0], 'sport': peer[1], 'hex': data.hex()})\n"
            "print(json.dumps(got))\n")
    return subprocess.Popen(["ip", "netns", "exec", lab.client, PYTHON, "-c", code, address, str(port), str(seconds),
                             str(ready), opens_flow_to or ""], stdout=subprocess.PIPE, text=True)


# -- dnsgate's answer-stage counters --------------------------------------------------------------
def answer_stage(stats: dict, strict: bool = True) -> dict:
    """The answer-stage counters of `dnsgate stats --json`, flattened into one
    dict: the packet counters ("received", "accepted", "dropped", …) and the
    verdicts ("block", "not_dns", …), whatever the daemon reports. The one place
    that knows where they sit: `stats["answers"]["packets"]`,
    `stats["answers"]["verdicts"]`. With `strict=False`, a daemon without answer
    inspection reads as {"received": 0}."""
    section = stats["answers"] if strict else stats.get("answers")
    if section is None:
        return {"received": 0}
    return {**section["packets"], **section.get("verdicts", {})}


if __name__ == "__main__":
    if sys.argv[1:] == ["send-raw"]:
        _send_raw(json.load(sys.stdin))
    else:
        print("usage: answers.py send-raw < job.json", file=sys.stderr)
        sys.exit(2)
