# SPDX-License-Identifier: GPL-2.0-or-later
"""Red team for DNS over TCP: no TCP trick gets a blocked name to the resolver
(or its A record 203.0.113.7 to the client), blocked queries are answered
in-stream with NXDOMAIN, and pipelined, idle or slow connections never stall
the gateway.

Every test sends queries for names under `blocked.tcp.example` (listed exactly
and as `*.blocked.tcp.example`, BLOCK NXDOMAIN) and then reads the log of the
lab's resolver (198.51.100.53 / 2001:db8:2::53): a blocked name must never be
in it. The TCP conversations are played by a small script run in the client
namespace (`tcpplay.py` below); the raw-socket tricks by a scapy script
(`rawtcp.py`); TCP Fast Open against a server of our own on 198.51.100.60 /
2001:db8:2::60 (`tfoserver.py`). Tests run in both fail modes."""
import json
import random
import select
import socket
import struct
import subprocess
import threading
import time

import dns.message
import pytest

from lab import CLIENT2_V4, CLIENT_V4, CLIENT_V6, PYTHON, ROOT, UPSTREAM_V4, UPSTREAM_V6

BLOCKED = "blocked.tcp.example"
SINK = "203.0.113.7"  # the lab resolver's A record for every name
TFO_V4, TFO_V6 = "198.51.100.60", "2001:db8:2::60"

FAMILIES = pytest.mark.parametrize("server,source", [(UPSTREAM_V4, CLIENT_V4), (UPSTREAM_V6, CLIENT_V6)],
                                   ids=["ipv4", "ipv6"])
BOTH_MODES = pytest.mark.parametrize("gate", ["open", "closed"], indirect=True)
OPEN_MODE = pytest.mark.parametrize("gate", ["open"], indirect=True)

# -- scripts run inside the namespaces ------------------------------------------------

TCPPLAY = r'''
"""tcpplay.py JSON: plays DNS conversations (a list of plans) and prints one
JSON result per plan. A plan: server, source, port, udp, fastopen, phases; a
phase: steps (send HEX [oob] | sleep S), then read until every id in
until_ids is answered, or `expect` more answers, within `timeout` seconds."""
import json, socket, struct, sys, time
import dns.message, dns.rcode, dns.rdatatype


def describe(wire):
    try:
        m = dns.message.from_wire(wire)
    except Exception:
        return {"undecodable": wire.hex()}
    return {"id": m.id, "rcode": dns.rcode.to_text(m.rcode()),
            "name": m.question[0].name.to_text().lower() if m.question else None,
            "data": [rd.to_text() for rrset in m.answer for rd in rrset],
            "soa": any(rrset.rdtype == dns.rdatatype.SOA for rrset in m.authority)}


def play(plan):
    server, port = plan["server"], plan.get("port", 53)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    out = {"answers": [], "end": None, "phase_times": [], "syn_data_acked": None}
    start = time.monotonic()
    udp = plan.get("udp", False)
    s = socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    pending = b""

    def done(phase, base):
        got = {a.get("id") for a in out["answers"]}
        if "until_ids" in phase:
            return all(i in got for i in phase["until_ids"])
        return len(out["answers"]) >= base + phase.get("expect", 0)

    try:
        if plan.get("source"):
            s.bind((plan["source"], 0))
        s.settimeout(plan.get("connect_timeout", 5))
        if not udp:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not plan.get("fastopen"):
                s.connect((server, port))
        first = True
        for phase in plan["phases"]:
            for step in phase.get("steps", []):
                if "sleep" in step:
                    time.sleep(step["sleep"])
                    continue
                data = bytes.fromhex(step["send"])
                if udp:
                    s.sendto(data, (server, port))
                elif first and plan.get("fastopen"):
                    # Blocking, so that without a cookie the kernel completes the handshake and
                    # sends the data after it (non-blocking would fail with EINPROGRESS); bounded
                    # by SO_SNDTIMEO.
                    s.setblocking(True)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
                    sent = s.sendto(data, socket.MSG_FASTOPEN, (server, port))
                    if sent < len(data):
                        s.sendall(data[sent:])
                elif step.get("oob"):
                    if s.send(data, socket.MSG_OOB) != len(data):
                        raise RuntimeError("short urgent send")
                else:
                    s.sendall(data)
                first = False
            base = len(out["answers"])
            deadline = time.monotonic() + phase.get("timeout", 5)
            while not done(phase, base):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout
                s.settimeout(left)
                if udp:
                    out["answers"].append(describe(s.recv(65535)))
                    continue
                chunk = s.recv(65535)
                if not chunk:
                    raise EOFError
                pending += chunk
                while len(pending) >= 2 and len(pending) >= 2 + int.from_bytes(pending[:2], "big"):
                    n = int.from_bytes(pending[:2], "big")
                    out["answers"].append(describe(pending[2:2 + n]))
                    pending = pending[2 + n:]
            out["phase_times"].append(round(time.monotonic() - start, 3))
        out["end"] = "complete"
    except ConnectionResetError:
        out["end"] = "reset"
    except EOFError:
        out["end"] = "eof"
    except socket.timeout:
        out["end"] = "timeout"
    except OSError as error:
        out["end"] = "error: %s" % error
    if not udp:
        try:
            info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            out["syn_data_acked"] = bool(info[5] & 32)  # TCPI_OPT_SYN_DATA
        except OSError:
            pass
    out["elapsed"] = round(time.monotonic() - start, 3)
    s.close()
    return out


plans = json.loads(sys.argv[1])
print(json.dumps([play(plan) for plan in plans]))
'''

RAWTCP = r'''
"""rawtcp.py JSON: one TCP connection made by hand (scapy builds, AF_PACKET
sends on c0), a desync trick, then the query; the client kernel's resets for
the port are dropped meanwhile. Retransmits the query until acknowledged, acks
what the server sends, prints what came back."""
import json, random, select, socket, struct, subprocess, sys, time
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
import dns.message, dns.rcode

a = json.loads(sys.argv[1])
server, source, sport, trick = a["server"], a["source"], a["sport"], a["trick"]
v6 = ":" in server
family = socket.AF_INET6 if v6 else socket.AF_INET
server_bin = socket.inet_pton(family, server)
query, decoy = bytes.fromhex(a["query"]), bytes.fromhex(a["decoy"])
out = {"handshake": False, "answers": [], "server_reset": False, "retransmits": 0, "segments": []}
state = {"synack": None, "acked": 0, "chunks": {}, "base": None}
isn = random.getrandbits(32)
mac = open("/sys/class/net/c0/address").read().strip()
rule = ["OUTPUT", "-p", "tcp", "-s", source, "--sport", str(sport), "--tcp-flags", "RST", "RST", "-j", "DROP"]
tool = "ip6tables" if v6 else "iptables"
subprocess.run([tool, "-w", "-I", *rule], check=True)
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
sock.bind(("c0", 0))


def emit(flags, seq, ack=0, payload=b"", badsum=False, **options):
    ip = IPv6(src=source, dst=server, hlim=64) if v6 else IP(src=source, dst=server, ttl=64)
    packet = Ether(src=mac, dst=a["gateway_mac"]) / ip / TCP(
        sport=sport, dport=53, flags=flags, seq=seq % 2**32, ack=ack % 2**32, window=65535, **options)
    if payload:
        packet = packet / Raw(payload)
    raw = bytes(packet)
    if badsum:
        packet = Ether(raw)
        packet[TCP].chksum ^= 0x0F0F
        raw = bytes(packet)
    sock.send(raw)


def stream():
    data = b""
    while len(data) in state["chunks"]:
        data += state["chunks"][len(data)]
    return data


def rcv_next():
    return state["base"] + len(stream())


def answered():
    data, answers = stream(), []
    while len(data) >= 2 and len(data) >= 2 + int.from_bytes(data[:2], "big"):
        n = int.from_bytes(data[:2], "big")
        try:
            m = dns.message.from_wire(data[2:2 + n])
            answers.append({"id": m.id, "rcode": dns.rcode.to_text(m.rcode()),
                            "name": m.question[0].name.to_text().lower() if m.question else None,
                            "data": [rd.to_text() for rrset in m.answer for rd in rrset]})
        except Exception:
            answers.append({"undecodable": data[2:2 + n].hex()})
        data = data[2 + n:]
    return answers


def segment(frame):
    """(flags, seq, ack, payload) of a TCP segment from the server to us, else None."""
    if v6:
        if frame[12:14] != b"\x86\xdd" or frame[20] != 6 or frame[22:38] != server_bin:
            return None
        tcp, end = 54, 54 + int.from_bytes(frame[18:20], "big")
    else:
        if frame[12:14] != b"\x08\x00" or frame[23] != 6 or frame[26:30] != server_bin:
            return None
        tcp, end = 14 + (frame[14] & 15) * 4, 14 + int.from_bytes(frame[16:18], "big")
    src, dst, seq, ack, off, flags = struct.unpack("!HHIIBB", frame[tcp:tcp + 14])
    if src != 53 or dst != sport:
        return None
    return flags, seq, ack, frame[tcp + (off >> 4) * 4:end]


def pump(seconds, stop=lambda: False):
    until = time.monotonic() + seconds
    while not stop():
        left = until - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            return
        frame, address = sock.recvfrom(65535)
        if address[2] == socket.PACKET_OUTGOING:
            continue
        parsed = segment(frame)
        if parsed is None:
            continue
        flags, seq, ack, payload = parsed
        out["segments"].append("%02x seq=%d ack=%d len=%d" % (flags, seq, ack, len(payload)))
        if flags & 0x04:
            out["server_reset"] = True
            continue
        if flags & 0x12 == 0x12:
            state["synack"] = seq
            continue
        if flags & 0x10:
            state["acked"] = max(state["acked"], (ack - isn) % 2**32)
        if payload and state["base"] is not None:
            offset = (seq - state["base"]) % 2**32
            if offset < 2**31:
                state["chunks"].setdefault(offset, payload)
            emit("A", isn + 1 + len(query), rcv_next())


def wanted():
    return out["server_reset"] or any(x.get("id") == a["want_id"] for x in answered())


try:
    emit("S", isn, options=[("MSS", 1400)])
    pump(3, lambda: state["synack"] is not None)
    if state["synack"] is not None:
        state["base"] = state["synack"] + 1
        snd = isn + 1
        emit("A", snd, rcv_next())
        out["handshake"] = True
        if trick == "syn":          # a second SYN on the live four-tuple, sequence ahead of the stream
            emit("S", snd + 5000, options=[("MSS", 1400)])
        elif trick == "syn-far":    # the same, far outside the window
            emit("S", snd + 2**30, options=[("MSS", 1400)])
        elif trick == "badsum":     # an allowed query in a segment with a bad checksum, same sequence, same length
            emit("PA", snd, rcv_next(), decoy, badsum=True)
        elif trick == "rst":        # a reset far outside the window
            emit("R", snd + 2**30)
        elif trick == "rst-ack":    # the same with ACK set
            emit("RA", snd + 2**30, rcv_next())
        pump(0.3)
        for attempt in range(6):    # the query, resent until acknowledged, as a kernel would
            emit("PA", snd, rcv_next(), query)
            pump(0.5, lambda: wanted() or state["acked"] >= 1 + len(query))
            if wanted() or state["acked"] >= 1 + len(query):
                break
            out["retransmits"] += 1
        pump(3, wanted)
        if not out["server_reset"]:
            emit("R", snd + len(query))
finally:
    subprocess.run([tool, "-w", "-D", *rule], check=False)
out["answers"] = answered()
print(json.dumps(out))
'''

TFOSERVER = r'''
"""tfoserver.py LOG ADDRESS...: the lab resolver's TCP side (lab/upstream.py),
listening with TCP_FASTOPEN on other addresses, logging to its own file."""
import socket, sys, threading
sys.path.insert(0, sys.argv[1])
from upstream import tcp_connection

log_path, addresses = sys.argv[2], sys.argv[3:]
lock = threading.Lock()
log = open(log_path, "a", buffering=1)


def serve(listener):
    while True:
        connection, peer = listener.accept()
        threading.Thread(target=tcp_connection, args=(connection, peer, log, lock), daemon=True).start()


for address in addresses:
    listener = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 64)
    listener.bind((address, 53))
    listener.listen(64)
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait(600)
'''

HOLDER = r'''
"""holder.py JSON: opens `per_source` TCP connections to the resolver from each
of `sources` and holds them (a quarter send half a length prefix, a quarter a
length and 3 bytes of a message, the rest nothing) until stdin closes, at most
60 s. Reports how many connected, and how many are still open 0.5 s later."""
import json, select, socket, sys, time
a = json.loads(sys.argv[1])
family = socket.AF_INET6 if ":" in a["server"] else socket.AF_INET
held, error = [], None
deadline = time.monotonic() + 15
try:
    for source in a["sources"]:
        for i in range(a["per_source"]):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.bind((source, 0))
            s.settimeout(max(0.1, deadline - time.monotonic()))
            s.connect((a["server"], 53))
            if i % 4 == 2:
                s.send(b"\x00")
            elif i % 4 == 3:
                s.send(b"\x00\x30\x12\x34\x01")
            held.append(s)
except OSError as e:
    error = repr(e)
time.sleep(0.5)
alive = 0
for s in held:
    s.setblocking(False)
    try:
        alive += 1 if s.recv(1, socket.MSG_PEEK) else 0
    except BlockingIOError:
        alive += 1
    except OSError:
        pass
print(json.dumps({"connected": len(held), "alive": alive, "error": error}), flush=True)
select.select([sys.stdin], [], [], 60)
'''


# -- fixtures ---------------------------------------------------------------------------

class Gate:
    def __init__(self, lab, mode, config):
        self.lab, self.mode, self.config = lab, mode, config
        self.tools = lab.dir / "bypass-tcp"

    def start(self):
        self.lab.apply_rules(*(["--closed"] if self.mode == "closed" else []))
        self.lab.start_dnsgate(self.config)

    def play(self, *plans, timeout=60, namespace=None):
        result = self.lab.ns(namespace or self.lab.client, PYTHON, str(self.tools / "tcpplay.py"), json.dumps(plans),
                             timeout=timeout)
        return json.loads(result.stdout)

    def mark(self):
        return Upstream(self.lab.upstream_log)


class Upstream:
    """Queries a resolver log received since this mark (lines "name. TYPE peer [tcp]")."""

    def __init__(self, path):
        self.path = path
        self.start = len(self.lines(everything=True))

    def lines(self, everything=False):
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        return lines if everything else lines[self.start:]

    def names(self):
        time.sleep(0.3)  # let the resolver's log catch up with anything still in flight
        return [line.split()[0].rstrip(".") for line in self.lines()]

    def leaked(self):
        return [line for line in self.lines() if is_blocked(line.split()[0].rstrip("."))] if self.names() else []


@pytest.fixture(scope="module")
def tools(lab):
    folder = lab.dir / "bypass-tcp"
    folder.mkdir(exist_ok=True)
    for name, text in (("tcpplay.py", TCPPLAY), ("rawtcp.py", RAWTCP), ("tfoserver.py", TFOSERVER),
                       ("holder.py", HOLDER)):
        (folder / name).write_text(text)
    (lab.dir / "bypass-tcp.txt").write_text(f"{BLOCKED}\n*.{BLOCKED}\n")
    return folder


@pytest.fixture(scope="module")
def gate(lab, tools, request):
    mode = request.param
    config = lab.write_config(f"""queues: "0-1"
fail_mode: {mode}
stats_socket: {lab.socket_path}
domain_lists: [{{name: t, file: bypass-tcp.txt}}]
rule_groups: [{{name: g, priority: 1, rules: [{{name: r, priority: 1, domain_list: t, action: BLOCK,
  block_response: NXDOMAIN}}]}}]
""", f"bypass-tcp-{mode}.yaml")
    instance = Gate(lab, mode, config)
    instance.start()
    yield instance
    lab.stop_dnsgate()
    lab.remove_rules()


# -- helpers ----------------------------------------------------------------------------

def is_blocked(name: str) -> bool:
    name = name.lower().rstrip(".")
    return name == BLOCKED or name.endswith("." + BLOCKED)


def wire(name: str, qid: int, qtype: str = "A") -> bytes:
    query = dns.message.make_query(name, qtype)
    query.id = qid
    return query.to_wire()


def framed(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


def tag(*parts) -> str:
    return "-".join(str(p) for p in parts) + f"-{random.randrange(10**6)}"


def by_id(result: dict, qid: int) -> list[dict]:
    return [a for a in result["answers"] if a.get("id") == qid]


def assert_not_resolved(upstream: Upstream, *results: dict, extra_log: Upstream | None = None) -> None:
    """The security property: no blocked name reached the resolver, and no
    answer for a blocked name carried an address or NOERROR."""
    leaked = upstream.leaked() + (extra_log.leaked() if extra_log else [])
    assert not leaked, f"blocked name reached the resolver: {leaked}"
    for result in results:
        for answer in result["answers"]:
            if answer.get("name") and is_blocked(answer["name"]):
                assert SINK not in answer["data"] and answer["rcode"] != "NOERROR", \
                    f"the client got an answer for a blocked name: {answer}"


def assert_nxdomain_in_stream(result: dict, qid: int, count: int = 1) -> None:
    answers = by_id(result, qid)
    assert len(answers) >= count and all(a["rcode"] == "NXDOMAIN" for a in answers), \
        f"blocked query {qid} not answered NXDOMAIN in-stream ({count}x): end={result['end']} answers={result['answers']}"


def assert_nxdomain_or_closed(result: dict, qid: int) -> None:
    """Answered NXDOMAIN in-stream, or the connection was ended; never left hanging."""
    answers = by_id(result, qid)
    assert all(a["rcode"] == "NXDOMAIN" for a in answers), f"blocked query answered otherwise: {answers}"
    assert answers or result["end"] in ("eof", "reset"), \
        f"blocked query neither answered nor the connection closed: end={result['end']} answers={result['answers']}"


def plan(server, source, *phases, **options) -> dict:
    return {"server": server, "source": source, "phases": list(phases), **options}


def phase(*steps, until_ids=None, expect=None, timeout=5.0) -> dict:
    p = {"steps": list(steps), "timeout": timeout}
    if until_ids is not None:
        p["until_ids"] = list(until_ids)
    if expect is not None:
        p["expect"] = expect
    return p


def send(data: bytes, oob: bool = False) -> dict:
    return {"send": data.hex(), "oob": oob}


def pause(seconds: float) -> dict:
    return {"sleep": seconds}


# -- 1. retransmission after a malformed query ----------------------------------------------

def malformed(kind: str, name: str) -> bytes:
    message = bytearray(wire(name, 0x4D4D, "SOA"))
    if kind == "opcode5":
        message[2] = (message[2] & 0x87) | (5 << 3)
    elif kind == "response":
        message[2] |= 0x80
    elif kind == "garbage":
        message = bytearray(range(0x80, 0x97))
    elif kind == "short":
        message = bytearray(b"\x12\x34\x01")
    elif kind == "empty":
        message = bytearray()
    return framed(bytes(message))


@BOTH_MODES
@pytest.mark.parametrize("kind", ["opcode5", "response", "garbage", "short", "empty"])
def test_a_blocked_query_after_a_malformed_message_is_not_resolved(gate, kind):
    """A length-framed message that is not a query (opcode 5, a response, garbage,
    3 bytes, 0 bytes), then the blocked query in its own segment: the name never
    reaches the resolver; the query is answered NXDOMAIN or the connection ends."""
    name = f"{tag('m', kind, gate.mode)}.{BLOCKED}"
    upstream = gate.mark()
    [result] = gate.play(plan(UPSTREAM_V4, CLIENT_V4, phase(
        send(malformed(kind, f"{tag('mal', kind)}.ok.tcp.example")), pause(0.02), send(framed(wire(name, 0x0B0B))),
        until_ids=[0x0B0B], timeout=3)))
    assert_not_resolved(upstream, result)
    assert_nxdomain_or_closed(result, 0x0B0B)


@BOTH_MODES
@FAMILIES
def test_a_blocked_query_sent_twice_is_answered_nxdomain_twice_and_never_resolved(gate, server, source):
    """The same blocked query sent twice back to back (two send() calls)."""
    name = f"{tag('twice', gate.mode)}.{BLOCKED}"
    query = framed(wire(name, 0x7777))
    upstream = gate.mark()
    [result] = gate.play(plan(server, source, phase(send(query), send(query), expect=2, timeout=3)))
    assert_not_resolved(upstream, result)
    assert_nxdomain_in_stream(result, 0x7777, count=2)


# -- 2. urgent data ----------------------------------------------------------------------------

def urgent_steps(variant: str, query: bytes) -> list[dict]:
    """The urgent (last) byte of a MSG_OOB send leaves the receiver's stream, so
    a receiver without SO_OOBINLINE reads exactly `query`; a box that follows
    the segments' bytes sees one more byte."""
    if variant == "1-before":
        return [send(b"\x00", oob=True), send(query)]
    if variant == "1-inside":  # after the length, in the middle of the header
        return [send(query[:5]), send(b"\x3f", oob=True), send(query[5:])]
    if variant == "7-before":  # a whole 4-byte message, then the urgent byte
        return [send(b"\x00\x04\xde\xad\xbe\xef" + b"\x00", oob=True), send(query)]
    if variant == "7-inside":  # length, id and flags, then the urgent byte
        return [send(query[:6] + b"\x03", oob=True), send(query[6:])]
    raise ValueError(variant)


URGENT = pytest.mark.parametrize("variant", ["1-before", "1-inside", "7-before", "7-inside"])


@BOTH_MODES
@FAMILIES
@URGENT
def test_urgent_data_does_not_smuggle_a_blocked_query(gate, server, source, variant):
    """send(MSG_OOB) of 1 or 7 bytes before or inside the framing: the receiver's
    stream is the blocked query, byte for byte (checked first straight against
    the resolver); through the gateway it never reaches the resolver, and is
    answered NXDOMAIN or the connection ends."""
    # Calibration, without the gateway: the trick does deliver the query whole to the resolver.
    calibration = f"{tag('urg', variant)}.calibration.tcp.example"
    [direct] = gate.play(plan(server, server, phase(*urgent_steps(variant, framed(wire(calibration, 0x0C0C))),
                                                    until_ids=[0x0C0C], timeout=3)), namespace=gate.lab.upstream)
    assert [a["rcode"] for a in by_id(direct, 0x0C0C)] == ["NOERROR"], f"calibration failed: {direct}"

    name = f"{tag('urg', variant, gate.mode)}.{BLOCKED}"
    upstream = gate.mark()
    [result] = gate.play(plan(server, source, phase(*urgent_steps(variant, framed(wire(name, 0x0D0D))),
                                                    until_ids=[0x0D0D], timeout=3)))
    assert_not_resolved(upstream, result)
    assert_nxdomain_or_closed(result, 0x0D0D)


# -- 3. TCP Fast Open -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tfo_server(lab, tools):
    """Our own TCP resolver with TCP_FASTOPEN on 198.51.100.60 / 2001:db8:2::60; TFO on
    in the client and resolver namespaces (restored afterwards)."""
    saved = {ns: lab.ns(ns, "sysctl", "-n", "net.ipv4.tcp_fastopen").stdout.strip() for ns in (lab.client, lab.upstream)}
    lab.ns(lab.upstream, "ip", "addr", "add", f"{TFO_V4}/24", "dev", "u0")
    lab.ns(lab.upstream, "ip", "-6", "addr", "add", f"{TFO_V6}/64", "dev", "u0", "nodad")
    log = lab.dir / "tfo.log"
    process = subprocess.Popen(["ip", "netns", "exec", lab.upstream, PYTHON, str(tools / "tfoserver.py"),
                                str(ROOT / "lab"), str(log), TFO_V4, TFO_V6], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        yield log
    finally:
        process.terminate()
        process.wait(timeout=10)
        lab.ns(lab.upstream, "ip", "addr", "del", f"{TFO_V4}/24", "dev", "u0", check=False)
        lab.ns(lab.upstream, "ip", "-6", "addr", "del", f"{TFO_V6}/64", "dev", "u0", check=False)
        for ns, value in saved.items():
            lab.ns(ns, "sysctl", "-qw", f"net.ipv4.tcp_fastopen={value}", check=False)


@BOTH_MODES
@pytest.mark.parametrize("cookie", ["cookie", "no-cookie"])
@pytest.mark.parametrize("server,source", [(TFO_V4, CLIENT_V4), (TFO_V6, CLIENT_V6)], ids=["ipv4", "ipv6"])
def test_tcp_fast_open_does_not_smuggle_a_blocked_query(gate, tfo_server, server, source, cookie):
    """sendto(MSG_FASTOPEN) to a TFO server: an allowed query first (the path
    works, a cookie is fetched), then the blocked query on two new connections
    (the query in the SYN): never received by the server, answered NXDOMAIN."""
    lab = gate.lab
    # 3 = client and server; no-cookie: data in the SYN without a cookie (client 0x4, server 0x200).
    client_value, server_value = ("3", "3") if cookie == "cookie" else ("7", "515")
    lab.ns(lab.client, "sysctl", "-qw", f"net.ipv4.tcp_fastopen={client_value}")
    lab.ns(lab.upstream, "sysctl", "-qw", f"net.ipv4.tcp_fastopen={server_value}")
    allowed = f"{tag('tfo', cookie, gate.mode)}.ok.tcp.example"
    name = f"{tag('tfo', cookie, gate.mode)}.{BLOCKED}"
    upstream, ours = gate.mark(), Upstream(tfo_server)
    results = gate.play(
        plan(server, source, phase(send(framed(wire(allowed, 0x0A0A))), until_ids=[0x0A0A], timeout=3), fastopen=True),
        plan(server, source, phase(send(framed(wire(name, 0x0F01))), until_ids=[0x0F01], timeout=3), fastopen=True),
        plan(server, source, phase(send(framed(wire(name, 0x0F02))), until_ids=[0x0F02], timeout=3), fastopen=True))
    assert_not_resolved(upstream, *results, extra_log=ours)
    ok = by_id(results[0], 0x0A0A)
    assert ok and ok[0]["rcode"] == "NOERROR" and SINK in ok[0]["data"] and allowed in ours.names(), \
        f"an allowed query over TFO is answered by our server: {results[0]}"
    for result, qid in zip(results[1:], (0x0F01, 0x0F02)):
        assert_nxdomain_in_stream(result, qid)


# -- 4. pipelining ------------------------------------------------------------------------------------

@BOTH_MODES
@FAMILIES
@pytest.mark.parametrize("count", [13, 50, 200])
def test_pipelined_queries_in_one_write_are_each_answered_and_nothing_stalls(gate, server, source, count):
    """13, 50 or 200 queries in one write, a third of them blocked (A, AAAA, TXT,
    HTTPS; the listed name itself too): every one answered within 5 s, allowed
    ones NOERROR with the resolver's address, blocked ones NXDOMAIN with an SOA;
    one more query after the batch is answered; the counters show each block."""
    lab = gate.lab
    base = tag("p", count, gate.mode)
    blocked_types = ["A", "AAAA", "TXT", "HTTPS"]
    queries = []  # (id, name, qtype, blocked)
    for i in range(count):
        if i % 3 == 1:
            name = BLOCKED if i % 9 == 4 else f"q{i}.{base}.{BLOCKED}"
            queries.append((1000 + i, name, blocked_types[i % 4], True))
        else:
            queries.append((1000 + i, f"q{i}.{base}.ok.tcp.example", "A", False))
    batch = b"".join(framed(wire(name, qid, qtype)) for qid, name, qtype, _ in queries)
    after = f"after.{base}.ok.tcp.example"
    before = lab.stats()
    upstream = gate.mark()
    [result] = gate.play(plan(server, source,
                              phase(send(batch), until_ids=[q[0] for q in queries], timeout=5),
                              phase(send(framed(wire(after, 999))), until_ids=[999], timeout=2)))
    assert_not_resolved(upstream, result)
    answers = {a.get("id"): a for a in result["answers"]}
    missing = [qid for qid, *_ in queries if qid not in answers]
    assert not missing, f"{len(missing)} of {count} pipelined queries unanswered (end={result['end']}): {missing[:10]}"
    for qid, name, qtype, blocked in queries:
        answer = answers[qid]
        assert answer["name"] == name.lower() + ".", answer
        if blocked:
            assert answer["rcode"] == "NXDOMAIN" and answer["soa"], f"blocked query answered {answer}"
        else:
            assert answer["rcode"] == "NOERROR" and SINK in answer["data"], f"allowed query answered {answer}"
    assert result["phase_times"][0] < 5, result["phase_times"]
    assert answers.get(999, {}).get("rcode") == "NOERROR", "the connection still works after the batch"
    names = set(upstream.names())
    assert all(name in names for _, name, _, blocked in queries if not blocked), "every allowed query was relayed"
    blocked_count = sum(1 for q in queries if q[3])
    after_stats = lab.stats()
    assert after_stats["verdicts"]["block"] - before["verdicts"]["block"] == blocked_count
    assert after_stats["responses"]["nxdomain"] - before["responses"]["nxdomain"] == blocked_count


# -- 5. raw-socket desynchronisation ---------------------------------------------------------------------

@BOTH_MODES
@pytest.mark.parametrize("trick", ["none", "syn", "syn-far", "badsum", "rst", "rst-ack"])
@FAMILIES
def test_desync_tricks_do_not_smuggle_a_blocked_query(gate, server, source, trick):
    """A hand-made connection (scapy): after the handshake a second SYN on the
    live four-tuple (5000 ahead, or 2^30 away), a decoy segment with a bad
    checksum carrying an allowed query of the same length at the same sequence,
    or a reset (with or without ACK) far outside the window; then the blocked
    query, resent until acknowledged. `none` is the control. The name never
    reaches the resolver, and the connection survives to answer it NXDOMAIN."""
    lab = gate.lab
    gateway_mac = lab.ns(lab.gateway, "cat", "/sys/class/net/g0/address").stdout.strip()
    label = tag("raw", trick, gate.mode)
    name, decoy = f"{label}.{BLOCKED}", f"{label}.allowed.tcp.example"  # same length
    assert len(name) == len(decoy)
    upstream = gate.mark()
    arguments = {"server": server, "source": source, "sport": random.randrange(20000, 30000), "trick": trick,
                 "gateway_mac": gateway_mac, "query": framed(wire(name, 0x5A5A)).hex(),
                 "decoy": framed(wire(decoy, 0x5A5A)).hex(), "want_id": 0x5A5A}
    result = json.loads(lab.ns(lab.client, PYTHON, str(gate.tools / "rawtcp.py"), json.dumps(arguments),
                               timeout=30).stdout)
    assert result["handshake"], f"no handshake: {result}"
    assert_not_resolved(upstream, result)
    assert not result["server_reset"], f"the connection was reset instead of answered: {result}"
    answers = by_id(result, 0x5A5A)
    assert [a["rcode"] for a in answers] == ["NXDOMAIN"], f"blocked query not answered NXDOMAIN in-stream: {result}"


# -- 6. a connection opened before the rules -------------------------------------------------------------------

@BOTH_MODES
@FAMILIES
def test_a_connection_opened_before_the_rules_cannot_resolve_a_blocked_name(gate, server, source):
    """A connection opened (and used) with no rules and no dnsgate; then the rules
    and dnsgate start, and the blocked query goes on the old connection: never
    answered by the resolver, and the client gets a reset rather than silence."""
    lab = gate.lab
    lab.stop_dnsgate()
    lab.remove_rules()
    label = tag("pre", gate.mode)
    before, name = f"{label}.ok.tcp.example", f"{label}.{BLOCKED}"
    code = f"""
import json, socket, sys
s = socket.socket(socket.AF_INET6 if ':' in {server!r} else socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.bind(({source!r}, 0)); s.settimeout(5); s.connect(({server!r}, 53))
def ask(hex_query):
    s.sendall(bytes.fromhex(hex_query))
    data = b''
    while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], 'big'):
        chunk = s.recv(65535)
        if not chunk:
            return 'eof'
        data += chunk
    return data[2:].hex()
print(json.dumps(ask({framed(wire(before, 1)).hex()!r})), flush=True)
sys.stdin.readline()
try:
    print(json.dumps(ask({framed(wire(name, 2)).hex()!r})))
except ConnectionResetError:
    print(json.dumps('reset'))
except socket.timeout:
    print(json.dumps('timeout'))
"""
    process = subprocess.Popen(["ip", "netns", "exec", lab.client, PYTHON, "-c", code], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert select.select([process.stdout], [], [], 10)[0], "no answer before the rules"
        first = json.loads(process.stdout.readline())
        assert first not in ("eof", "reset") and SINK in str(dns.message.from_wire(bytes.fromhex(first))), first
        upstream = gate.mark()
        gate.start()
        process.stdin.write("go\n")
        process.stdin.flush()
        out, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if lab.dnsgate is None:
            gate.start()
    lines = out.strip().splitlines()
    assert lines, "the client on the old connection printed nothing"
    outcome = json.loads(lines[-1])
    got = str(dns.message.from_wire(bytes.fromhex(outcome))) if outcome not in ("eof", "reset", "timeout") else outcome
    leaked = upstream.leaked()
    assert not leaked, f"blocked name reached the resolver on the old connection: {leaked}"
    assert SINK not in got, f"the client resolved the blocked name: {got}"
    assert outcome == "reset", f"the old connection is reset, not left hanging or answered: {got}"


# -- 7. idle and slow connections ------------------------------------------------------------------------------

EXTRA_CLIENTS = ["192.0.2.31", "192.0.2.32", "192.0.2.33", "192.0.2.34"]


@pytest.fixture(scope="module")
def extra_clients(lab):
    """More client addresses, so that idle connections can come from several hosts."""
    for address in EXTRA_CLIENTS:
        lab.ns(lab.client, "ip", "addr", "add", f"{address}/24", "dev", "c0")
    yield EXTRA_CLIENTS
    for address in EXTRA_CLIENTS:
        lab.ns(lab.client, "ip", "addr", "del", f"{address}/24", "dev", "c0", check=False)


class Holder:
    """Idle and slow TCP connections from the client namespace, held while in use."""

    def __init__(self, gate, sources, per_source):
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", gate.lab.client, PYTHON, str(gate.tools / "holder.py"),
             json.dumps({"server": UPSTREAM_V4, "sources": sources, "per_source": per_source})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __enter__(self):
        assert select.select([self.process.stdout], [], [], 25)[0], "the holder did not report"
        return json.loads(self.process.stdout.readline())

    def __exit__(self, *exc):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def fresh_queries(gate, source, label):
    """UDP allowed, UDP blocked, TCP allowed, TCP blocked, each on its own, from `source`."""
    allowed, name = f"{label}.ok.tcp.example", f"{label}.{BLOCKED}"
    return gate.play(
        plan(UPSTREAM_V4, source, phase(send(wire(allowed, 11)), until_ids=[11], timeout=2), udp=True),
        plan(UPSTREAM_V4, source, phase(send(wire(name, 12)), until_ids=[12], timeout=2), udp=True),
        plan(UPSTREAM_V4, source, phase(send(framed(wire(allowed, 13))), until_ids=[13], timeout=2), connect_timeout=2),
        plan(UPSTREAM_V4, source, phase(send(framed(wire(name, 14))), until_ids=[14], timeout=2), connect_timeout=2))


def assert_answered_in_time(results, where):
    udp_ok, udp_blocked, tcp_ok, tcp_blocked = results
    for result, qid, what in ((udp_ok, 11, "UDP allowed"), (tcp_ok, 13, "TCP allowed")):
        answer = by_id(result, qid)
        assert answer and answer[0]["rcode"] == "NOERROR" and SINK in answer[0]["data"] and result["elapsed"] < 2, \
            f"{where}: {what} query not answered within 2 s: {result}"
    assert [a["rcode"] for a in by_id(udp_blocked, 12)] == ["NXDOMAIN"] and udp_blocked["elapsed"] < 2, \
        f"{where}: UDP blocked query: {udp_blocked}"
    assert_nxdomain_in_stream(tcp_blocked, 14)
    assert tcp_blocked["elapsed"] < 2, f"{where}: TCP blocked query: {tcp_blocked}"


@BOTH_MODES
def test_200_idle_and_slow_connections_do_not_delay_new_queries(gate, extra_clients):
    """200 connections held open from four hosts (50 each: idle, half a length,
    a length and part of a message), all kept by the gateway; a host among them
    and a host without any still get UDP and new TCP queries decided and
    answered within 2 s."""
    upstream = gate.mark()
    with Holder(gate, [CLIENT_V4, *extra_clients[:3]], 50) as held:
        assert held["connected"] == 200 and held["alive"] == 200, f"200 connections held open: {held}"
        among = fresh_queries(gate, CLIENT_V4, tag("idle-among", gate.mode))
        other = fresh_queries(gate, CLIENT2_V4, tag("idle-other", gate.mode))
    assert_not_resolved(upstream, *among, *other)
    assert_answered_in_time(among, f"{CLIENT_V4} (holding 50 idle connections)")
    assert_answered_in_time(other, f"{CLIENT2_V4} (holding none)")


@BOTH_MODES
def test_one_host_with_200_idle_connections_neither_stalls_itself_nor_others(gate, extra_clients):
    """One host opens 200 connections (the gateway may refuse some of them: a
    per-client limit is fine). That host's next TCP query is decided within 2 s:
    answered in-stream, or refused at once so it can fall back to UDP, never
    left hanging and never resolved; other hosts are served as usual."""
    crowd = extra_clients[3]
    upstream = gate.mark()
    with Holder(gate, [crowd], 200) as held:
        assert held["connected"] >= 64, f"the host could open connections: {held}"
        label = tag("crowd", gate.mode)
        same = gate.play(*[plan(UPSTREAM_V4, crowd, phase(send(framed(wire(name, qid))), until_ids=[qid], timeout=2),
                                connect_timeout=2)
                           for name, qid in ((f"{label}.ok.tcp.example", 21), (f"{label}.{BLOCKED}", 22))])
        other = fresh_queries(gate, CLIENT2_V4, tag("crowd-other", gate.mode))
    assert_not_resolved(upstream, *same, *other)
    for result, qid, rcode in ((same[0], 21, "NOERROR"), (same[1], 22, "NXDOMAIN")):
        answers = by_id(result, qid)
        assert result["elapsed"] < 2 and (
            [a["rcode"] for a in answers] == [rcode] or (not answers and result["end"] in ("reset", "eof"))), \
            f"the crowded host's new TCP query was neither answered ({rcode}) nor refused at once: {result}"
    assert_answered_in_time(other, f"{CLIENT2_V4} while {crowd} holds 200 connections")


# -- 8. stats socket abuse --------------------------------------------------------------------------------------

@OPEN_MODE
def test_idle_and_slow_stats_socket_clients_do_not_block_stats_or_reload(gate):
    """20 idle connections to the stats socket and one sending a byte every
    2.5 s, all held open: `dnsgate stats --json` answers within 3 s three times
    over 8 s, and `dnsgate reload` succeeds within 3 s."""
    lab = gate.lab
    idle = []
    stop = threading.Event()

    def dribble(connection):  # one byte every 2.5 s, never a whole line
        for _ in range(12):
            if stop.wait(2.5):
                return
            try:
                connection.send(b"s")
            except OSError:
                return

    def timed(*args):
        start = time.monotonic()
        try:
            result = subprocess.run([str(lab.binary), *args, "--socket", str(lab.socket_path)], capture_output=True,
                                    text=True, timeout=3)
        except subprocess.TimeoutExpired:
            return None, 3.0
        return result, time.monotonic() - start

    try:
        for _ in range(21):  # 20 idle, the last one dribbles
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # Blocking (waits while the listen backlog is full), bounded by SO_SNDTIMEO.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 3, 0))
            try:
                connection.connect(str(lab.socket_path))
            except OSError as error:  # EAGAIN: still not accepted after 3 s, the listen backlog is full
                pytest.fail(f"the stats socket did not accept connection {len(idle) + 1} of 21 within 3 s: {error!r}")
            idle.append(connection)
        slow = idle[-1]
        dribbler = threading.Thread(target=dribble, args=(slow,), daemon=True)
        dribbler.start()
        for round_ in range(3):
            result, took = timed("stats", "--json")
            assert result is not None and result.returncode == 0, f"stats did not answer within 3 s (round {round_})"
            assert "block" in json.loads(result.stdout)["verdicts"]
            time.sleep(2.6)
        result, took = timed("reload")
        assert result is not None and result.returncode == 0, f"reload did not succeed within 3 s: {result}"
        result, took = timed("stats", "--json")
        assert result is not None and result.returncode == 0, "stats after reload"
    finally:
        stop.set()
        for connection in idle:
            connection.close()
