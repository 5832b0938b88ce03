#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Real resolvers behind the lab's gateway, and a batch prober in front of it.

`RealResolvers(lab).start()` runs Unbound, dnsmasq, Knot Resolver (kresd) and
BIND (named) in the lab's upstream namespace, each on addresses of its own
(added to u0, next to the lab's python resolver on .53):

    unbound  198.51.100.54  2001:db8:2::54
    dnsmasq  198.51.100.55  2001:db8:2::55
    kresd    198.51.100.56  2001:db8:2::56
    named    198.51.100.57  2001:db8:2::57

Each answers locally and recurses nowhere: `blocked.bypass.example` and every
name below it -> A 203.0.113.66, `allowed.bypass.example` -> A 203.0.113.77;
Unbound also answers `sinkhole.lab.example` (A 203.0.113.88, AAAA
2001:db8:ff::88, TTL 3 s).
Runtime files live in lab.dir/resolvers/NAME; `stop()` ends each by its PID
and removes the addresses. A resolver whose binary is missing is listed in
`missing`, one that would not come up in `failed` (with the reason).

`probe_batch(lab, probes, window)` runs this file in the client namespace:
it sends every probe at once (a UDP payload from a socket of its own, or a
whole hand-made IPv4/IPv6 packet through a raw socket, with a UDP socket bound
to the packet's source port to take the answer), collects every datagram that
comes back for `window` seconds after the last send, and sniffs c0 (AF_PACKET)
for any inbound frame at all that carries the blocked address.

Only documentation addresses are used.
"""
import json
import select
import shutil
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BLOCKED_NAME, BLOCKED_V4 = "blocked.bypass.example", "203.0.113.66"
ALLOWED_NAME, ALLOWED_V4 = "allowed.bypass.example", "203.0.113.77"
BLOCKED_BYTES = socket.inet_aton(BLOCKED_V4)   # cb 00 71 42: in any answer, a leak
ALLOWED_BYTES = socket.inet_aton(ALLOWED_V4)
# Unbound's own address for an OVERRIDE CNAME target, with a TTL short enough to watch run out.
SINKHOLE_NAME, SINKHOLE_V4, SINKHOLE_V6, SINKHOLE_TTL = "sinkhole.lab.example", "203.0.113.88", "2001:db8:ff::88", 3
FORGED_MARK = b"\x07dnsgate\x07invalid\x00"    # dnsgate's SOA MNAME in a forged NXDOMAIN / NODATA

PYTHON = "/usr/bin/python3"
READY_TIMEOUT = 20.0


@dataclass
class Resolver:
    name: str
    binary: str
    v4: str
    v6: str
    process: subprocess.Popen | None = None
    workdir: Path | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "output.log"

    def log_tail(self, lines: int = 15) -> str:
        if self.workdir is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


SPECS = [
    ("unbound", "unbound", "198.51.100.54", "2001:db8:2::54"),
    ("dnsmasq", "dnsmasq", "198.51.100.55", "2001:db8:2::55"),
    ("kresd", "kresd", "198.51.100.56", "2001:db8:2::56"),
    ("named", "named", "198.51.100.57", "2001:db8:2::57"),
]


def find_binary(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.exists()),
                                      None)


# -- configurations -------------------------------------------------------------------------
def unbound_server(workdir: Path, v4: str, v6: str, modules: str = "iterator") -> str:
    """The `server:` clause every lab Unbound starts with: listening on v4 and
    v6 port 53 for anyone, in the foreground from `workdir`, one thread,
    running `modules`."""
    return f"""server:
    interface: {v4}
    interface: {v6}
    port: 53
    do-ip4: yes
    do-ip6: yes
    do-udp: yes
    do-tcp: yes
    access-control: 0.0.0.0/0 allow
    access-control: ::/0 allow
    username: ""
    chroot: ""
    directory: "{workdir}"
    pidfile: "{workdir}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    module-config: "{modules}"
    num-threads: 1
    so-reuseport: no
"""


def unbound_command(r: Resolver) -> list[str]:
    conf = r.workdir / "unbound.conf"
    conf.write_text(unbound_server(r.workdir, r.v4, r.v6) + f"""\
    local-zone: "bypass.example." static
    local-zone: "blocked.bypass.example." redirect
    local-data: "blocked.bypass.example. 60 IN A {BLOCKED_V4}"
    local-data: "allowed.bypass.example. 60 IN A {ALLOWED_V4}"
    local-data: "{SINKHOLE_NAME}. {SINKHOLE_TTL} IN A {SINKHOLE_V4}"
    local-data: "{SINKHOLE_NAME}. {SINKHOLE_TTL} IN AAAA {SINKHOLE_V6}"
remote-control:
    control-enable: no
""")
    return [r.binary, "-d", "-c", str(conf)]


def dnsmasq_command(r: Resolver) -> list[str]:
    return [r.binary, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
            "--bind-interfaces", f"--listen-address={r.v4}", f"--listen-address={r.v6}", "--port=53",
            f"--address=/{BLOCKED_NAME}/{BLOCKED_V4}", f"--address=/{ALLOWED_NAME}/{ALLOWED_V4}",
            f"--pid-file={r.workdir}/dnsmasq.pid", "--user=root", "--log-facility=-", "--log-queries"]


def kresd_command(r: Resolver) -> list[str]:
    conf = r.workdir / "kresd.conf"
    conf.write_text(f"""-- Knot Resolver in the dnsgate lab: two names answered by policy, no recursion.
net.listen('{r.v4}', 53, {{ kind = 'dns' }})
net.listen('{r.v6}', 53, {{ kind = 'dns' }})
trust_anchors.remove('.')
cache.size = 10 * MB
policy.add(policy.suffix(policy.ANSWER({{ [kres.type.A] = {{ rdata = kres.str2ip('{BLOCKED_V4}'), ttl = 60 }} }}, true),
                         {{ todname('{BLOCKED_NAME}.') }}))
policy.add(policy.suffix(policy.ANSWER({{ [kres.type.A] = {{ rdata = kres.str2ip('{ALLOWED_V4}'), ttl = 60 }} }}, true),
                         {{ todname('{ALLOWED_NAME}.') }}))
policy.add(policy.all(policy.REFUSE))
""")
    return [r.binary, "-n", "-c", str(conf), str(r.workdir)]


def named_command(r: Resolver) -> list[str]:
    zone = r.workdir / "bypass.example.zone"
    zone.write_text(f"""$TTL 60
@        IN SOA ns.bypass.example. hostmaster.bypass.example. 1 3600 600 86400 60
@        IN NS  ns
ns       IN A   {r.v4}
blocked  IN A   {BLOCKED_V4}
*.blocked IN A  {BLOCKED_V4}
allowed  IN A   {ALLOWED_V4}
""")
    conf = r.workdir / "named.conf"
    conf.write_text(f"""options {{
    directory "{r.workdir}";
    pid-file "{r.workdir}/named.pid";
    session-keyfile "{r.workdir}/session.key";
    managed-keys-directory "{r.workdir}";
    listen-on port 53 {{ {r.v4}; }};
    listen-on-v6 port 53 {{ {r.v6}; }};
    recursion no;
    allow-query {{ any; }};
    dnssec-validation no;
    notify no;
}};
controls {{ }};
zone "bypass.example" {{ type primary; file "{zone}"; }};
""")
    return [r.binary, "-g", "-n", "1", "-c", str(conf)]


COMMANDS = {"unbound": unbound_command, "dnsmasq": dnsmasq_command, "kresd": kresd_command, "named": named_command}


class RealResolvers:
    def __init__(self, lab, names: tuple[str, ...] | None = None):
        self.lab = lab
        self.wanted = [spec for spec in SPECS if names is None or spec[0] in names]
        self.running: dict[str, Resolver] = {}
        self.missing: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self.addresses: list[tuple[str, str]] = []

    def start(self) -> "RealResolvers":
        for name, program, v4, v6 in self.wanted:
            binary = find_binary(program)
            if binary is None:
                self.missing[name] = f"{program} is not installed"
                continue
            resolver = Resolver(name, binary, v4, v6, workdir=self.lab.dir / "resolvers" / name)
            resolver.workdir.mkdir(parents=True, exist_ok=True)
            self._add_address(v4, f"{v4}/24")
            self._add_address(v6, f"{v6}/64")
            log = open(resolver.log, "ab")
            resolver.process = subprocess.Popen(
                ["ip", "netns", "exec", self.lab.upstream, *COMMANDS[name](resolver)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=resolver.workdir)
            log.close()
            problem = self._wait_ready(resolver)
            if problem is None:
                self.running[name] = resolver
            else:
                self.failed[name] = f"{problem}\n{resolver.log_tail()}"
                self._stop_one(resolver)
        return self

    def _add_address(self, address: str, prefix: str) -> None:
        option = ["-6"] if ":" in address else []
        extra = ["nodad"] if ":" in address else []
        self.lab.ns(self.lab.upstream, "ip", *option, "addr", "replace", prefix, "dev", "u0", *extra)
        self.addresses.append((address, prefix))

    def _wait_ready(self, resolver: Resolver) -> str | None:
        """None when the resolver answers allowed.bypass.example over IPv4 and IPv6, else why not."""
        code = ("import sys, time, dns.message, dns.query\n"
                "deadline = time.monotonic() + float(sys.argv[3])\n"
                "pending = set(sys.argv[1:3])\n"
                "for _ in range(400):\n"
                "    if not pending or time.monotonic() > deadline: break\n"
                "    for server in sorted(pending):\n"
                f"        q = dns.message.make_query('{ALLOWED_NAME}', 'A')\n"
                "        try:\n"
                "            r = dns.query.udp(q, server, timeout=0.3)\n"
                f"            if '{ALLOWED_V4}' in r.to_text(): pending.discard(server)\n"
                "        except Exception: pass\n"
                "    time.sleep(0.05)\n"
                "print(' '.join(sorted(pending)) or 'ready')\n")
        out = self.lab.ns(self.lab.upstream, PYTHON, "-c", code, resolver.v4, resolver.v6, str(READY_TIMEOUT),
                          check=False, timeout=READY_TIMEOUT + 20)
        if resolver.process.poll() is not None:
            return f"{resolver.name} exited with {resolver.process.returncode}"
        if out.stdout.strip() != "ready":
            return (f"{resolver.name} did not answer {ALLOWED_NAME} on {out.stdout.strip() or out.stderr.strip()} "
                    f"within {READY_TIMEOUT:.0f} s")
        return None

    def _stop_one(self, resolver: Resolver) -> None:
        process = resolver.process
        if process is not None and process.poll() is None:
            process.terminate()  # `ip netns exec` execs the resolver: this is its PID
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        resolver.process = None

    def stop(self) -> None:
        for resolver in list(self.running.values()):
            self._stop_one(resolver)
        self.running.clear()
        for address, prefix in self.addresses:
            option = ["-6"] if ":" in address else []
            self.lab.ns(self.lab.upstream, "ip", *option, "addr", "del", prefix, "dev", "u0", check=False)
        self.addresses.clear()


# -- the batch prober ---------------------------------------------------------------------------
def probe_batch(lab, probes: list[dict], window: float = 2.0, interface: str = "c0") -> dict:
    """Runs the probes from the client namespace. Each probe is
    {"key", "kind": "udp", "src", "dst", "payload": hex} or
    {"key", "kind": "raw", "src", "sport", "packet": hex} (a whole IP packet).
    Returns {"results": {key: {"sport", "datagrams": [{"from", "hex"}], "error"}},
             "sniffed": [{"sport", "dport", "src", "hex"}]} (inbound UDP from port 53 seen on the interface)."""
    job = json.dumps({"window": window, "interface": interface, "probes": probes})
    result = lab.ns(lab.client, PYTHON, str(Path(__file__).resolve()), "probe-batch", input=job,
                    timeout=window + 60)
    return json.loads(result.stdout)


def _sniffer(interface: str) -> socket.socket | None:
    try:
        sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        sniff.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sniff.bind((interface, 0))
        sniff.setblocking(False)
        return sniff
    except OSError:
        return None


def _udp_from_frame(frame: bytes) -> tuple[str, int, int, bytes] | None:
    """(source address, source port, destination port, payload) of an Ethernet
    frame carrying IPv4 or IPv6 (no extension headers) + UDP, else None."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    ip = frame[14:]
    if ethertype == 0x0800 and len(ip) >= 20 and ip[9] == 17:
        header = (ip[0] & 0x0F) * 4
        source = socket.inet_ntop(socket.AF_INET, ip[12:16])
        udp = ip[header:]
    elif ethertype == 0x86DD and len(ip) >= 40 and ip[6] == 17:
        source = socket.inet_ntop(socket.AF_INET6, ip[8:24])
        udp = ip[40:]
    else:
        return None
    if len(udp) < 8:
        return None
    sport, dport = struct.unpack_from("!HH", udp, 0)
    return source, sport, dport, udp[8:]


def _run_batch(job: dict) -> dict:
    window = float(job["window"])
    sniff = _sniffer(job["interface"])
    results: dict[str, dict] = {}
    sockets: dict[socket.socket, str] = {}
    by_key: dict[str, socket.socket] = {}
    raw_v4 = raw_v6 = None
    # Raw probes first: their fixed source ports must be bound before any ephemeral one is taken.
    ordered = sorted(job["probes"], key=lambda p: p["kind"] != "raw")
    for probe in ordered:
        key = probe["key"]
        family = socket.AF_INET6 if ":" in probe["src"] else socket.AF_INET
        entry = results[key] = {"sport": None, "datagrams": [], "error": None}
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((probe["src"], probe.get("sport", 0) if probe["kind"] == "raw" else 0))
            sock.setblocking(False)
            entry["sport"] = sock.getsockname()[1]
            sockets[sock], by_key[key] = key, sock
        except OSError as error:
            entry["error"] = f"bind: {error}"
    for probe in ordered:
        entry = results[probe["key"]]
        if entry["error"]:
            continue
        sock = by_key[probe["key"]]
        try:
            if probe["kind"] == "udp":
                sock.sendto(bytes.fromhex(probe["payload"]), (probe["dst"], 53))
            elif ":" in probe["src"]:
                if raw_v6 is None:
                    raw_v6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
                packet = bytes.fromhex(probe["packet"])
                raw_v6.sendto(packet, (socket.inet_ntop(socket.AF_INET6, packet[24:40]), 0))
            else:
                if raw_v4 is None:
                    raw_v4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
                packet = bytes.fromhex(probe["packet"])
                raw_v4.sendto(packet, (socket.inet_ntop(socket.AF_INET, packet[16:20]), 0))
        except OSError as error:
            entry["error"] = f"send: {error}"
    sniffed: list[dict] = []
    readers = list(sockets) + ([sniff] if sniff is not None else [])
    deadline = time.monotonic() + window
    for _ in range(100_000):  # bounded in count as well as in time
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select(readers, [], [], left)
        for sock in ready:
            try:
                data, peer = sock.recvfrom(65535)
            except (BlockingIOError, OSError):
                continue
            if sock is sniff:
                if peer[2] == socket.PACKET_OUTGOING:
                    continue
                udp = _udp_from_frame(data)
                if udp is not None and udp[1] == 53:
                    sniffed.append({"src": udp[0], "sport": udp[1], "dport": udp[2], "hex": udp[3].hex()})
                elif BLOCKED_BYTES in data:
                    sniffed.append({"src": None, "sport": None, "dport": None, "hex": data.hex()})
            else:
                results[sockets[sock]]["datagrams"].append({"from": peer[0], "hex": data.hex()})
    for sock in list(sockets) + [s for s in (sniff, raw_v4, raw_v6) if s is not None]:
        sock.close()
    return {"results": results, "sniffed": sniffed, "sniffer": sniff is not None}


if __name__ == "__main__":
    if sys.argv[1:] == ["probe-batch"]:
        print(json.dumps(_run_batch(json.load(sys.stdin))))
    else:
        print("usage: resolvers.py probe-batch < job.json", file=sys.stderr)
        sys.exit(2)
