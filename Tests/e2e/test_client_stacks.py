# SPDX-License-Identifier: GPL-2.0-or-later
"""Forged answers that real client stacks take as meant, over UDP and TCP.
c-ares (≥ 1.33, with
EDNS) remembers which servers do DNS cookies: a forged answer carrying a
made-up server cookie made it drop every later real answer from a cookie-less
resolver. dnsgate never invents a server cookie, so a blocked name costs the
channel nothing."""
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lab import (CLIENT2_V4, CLIENT_V4, CLIENT_V6, ROOT, UPSTREAM_V4, UPSTREAM_V6, named_forwarder_config,
                 unbound_forwarder_config)

try:
    import pycares
    CARES = tuple(int(part) for part in pycares.ARES_VERSION.split(".")[:2])
except ImportError:  # scripts/setup installs it
    CARES = None


@pytest.fixture(scope="module")
def blocking(lab):
    (lab.dir / "stacks.txt").write_text("*.nx.example\n")
    config = lab.write_config(f"""queues: "0-1"
stats_socket: {lab.socket_path}
domain_lists: [{{name: n, file: stacks.txt}}]
rule_groups: [{{name: g, priority: 1, rules: [{{name: r, priority: 1, domain_list: n, action: BLOCK}}]}}]
""", "stacks.yaml")
    lab.apply_rules()
    lab.start_dnsgate(config)
    # The lab's first IPv6 packet waits about a second for neighbour discovery,
    # with or without dnsgate: warm both paths so that timings measure dnsgate.
    for server, source in ((UPSTREAM_V4, CLIENT_V4), (UPSTREAM_V6, CLIENT_V6)):
        lab.ns(lab.client, "dig", f"@{server}", "-b", source, "+tries=2", "+time=2", "warm.stack.example", check=False)
    yield lab
    lab.stop_dnsgate()
    lab.remove_rules()


@pytest.mark.skipif(CARES is None or CARES < (1, 33), reason="needs pycares with c-ares >= 1.33 (scripts/setup installs it)")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("server", [UPSTREAM_V4, UPSTREAM_V6], ids=["ipv4", "ipv6"])
def test_c_ares_keeps_resolving_after_a_blocked_name(blocking, server, transport):
    lab = blocking
    names = ["a.nx.example", "ok1.stack.example", "ok2.stack.example", "b.nx.example", "ok3.stack.example"]
    out = lab.ns(lab.client, "/usr/bin/python3", str(ROOT / "lab" / "cares_client.py"), server, *names,
                 *(["--tcp"] if transport == "tcp" else []), timeout=120).stdout
    results = {line["name"]: line for line in map(json.loads, out.splitlines()) if "name" in line}
    for name in names:
        result = results[name]
        assert result["seconds"] < 1.0, f"{name} took {result['seconds']} s: {result}"
        if ".nx." in name:
            assert result["error"] == "ARES_ENOTFOUND", result
        else:
            assert result.get("addresses") == ["203.0.113.7"], result


def test_glibc_over_tcp_use_vc(blocking):
    """glibc with `options use-vc`: every lookup over TCP, through the relay."""
    lab = blocking
    resolv = Path("/etc/netns") / lab.client / "resolv.conf"
    original = resolv.read_text()
    resolv.write_text(f"nameserver {UPSTREAM_V4}\noptions use-vc timeout:2 attempts:1\n")
    try:
        before = lab.stats()["tcp"]["queries"]
        started = time.monotonic()
        blocked = lab.ns(lab.client, "getent", "ahostsv4", "c.nx.example", check=False)
        assert blocked.returncode == 2 and time.monotonic() - started < 1.0, "not found, at once"
        allowed = lab.ns(lab.client, "getent", "ahostsv4", "ok-vc.stack.example", check=False)
        assert allowed.returncode == 0 and "203.0.113.7" in allowed.stdout
        assert lab.stats()["tcp"]["queries"] > before, "the lookups went over TCP"
    finally:
        resolv.write_text(original)


@pytest.mark.skipif(shutil.which("unbound") is None, reason="unbound is not installed (scripts/setup installs it)")
def test_unbound_forwarder_with_tcp_upstream_keeps_answering_after_blocks(blocking):
    """A LAN-side Unbound that forwards over TCP: blocked names come back
    NXDOMAIN in the stream and an allowed name right after still resolves at once
    (with resets instead of answers it served SERVFAIL for 15-21 s)."""
    lab = blocking
    directory = lab.dir / "unbound-forwarder"
    directory.mkdir(exist_ok=True)
    config = directory / "unbound.conf"
    config.write_text(unbound_forwarder_config(CLIENT2_V4, directory, UPSTREAM_V4, extra="  tcp-upstream: yes\n"))
    forwarder = subprocess.Popen(["ip", "netns", "exec", lab.client, "unbound", "-d", "-c", str(config)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def ask(name: str) -> tuple[str, float]:
            started = time.monotonic()
            out = lab.ns(lab.client, "dig", f"@{CLIENT2_V4}", "-b", CLIENT_V4, "+tries=1", "+time=3", name,
                         check=False).stdout
            status = out.split("status: ")[1].split(",")[0] if "status: " in out else "TIMEOUT"
            return status, time.monotonic() - started
        deadline = time.monotonic() + 10
        while ask("up.stack.example")[0] != "NOERROR" and time.monotonic() < deadline:
            time.sleep(0.2)
        for index in range(5):
            assert ask(f"f{index}.nx.example")[0] == "NXDOMAIN"
        status, seconds = ask("after-blocks.stack.example")
        assert status == "NOERROR" and seconds < 1.0, (status, seconds)
        assert lab.stats()["tcp"]["queries"] >= 7, "the forwarder asked over TCP"
    finally:
        forwarder.terminate()
        forwarder.wait(timeout=10)


FORWARDER_V4 = "192.0.2.41"  # the cookie test's forwarder, on the client link


@pytest.mark.parametrize("upstream_kind", ["cookieless", "cookies"])
@pytest.mark.parametrize("forwarder", ["named", "unbound"])
def test_a_forwarder_keeps_using_udp_and_trusting_its_upstream_after_blocks(blocking, forwarder, upstream_kind):
    """A LAN-side BIND or Unbound forwarding to a resolver without cookies (the
    lab's) or with them (BIND): after forged answers, the forwarder neither
    complains of a missing cookie nor moves to TCP, and answers at once. With a
    made-up server cookie BIND logged "missing expected cookie" and sent every
    later query over TCP."""
    from resolvers import ALLOWED_NAME, ALLOWED_V4, RealResolvers
    lab = blocking
    resolvers = None
    if upstream_kind == "cookies":
        resolvers = RealResolvers(lab, names=("named",)).start()
        if "named" not in resolvers.running:
            resolvers.stop()
            pytest.fail(f"BIND upstream did not start: {resolvers.missing or resolvers.failed}")
        upstream, allowed, address = resolvers.running["named"].v4, ALLOWED_NAME, ALLOWED_V4
    else:
        upstream, allowed, address = UPSTREAM_V4, "ok.cookie.stack.example", "203.0.113.7"
    directory = lab.dir / f"cookie-{forwarder}-{upstream_kind}"
    directory.mkdir(exist_ok=True)
    lab.ns(lab.client, "ip", "addr", "add", f"{FORWARDER_V4}/24", "dev", "c0")
    if forwarder == "named":
        (directory / "named.conf").write_text(named_forwarder_config(
            FORWARDER_V4, directory, upstream,
            extra="logging { category default { default_stderr; }; category lame-servers { default_stderr; }; };\n"))
        argv = ["named", "-g", "-n", "1", "-c", str(directory / "named.conf")]
    else:
        (directory / "unbound.conf").write_text(unbound_forwarder_config(FORWARDER_V4, directory, upstream))
        argv = ["unbound", "-d", "-c", str(directory / "unbound.conf")]
    log = directory / "output.log"
    with open(log, "w") as output:
        process = subprocess.Popen(["ip", "netns", "exec", lab.client, *argv], stdout=output, stderr=subprocess.STDOUT)
    try:
        def ask(name: str) -> tuple[str, str, float]:
            started = time.monotonic()
            out = lab.ns(lab.client, "dig", f"@{FORWARDER_V4}", "+tries=1", "+time=3", "+cookie", name,
                         check=False).stdout
            status = out.split("status: ")[1].split(",")[0] if "status: " in out else "TIMEOUT"
            return status, out, time.monotonic() - started
        deadline = time.monotonic() + 15
        while ask(allowed)[0] != "NOERROR" and time.monotonic() < deadline:
            time.sleep(0.2)
        tcp_before = lab.stats()["tcp"]["queries"]
        for index in range(4):
            assert ask(f"k{index}-{forwarder}-{upstream_kind}.nx.example")[0] == "NXDOMAIN"
            # Each a fresh name, so the forwarder asks its upstream again.
            name = allowed if upstream_kind == "cookies" else f"ok{index}-{forwarder}.cookie.stack.example"
            status, out, seconds = ask(name)
            assert status == "NOERROR" and address in out and seconds < 1.0, (status, seconds, out)
        text = log.read_text()
        assert "missing expected cookie" not in text, text[-2000:]
        assert lab.stats()["tcp"]["queries"] == tcp_before, "the forwarder moved to TCP after forged answers"
    finally:
        process.terminate()
        process.wait(timeout=10)
        lab.ns(lab.client, "ip", "addr", "del", f"{FORWARDER_V4}/24", "dev", "c0", check=False)
        if resolvers is not None:
            resolvers.stop()
