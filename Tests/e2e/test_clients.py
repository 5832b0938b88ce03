# SPDX-License-Identifier: GPL-2.0-or-later
"""Rule groups follow a host, not an address family: a group may name the
host's MAC address (over UDP and TCP, IPv4 and IPv6), `::ffff:` prefixes match
IPv4 clients, and `check` warns when a group names one address family only."""
import json

import pytest

from lab import CLIENT_V4, CLIENT_V6, UPSTREAM_V4, UPSTREAM_V6


def client_mac(lab) -> str:
    return json.loads(lab.ns(lab.client, "ip", "-j", "link", "show", "c0").stdout)[0]["address"]


@pytest.fixture(scope="module")
def by_host(lab):
    config = lab.write_config(f"""queues: "0-1"
stats_socket: {lab.socket_path}
domain_lists:
  - {{name: kids, domains: ["games.mac.example"]}}
  - {{name: other, domains: ["other.mac.example"]}}
  - {{name: mapped, domains: ["mapped.mac.example"]}}
rule_groups:
  - name: this-host
    priority: 1
    clients: ["{client_mac(lab)}"]
    rules: [{{name: kids, priority: 1, domain_list: kids, action: BLOCK}}]
  - name: another-host
    priority: 2
    clients: ["02:00:5e:00:53:99"]
    rules: [{{name: other, priority: 1, domain_list: other, action: BLOCK}}]
  - name: mapped-prefix
    priority: 3
    clients: ["::ffff:192.0.2.0/120"]
    rules: [{{name: mapped, priority: 1, domain_list: mapped, action: BLOCK}}]
""", "clients.yaml")
    lab.apply_rules()
    lab.start_dnsgate(config)
    yield lab, config
    lab.stop_dnsgate()
    lab.remove_rules()


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("server,source", [(UPSTREAM_V4, CLIENT_V4), (UPSTREAM_V6, CLIENT_V6)], ids=["ipv4", "ipv6"])
def test_a_mac_address_group_covers_the_host_over_both_families(by_host, server, source, tcp):
    lab, _ = by_host
    transport = ["+tcp"] if tcp else []
    blocked = lab.ns(lab.client, "dig", f"@{server}", "-b", source, "+tries=1", "+time=2", *transport,
                     "games.mac.example", check=False).stdout
    assert "status: NXDOMAIN" in blocked, blocked
    other = lab.ns(lab.client, "dig", f"@{server}", "-b", source, "+tries=1", "+time=2", *transport,
                   "other.mac.example", check=False).stdout
    assert "status: NOERROR" in other, f"another host's group does not apply: {other}"


def test_an_ipv4_mapped_prefix_matches_ipv4_clients(by_host, client):
    assert client.probe("mapped.mac.example")["rcode"] == "NXDOMAIN"
    assert client.probe("mapped.mac.example", server=UPSTREAM_V6, source=CLIENT_V6)["rcode"] == "NOERROR"


def test_check_warns_about_a_group_of_one_address_family(by_host):
    lab, config = by_host
    result = lab.cli("check", "--config", str(config), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rule group 'mapped-prefix': 'clients' names IPv4 prefixes only" in result.stdout + result.stderr
    assert "'this-host'" not in result.stdout + result.stderr, "a MAC address covers both families"
