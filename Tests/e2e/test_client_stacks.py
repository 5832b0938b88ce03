# SPDX-License-Identifier: GPL-2.0-or-later
"""Forged answers that real client stacks take as meant. c-ares (≥ 1.33, with
EDNS) remembers which servers do DNS cookies: a forged answer carrying a
made-up server cookie made it drop every later real answer from a cookie-less
resolver. dnsgate never invents a server cookie, so a blocked name costs the
channel nothing."""
import json

import pytest

from lab import CLIENT_V4, CLIENT_V6, ROOT, UPSTREAM_V4, UPSTREAM_V6

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
