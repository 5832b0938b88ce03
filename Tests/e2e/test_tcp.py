# SPDX-License-Identifier: GPL-2.0-or-later
"""DNS over TCP is terminated by the gateway's own kernel at dnsgate's
listener: every query is decided like a UDP one, a blocked query is answered
in the stream with the forged answer and never reaches the server, allowed
ones are relayed to the original destination."""
import subprocess

import pytest

from lab import CLIENT2_V4, CLIENT_V4, CLIENT_V6, GATEWAY_LAN_V4, GATEWAY_LAN_V6, PYTHON, ROOT, UPSTREAM_V4, UPSTREAM_V6


@pytest.fixture(scope="module")
def tcp_firewall(lab):
    (lab.dir / "tcp.txt").write_text("blocked.tcp.example\n*.blocked.tcp.example\n")
    config = lab.write_config(f"""queues: "0-1"
stats_socket: {lab.socket_path}
query_log: {{path: {lab.dir / 'tcp-queries.jsonl'}, actions: [BLOCK]}}
domain_lists: [{{name: t, file: tcp.txt}}]
rule_groups: [{{name: g, priority: 1, rules: [{{name: r, priority: 1, domain_list: t, action: BLOCK}}]}}]
""", "tcp.yaml")
    lab.apply_rules()
    lab.start_dnsgate(config)
    yield lab
    lab.stop_dnsgate()
    lab.remove_rules()


def tcp_client(lab, server: str, source: str, names: list[str], split: bool = False, together: bool = False) -> list[str]:
    """Sends queries over one TCP connection: all in one segment (`together`),
    or one after another, each answer read before the next query goes out, the
    first split after its length when `split`. Returns one word per answer (its
    rcode) or for the error that ended the connection."""
    code = f"""
import socket, time, dns.message, dns.rcode
family = socket.AF_INET6 if ':' in {server!r} else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.bind(({source!r}, 0)); s.settimeout(5); s.connect(({server!r}, 53))
wires = [len(w).to_bytes(2, 'big') + w for w in (dns.message.make_query(n, 'A').to_wire() for n in {names!r})]
pending = b''
def answer():
    global pending
    while len(pending) < 2 or len(pending) < 2 + int.from_bytes(pending[:2], 'big'):
        chunk = s.recv(65535)
        if not chunk:
            raise EOFError
        pending += chunk
    n = int.from_bytes(pending[:2], 'big')
    message, pending = pending[2:2 + n], pending[2 + n:]
    print(dns.rcode.to_text(dns.message.from_wire(message).rcode()))
try:
    if {together!r}:
        s.sendall(b''.join(wires))
        for _ in wires:
            answer()
    else:
        for w in wires:
            if {split!r}:
                s.sendall(w[:2]); time.sleep(0.05); s.sendall(w[2:])
            else:
                s.sendall(w)
            answer()
except ConnectionResetError:
    print('reset')
except EOFError:
    print('closed')
except socket.timeout:
    print('timeout')
"""
    return lab.ns(lab.client, "/usr/bin/python3", "-c", code, timeout=30).stdout.split()


def upstream_saw(lab, name: str) -> bool:
    return any(line.startswith(name + ". ") for line in lab.upstream_queries())


@pytest.mark.parametrize("server,source", [(UPSTREAM_V4, CLIENT_V4), (UPSTREAM_V6, CLIENT_V6)], ids=["ipv4", "ipv6"])
def test_kdig_over_tcp_allowed_and_blocked(tcp_firewall, server, source):
    lab = tcp_firewall
    ok = lab.ns(lab.client, "kdig", f"@{server}", "+tcp", "-b", source, "ok.tcp.example", check=False).stdout
    assert "status: NOERROR" in ok and "203.0.113.7" in ok
    before = lab.stats()
    blocked = lab.ns(lab.client, "kdig", f"@{server}", "+tcp", "+edns", "+retry=0", "-b", source, "x.blocked.tcp.example",
                     check=False).stdout
    assert "status: NXDOMAIN" in blocked and "203.0.113.7" not in blocked, blocked
    assert "EDE: 15 (Blocked)" in blocked and "dnsgate.invalid" in blocked, "the same forged answer as over UDP"
    assert not upstream_saw(lab, "x.blocked.tcp.example"), "a blocked TCP query never reaches the server"
    after = lab.stats()
    assert after["responses"]["nxdomain"] == before["responses"]["nxdomain"] + 1
    assert after["tcp"]["queries"] == before["tcp"]["queries"] + 1


def test_a_query_split_over_two_segments_is_decided(tcp_firewall):
    lab = tcp_firewall
    assert tcp_client(lab, UPSTREAM_V4, CLIENT_V4, ["split.blocked.tcp.example"], split=True) == ["NXDOMAIN"]
    assert not upstream_saw(lab, "split.blocked.tcp.example")
    assert tcp_client(lab, UPSTREAM_V4, CLIENT_V4, ["split-ok.tcp.example"], split=True) == ["NOERROR"]
    assert upstream_saw(lab, "split-ok.tcp.example")


def test_two_queries_in_one_segment_are_both_decided(tcp_firewall):
    lab = tcp_firewall
    assert tcp_client(lab, UPSTREAM_V4, CLIENT_V4, ["one.tcp.example", "two.tcp.example"], together=True) == ["NOERROR", "NOERROR"]
    result = tcp_client(lab, UPSTREAM_V4, CLIENT_V4, ["three.tcp.example", "four.blocked.tcp.example"], together=True)
    assert sorted(result) == ["NOERROR", "NXDOMAIN"], "answers may come in any order (RFC 7766)"
    assert upstream_saw(lab, "three.tcp.example") and not upstream_saw(lab, "four.blocked.tcp.example")


def test_a_later_query_on_a_kept_open_connection_is_decided(tcp_firewall):
    lab = tcp_firewall
    result = tcp_client(lab, UPSTREAM_V4, CLIENT_V4, ["first.tcp.example", "later.blocked.tcp.example", "after.tcp.example"])
    assert result == ["NOERROR", "NXDOMAIN", "NOERROR"], "the connection stays usable after a block"
    assert upstream_saw(lab, "first.tcp.example") and upstream_saw(lab, "after.tcp.example")
    assert not upstream_saw(lab, "later.blocked.tcp.example")


def test_the_relay_connects_from_the_gateway_to_the_original_destination(tcp_firewall):
    lab = tcp_firewall
    tcp_client(lab, UPSTREAM_V6, CLIENT_V6, ["where-v6.tcp.example"])
    tcp_client(lab, UPSTREAM_V4, CLIENT_V4, ["where-v4.tcp.example"])
    lines = lab.upstream_queries()
    assert any(l.startswith("where-v4.tcp.example. A 198.51.100.1 tcp") for l in lines), lines[-4:]
    assert any(l.startswith("where-v6.tcp.example. A 2001:db8:2::1 tcp") for l in lines), lines[-4:]


@pytest.mark.parametrize("server,source", [(GATEWAY_LAN_V4, CLIENT_V4), (GATEWAY_LAN_V6, CLIENT_V6)], ids=["ipv4", "ipv6"])
def test_tcp_to_a_resolver_on_the_gateway(tcp_firewall, server, source):
    """INPUT: the relay's own connection to the local resolver crosses the
    loopback with dnsgate's mark and is neither redirected nor reset."""
    lab = tcp_firewall
    log = lab.dir / "local-resolver.log"
    resolver = subprocess.Popen(["ip", "netns", "exec", lab.gateway, PYTHON, str(ROOT / "lab" / "upstream.py"), str(log),
                                 GATEWAY_LAN_V4, GATEWAY_LAN_V6], stdout=subprocess.PIPE, text=True)
    try:
        assert "ready" in resolver.stdout.readline()
        assert tcp_client(lab, server, source, ["local-ok.tcp.example", "local.blocked.tcp.example"]) == ["NOERROR", "NXDOMAIN"]
        seen = log.read_text()
        assert "local-ok.tcp.example." in seen and "local.blocked.tcp.example" not in seen
    finally:
        resolver.terminate()
        resolver.wait(timeout=5)


def test_tcp_counters_and_log(tcp_firewall):
    lab = tcp_firewall
    stats = lab.stats()
    assert stats["tcp"]["queries"] >= 8 and stats["tcp"]["relayed"] >= 5
    assert stats["tcp"]["answers_relayed"] == stats["tcp"]["relayed"]
    log = (lab.dir / "tcp-queries.jsonl").read_text()
    assert '"transport":"TCP"' in log and '"query_name":"split.blocked.tcp.example."' in log


def rss_kb(pid: int) -> int:
    status = open(f"/proc/{pid}/status").read()
    return int(status.split("VmRSS:")[1].split()[0])


def test_a_client_that_never_reads_its_answers_cannot_grow_the_daemon(tcp_firewall):
    """Blocked queries pipelined for 3 s by a client that never reads: the relay
    stops reading while its answers are not taken, so memory stays bounded and
    the client's own kernel buffers fill instead; others are still served."""
    lab = tcp_firewall
    before = rss_kb(lab.dnsgate.pid)
    code = f"""
import socket, time, dns.message
s = socket.create_connection(({UPSTREAM_V4!r}, 53), timeout=5)
s.setblocking(False)
wire = dns.message.make_query("x.blocked.tcp.example", "A").to_wire()
chunk = memoryview((len(wire).to_bytes(2, "big") + wire) * 1000)
sent, at, deadline = 0, 0, time.monotonic() + 3
while time.monotonic() < deadline:
    try:
        n = s.send(chunk[at:])  # a partial send resumes where it stopped: the framing holds
    except BlockingIOError:
        time.sleep(0.01)
        continue
    sent, at = sent + n, (at + n) % len(chunk)
print(sent)
"""
    sent = int(lab.ns(lab.client, "/usr/bin/python3", "-c", code, timeout=30).stdout)
    grown_mb = (rss_kb(lab.dnsgate.pid) - before) / 1024
    print(f"\nnever-reading client: sent {sent / 1e6:.1f} MB of queries in 3 s; dnsgate RSS grew {grown_mb:.1f} MB")
    assert grown_mb < 32, "answers nobody reads are not piled up in the daemon"
    assert sent < 64e6, "reading paused, so the client could not keep sending"
    assert tcp_client(lab, UPSTREAM_V4, CLIENT_V4, ["meanwhile.tcp.example"]) == ["NOERROR"]


def test_a_direct_connection_to_the_listener_is_refused(tcp_firewall):
    """The listener relays only connections redirected from port 53: connecting
    to port 5053 itself is no way to a proxy."""
    lab = tcp_firewall
    before = lab.stats()["tcp"]["refused"]
    code = f"""
import socket
s = socket.create_connection(({GATEWAY_LAN_V4!r}, 5053), timeout=3)
s.sendall(b"\\x00\\x1d" + bytes(29))
try:
    print("closed" if s.recv(100) == b"" else "answered")
except ConnectionResetError:
    print("closed")
"""
    assert lab.ns(lab.client, "/usr/bin/python3", "-c", code).stdout.strip() == "closed"
    assert lab.stats()["tcp"]["refused"] == before + 1


def test_one_client_holds_at_most_64_connections(tcp_firewall):
    """The 65th connection from one address is closed at once; another client
    is still served."""
    lab = tcp_firewall
    before = lab.stats()["tcp"]["refused"]
    code = f"""
import socket, time
held = [socket.create_connection(({UPSTREAM_V4!r}, 53), source_address=({CLIENT2_V4!r}, 0), timeout=3)
        for _ in range(65)]
time.sleep(0.5)
closed = 0
for s in held:
    s.setblocking(False)
    try:
        closed += s.recv(1) == b""
    except BlockingIOError:
        pass
    except ConnectionResetError:
        closed += 1
print(closed)
"""
    closed = int(lab.ns(lab.client, "/usr/bin/python3", "-c", code, timeout=30).stdout)
    assert closed == 1, f"{closed} of 65 closed"
    assert lab.stats()["tcp"]["refused"] == before + 1
    assert tcp_client(lab, UPSTREAM_V4, CLIENT_V4, ["other-client.tcp.example"]) == ["NOERROR"]
