# SPDX-License-Identifier: GPL-2.0-or-later
"""Clients must not walk around the firewall: encrypted-DNS discovery is
answered, HTTPS/SVCB queries for blocked names are blocked, DoT/DoQ can be
shut, and killing the daemon fails the way the rules say."""
import re
import signal
import socket
import subprocess
import time

import pytest

from lab import CLIENT_V4, ROOT, UPSTREAM_V4


def example_config(lab):
    text = (ROOT / "config" / "dnsgate.yaml").read_text()
    text = re.sub(r"(?m)^stats_socket: .*$", f"stats_socket: {lab.socket_path}", text)
    text = re.sub(r"(?m)^  path: /var/log/dnsgate/queries.jsonl$", f"  path: {lab.dir}/queries.jsonl", text)
    text = re.sub(r"(?m)^cache_dir: .*$", f"cache_dir: {lab.dir}/cache", text)
    return lab.write_config(text, "example.yaml")


@pytest.fixture
def example(lab):
    lab.apply_rules()
    lab.start_dnsgate(example_config(lab))
    yield lab
    lab.stop_dnsgate()
    lab.remove_rules()


@pytest.mark.parametrize("name,qtype", [("use-application-dns.net", "A"), ("mask.icloud.com", "AAAA"),
                                        ("mask-h2.icloud.com", "A"), ("_dns.resolver.arpa", "SVCB")])
def test_encrypted_dns_discovery_is_answered_so_clients_stay_on_53(example, client, name, qtype):
    response = client.probe(name, qtype=qtype)
    assert response["rcode"] == "NXDOMAIN"
    assert response["ede"][0]["text"] == "blocked by dnsgate rule baseline/keep-clients-on-53"


@pytest.mark.parametrize("qtype", ["HTTPS", "SVCB", "TYPE65"])
def test_https_and_svcb_queries_for_a_blocked_name_are_blocked(example, client, qtype):
    assert client.probe("www.malware.example", qtype=qtype)["rcode"] == "NXDOMAIN"
    assert client.probe("fine.example", qtype=qtype)["rcode"] == "NOERROR"


def listen_853(lab):
    code = ("import socket,time\n"
            f"t=socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(('{UPSTREAM_V4}',853)); t.listen()\n"
            f"u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('{UPSTREAM_V4}',853))\n"
            "print('ready', flush=True)\n"
            "while True:\n c,_=t.accept(); c.close()\n")
    process = subprocess.Popen(["ip", "netns", "exec", lab.upstream, "/usr/bin/python3", "-c", code],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def connect_853(lab) -> str:
    code = ("import socket\n"
            f"s=socket.socket(); s.settimeout(2)\n"
            f"try:\n s.connect(('{UPSTREAM_V4}',853)); print('connected')\n"
            "except ConnectionRefusedError: print('refused')\n"
            "except OSError as e: print('error', e)\n")
    return lab.ns(lab.client, "/usr/bin/python3", "-c", code).stdout.strip()


def test_opt_in_rules_shut_dns_over_tls_and_quic(lab):
    server = listen_853(lab)
    try:
        assert connect_853(lab) == "connected"
        lab.apply_rules("--block-dot")
        assert connect_853(lab) == "refused", "TCP 853 gets a reset"
        udp = lab.ns(lab.client, "/usr/bin/python3", "-c", (
            "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)\n"
            f"s.connect(('{UPSTREAM_V4}',853)); s.send(b'quic')\n"
            "try:\n s.recv(10); print('answer')\nexcept ConnectionRefusedError: print('refused')\n"
            "except socket.timeout: print('timeout')\n")).stdout.strip()
        assert udp == "refused", "UDP 853 gets port unreachable"
        lab.remove_rules()
        assert connect_853(lab) == "connected", "removal takes the 853 rules away too"
    finally:
        server.terminate()
        server.wait()
        lab.remove_rules()


def dnsperf_background(lab, seconds: int):
    queries = lab.dir / "kill-queries.txt"
    queries.write_text("".join(f"q{i}.kill.example A\n" for i in range(500)))
    return subprocess.Popen(["ip", "netns", "exec", lab.client, "dnsperf", "-s", UPSTREAM_V4, "-d", str(queries),
                             "-l", str(seconds), "-Q", "1000", "-t", "1"], stdout=subprocess.PIPE, text=True)


def first_answer_after(client, deadline_seconds: float) -> float | None:
    """Seconds until a probe is answered by the upstream, or None."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_seconds:
        response = client.probe(f"after-kill-{time.monotonic_ns()}.example", timeout=0.2)
        if not response["timeout"] and response["rcode"] == "NOERROR":
            return time.monotonic() - start
    return None


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_kill_9_under_load_fails_as_the_rules_say_and_a_restart_enforces_again(lab, client, mode):
    (lab.dir / "kill.txt").write_text("blocked.kill.example\n")
    config = lab.write_config(f"""queues: "0-1"
fail_mode: {mode}
stats_socket: {lab.socket_path}
domain_lists: [{{name: k, file: kill.txt}}]
rule_groups: [{{name: g, priority: 1, rules: [{{name: r, priority: 1, domain_list: k, action: BLOCK}}]}}]
""", f"kill-{mode}.yaml")
    lab.apply_rules(*(["--closed"] if mode == "closed" else []))
    lab.start_dnsgate(config)
    try:
        assert client.probe("blocked.kill.example")["rcode"] == "NXDOMAIN"
        load = dnsperf_background(lab, seconds=5)
        time.sleep(1.5)
        lab.dnsgate.send_signal(signal.SIGKILL)
        lab.dnsgate.wait()
        recovered = first_answer_after(client, 3.0)
        out = load.communicate(timeout=60)[0]
        sent = int(re.search(r"Queries sent:\s+(\d+)", out).group(1))
        completed = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
        lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))
        print(f"\nkill -9 under load, fail-{mode}: dnsperf sent {sent}, completed {completed}, lost {lost}; "
              f"first upstream answer after kill: {recovered}")
        if mode == "open":
            assert recovered is not None and recovered < 1.0, "queries pass within a second"
            assert lost < sent * 0.05
            assert client.probe("blocked.kill.example")["rcode"] == "NOERROR", "nothing enforces while it is down"
        else:
            assert recovered is None, "nothing gets through while it is down"
            # 1,000 q/s for the 1.5 s before the kill, and nothing after it.
            assert completed <= 1700 and lost >= 50
            assert client.probe("blocked.kill.example", timeout=0.5)["timeout"] is True
        lab.start_dnsgate(config)
        assert client.probe("blocked.kill.example")["rcode"] == "NXDOMAIN", "a restart enforces again"
        assert client.probe("fine-again.example")["rcode"] == "NOERROR"
    finally:
        lab.stop_dnsgate()
        lab.remove_rules()


def start_blocking(lab, name: str, entries: list[str]) -> None:
    """dnsgate behind the fail-open rules, blocking `entries` (list NAME.txt)."""
    (lab.dir / f"{name}.txt").write_text("".join(entry + "\n" for entry in entries))
    config = lab.write_config(f"""queues: "0-1"
stats_socket: {lab.socket_path}
domain_lists: [{{name: l, file: {name}.txt}}]
rule_groups: [{{name: g, priority: 1, rules: [{{name: r, priority: 1, domain_list: l, action: BLOCK}}]}}]
""", f"{name}.yaml")
    lab.apply_rules()
    lab.start_dnsgate(config)


@pytest.mark.parametrize("server", [UPSTREAM_V4, "2001:db8:2::53"], ids=["ipv4", "ipv6"])
def test_a_query_split_into_ip_fragments_is_decided_whole(lab, client, server):
    """The shipped rules' conntrack match makes the kernel reassemble fragments
    before the queue; without it a fragmented query would pass as not_dns."""
    start_blocking(lab, "frag", ["big.frag.example"])
    code = ("import dns.message, dns.query, dns.edns, sys\n"
            "q = dns.message.make_query(sys.argv[1], 'A', use_edns=0, payload=4096,"
            " options=[dns.edns.GenericOption(12, bytes(3000))])\n"  # 3 kB of padding: three fragments
            "r = dns.query.udp(q, sys.argv[2], timeout=2, ignore_unexpected=True)\n"
            "print(dns.rcode.to_text(r.rcode()))\n")
    try:
        out = lab.ns(lab.client, "/usr/bin/python3", "-c", code, "big.frag.example", server).stdout.strip()
        assert out == "NXDOMAIN"
        ok = lab.ns(lab.client, "/usr/bin/python3", "-c", code, "fine.frag.example", server).stdout.strip()
        assert ok == "NOERROR"
        verdicts = lab.stats()["verdicts"]
        assert verdicts["block"] == 1 and verdicts["no_match"] == 1 and verdicts["not_dns"] == 0
    finally:
        lab.stop_dnsgate()
        lab.remove_rules()


@pytest.mark.parametrize("mode,overload", [("open", None), ("closed", None), ("open", "pass")])
def test_a_full_queue_follows_on_overload_and_the_counters_show_it(lab, client, mode, overload):
    """The daemon is stopped (SIGSTOP) so its queue fills: by default the
    overflow is dropped and counted in both fail modes; `on_overload: pass`
    lets it through to the resolver and counts it too."""
    config = lab.write_config(f"""queues: "0-1"
fail_mode: {mode}
{f"on_overload: {overload}" if overload else ""}
queue_length: 8
stats_socket: {lab.socket_path}
""", f"overload-{mode}.yaml")
    lab.apply_rules(*(["--closed"] if mode == "closed" else []))
    lab.start_dnsgate(config)
    try:
        lab.dnsgate.send_signal(signal.SIGSTOP)
        tag = f"{mode}-{overload or 'default'}"
        flood = "".join(f"o{i}.{tag}.overload.example A\n" for i in range(200))
        (lab.dir / "flood.txt").write_text(flood)
        lab.ns(lab.client, "dnsperf", "-s", UPSTREAM_V4, "-d", str(lab.dir / "flood.txt"), "-n", "1", "-t", "1", "-q", "200",
               timeout=60)
        reached = sum(1 for line in lab.upstream_queries() if f".{tag}.overload.example." in line)
        lab.dnsgate.send_signal(signal.SIGCONT)
        time.sleep(0.5)
        stats = lab.stats()
        dropped = sum(q["kernel_dropped"] for q in stats["queues"])
        overflow = stats["packets"]
        print(f"\nfull queue, fail-{mode}: {reached} of 200 reached the resolver while stopped; kernel_dropped {dropped}; "
              f"overflow_passed {overflow['overflow_passed']}, overflow_dropped {overflow['overflow_dropped']}")
        assert stats["on_overload"] == (overload or "drop"), "drop unless told otherwise"
        if overload == "pass":
            assert reached >= 200 - 2 * 8 and dropped == 0, "the overflow went through"
            assert overflow["overflow_passed"] == reached and overflow["overflow_dropped"] == 0, "and is counted"
        else:
            assert reached == 0 and dropped >= 200 - 2 * 8, "the overflow was dropped and counted"
            assert overflow["overflow_dropped"] == dropped and overflow["overflow_passed"] == 0
    finally:
        if lab.dnsgate is not None and lab.dnsgate.poll() is None:
            lab.dnsgate.send_signal(signal.SIGCONT)
        lab.stop_dnsgate()
        lab.remove_rules()


def test_a_lan_packet_carrying_dnsgates_mark_is_still_decided(lab, client):
    """Gateways that restore connection marks onto packets (CONNMARK, for policy
    routing) can hand a LAN query dnsgate's own mark: it must not let it through."""
    start_blocking(lab, "marked", ["marked.example", "*.marked.example"])
    marking = ["-t", "mangle", "-I", "PREROUTING", "-i", "g0", "-j", "MARK", "--set-mark", "0x444e53"]
    for tool in ("iptables", "ip6tables"):
        lab.ns(lab.gateway, tool, *marking)
    try:
        assert client.probe("x.marked.example")["rcode"] == "NXDOMAIN"
        assert client.probe("x6.marked.example", server="2001:db8:2::53", source="2001:db8:1::10")["rcode"] == "NXDOMAIN"
        tcp = lab.ns(lab.client, "dig", f"@{UPSTREAM_V4}", "+tcp", "+tries=1", "+time=2", "t.marked.example",
                     check=False).stdout
        assert "status: NXDOMAIN" in tcp, tcp
        assert not any("marked.example" in line for line in lab.upstream_queries())
    finally:
        for tool in ("iptables", "ip6tables"):
            lab.ns(lab.gateway, tool, *[a if a != "-I" else "-D" for a in marking], check=False)
        lab.stop_dnsgate()
        lab.remove_rules()
