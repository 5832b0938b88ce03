# SPDX-License-Identifier: GPL-2.0-or-later
"""LAN-side caching forwarders (dnsmasq, Unbound, BIND) keep a forged answer
for what it is (issue #9 items 5 and 6): a cached NXDOMAIN stays NXDOMAIN and a
cached NODATA stays NODATA, with dnsgate's SOA and the block TTL, and the
forwarder asks again only once that TTL has run out.

The SOA's owner decides this: owned by the blocked name itself, dnsmasq 2.90
turned a cached NXDOMAIN into NODATA (an SOA at a name that does not exist);
owned by the top-level domain, Unbound served the block with the TLD's real
SOA and TTL. dnsgate owns it by the name for NODATA, and for NXDOMAIN by the
name's parent, or by the name when the query sets DO (validators keep a
validated parent SOA over an unsigned one).
"""
import subprocess
import time

import pytest

from lab import UPSTREAM_V4, named_forwarder_config, unbound_forwarder_config

BLOCK_TTL = 30
FORWARDERS = {"dnsmasq": "192.0.2.51", "unbound": "192.0.2.52", "named": "192.0.2.53"}


@pytest.fixture(scope="module")
def forwarders(lab):
    (lab.dir / "cache-nx.txt").write_text("*.nx.cache.example\n")
    (lab.dir / "cache-nodata.txt").write_text("*.nodata.cache.example\n")
    config = lab.write_config(f"""queues: "0-1"
stats_socket: {lab.socket_path}
block_defaults: {{ttl: {BLOCK_TTL}}}
domain_lists: [{{name: nx, file: cache-nx.txt}}, {{name: nodata, file: cache-nodata.txt}}]
rule_groups: [{{name: g, priority: 1, rules: [
  {{name: nx, priority: 1, domain_list: nx, action: BLOCK, block_response: NXDOMAIN}},
  {{name: nodata, priority: 2, domain_list: nodata, action: BLOCK, block_response: NODATA}}]}}]
""", "caching.yaml")
    lab.apply_rules()
    lab.start_dnsgate(config)
    processes = []
    for kind, address in FORWARDERS.items():
        lab.ns(lab.client, "ip", "addr", "add", f"{address}/24", "dev", "c0")
        directory = lab.dir / f"caching-{kind}"
        directory.mkdir(exist_ok=True)
        if kind == "dnsmasq":
            argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                    f"--server={UPSTREAM_V4}", f"--listen-address={address}", "--bind-interfaces", "--user=root",
                    f"--pid-file={directory / 'dnsmasq.pid'}"]
        elif kind == "unbound":
            (directory / "unbound.conf").write_text(unbound_forwarder_config(address, directory, UPSTREAM_V4))
            argv = ["unbound", "-d", "-c", str(directory / "unbound.conf")]
        else:
            (directory / "named.conf").write_text(named_forwarder_config(address, directory, UPSTREAM_V4))
            argv = ["named", "-g", "-n", "1", "-c", str(directory / "named.conf")]
        processes.append(subprocess.Popen(["ip", "netns", "exec", lab.client, *argv],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for kind, address in FORWARDERS.items():
        deadline = time.monotonic() + 15
        while "203.0.113.7" not in dig(lab, address, f"ready-{kind}.ok.cache.example")["out"]:
            assert time.monotonic() < deadline, f"{kind} forwarder did not come up"
            time.sleep(0.2)
    yield lab
    for process in processes:
        process.terminate()
        process.wait(timeout=10)
    for address in FORWARDERS.values():
        lab.ns(lab.client, "ip", "addr", "del", f"{address}/24", "dev", "c0", check=False)
    lab.stop_dnsgate()
    lab.remove_rules()


def dig(lab, server, name, qtype="A"):
    out = lab.ns(lab.client, "dig", f"@{server}", "+tries=1", "+time=3", name, qtype, check=False).stdout
    status = out.split("status: ")[1].split(",")[0] if "status: " in out else "TIMEOUT"
    soa = [fields for fields in (line.split() for line in out.splitlines())
           if len(fields) > 4 and fields[3] == "SOA" and not fields[0].startswith(";")]
    answers = out.split("ANSWER: ")[1].split(",")[0] if "ANSWER: " in out else "?"
    return {"status": status, "answers": answers, "soa": soa, "out": out}


@pytest.mark.parametrize("kind", list(FORWARDERS))
@pytest.mark.parametrize("response,status", [("nx", "NXDOMAIN"), ("nodata", "NOERROR")])
def test_a_cached_block_stays_what_it_was(forwarders, kind, response, status):
    lab = forwarders
    name = f"site-{kind}.{response}.cache.example"
    first = dig(lab, FORWARDERS[kind], name)
    time.sleep(1.1)
    second = dig(lab, FORWARDERS[kind], name)  # from the forwarder's cache
    for answer in (first, second):
        assert answer["status"] == status and answer["answers"] == "0", answer["out"]
        assert answer["soa"], f"no SOA: {answer['out']}"
        owner, ttl, mname = answer["soa"][0][0], int(answer["soa"][0][1]), answer["soa"][0][4]
        assert mname == "dnsgate.invalid.", f"{kind} served another SOA: {answer['out']}"
        assert ttl <= BLOCK_TTL, f"{kind} kept the block {ttl} s, longer than the block TTL"
        # NODATA: the name's own SOA. NXDOMAIN: its parent's, or its own when the
        # forwarder sets DO (Unbound and BIND do; dnsmasq does not).
        owners = {name + "."} if response == "nodata" else {name + ".", name.split(".", 1)[1] + "."}
        assert owner in owners, owner
    assert int(second["soa"][0][1]) < BLOCK_TTL, "the second answer did not come from the cache"
    asked = [line for line in lab.upstream_queries() if line.startswith(name)]
    assert asked == [], "a blocked name reached the upstream"
