# SPDX-License-Identifier: GPL-2.0-or-later
"""OVERRIDE CNAME answers carry the target's addresses (issue #9 item 2).

No stub resolver asks for a CNAME's target on its own, so a forged answer
holding only the CNAME left glibc, musl, Go, c-ares and dnspython with no
address. dnsgate asks the resolver the client asked for the target, keeps the
answer for its TTL, and answers with the CNAME and the target's records, as
Route 53 and RPZ resolvers do; the asking happens off the queue workers.
"""
import concurrent.futures
import time

import pytest

from lab import CLIENT_V4, UPSTREAM_V4, UPSTREAM_V6
from resolvers import SINKHOLE_NAME, SINKHOLE_TTL, SINKHOLE_V4, SINKHOLE_V6, RealResolvers

# lab/upstream.py's address for the target; Unbound (resolvers.py) gives another.
UPSTREAM_SINKHOLE_V4, UPSTREAM_SINKHOLE_V6 = "203.0.113.53", "2001:db8:ff::53"
SILENT_RESOLVER = "198.51.100.99"  # on the upstream link, but nobody there


@pytest.fixture(scope="module")
def chasing(lab):
    resolvers = RealResolvers(lab, names=("unbound",)).start()
    if "unbound" not in resolvers.running:
        resolvers.stop()
        pytest.fail(f"Unbound did not start: {resolvers.missing or resolvers.failed}")
    (lab.dir / "cname.txt").write_text("*.cname.example\n")
    config = lab.write_config(f"""queues: "0-1"
stats_socket: {lab.socket_path}
domain_lists: [{{name: cname, file: cname.txt}}]
rule_groups:
  - name: g
    priority: 1
    rules:
      - {{name: sinkhole, priority: 1, domain_list: cname, action: BLOCK, block_response: OVERRIDE,
          override: {{type: CNAME, value: {SINKHOLE_NAME}, ttl: 30}}}}
""", "cname.yaml")
    lab.apply_rules()
    lab.start_dnsgate(config)
    yield lab, resolvers.running["unbound"]
    lab.stop_dnsgate()
    lab.remove_rules()
    resolvers.stop()


def answer_lines(lab, *args, server=UPSTREAM_V4):
    out = lab.dig("+noall", "+answer", "+comments", *args, server=server)
    status = next((line.split("status: ")[1].split(",")[0] for line in out.splitlines() if "status:" in line), None)
    records = [line.split() for line in out.splitlines() if line and not line.startswith(";")]
    return status, [(r[0].lower(), r[3], r[4]) for r in records]


def sinkhole_queries(lab):
    return [line for line in lab.upstream_queries() if line.startswith(SINKHOLE_NAME + ".")]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("qtype,server,address", [
    ("A", UPSTREAM_V4, UPSTREAM_SINKHOLE_V4), ("AAAA", UPSTREAM_V4, UPSTREAM_SINKHOLE_V6),
    ("A", UPSTREAM_V6, UPSTREAM_SINKHOLE_V4), ("AAAA", UPSTREAM_V6, UPSTREAM_SINKHOLE_V6),
], ids=["A-ipv4", "AAAA-ipv4", "A-ipv6", "AAAA-ipv6"])
def test_the_answer_carries_the_cname_and_the_targets_address(chasing, qtype, server, address, transport):
    lab, _ = chasing
    name = f"{qtype.lower()}-{transport}-{len(server)}.cname.example"
    status, records = answer_lines(lab, name, qtype, *(["+tcp"] if transport == "tcp" else []), server=server)
    assert status == "NOERROR"
    assert records == [(name + ".", "CNAME", SINKHOLE_NAME + "."), (SINKHOLE_NAME + ".", qtype, address)]
    assert not any(name in line for line in lab.upstream_queries()), "the blocked name reached the upstream"


def test_the_target_comes_from_the_resolver_the_client_asked(chasing):
    lab, unbound = chasing
    _, from_upstream = answer_lines(lab, "one.cname.example", server=UPSTREAM_V4)
    _, from_unbound = answer_lines(lab, "two.cname.example", server=unbound.v4)
    _, from_unbound_v6 = answer_lines(lab, "three.cname.example", "AAAA", server=unbound.v6)
    assert from_upstream[-1] == (SINKHOLE_NAME + ".", "A", UPSTREAM_SINKHOLE_V4)
    assert from_unbound[-1] == (SINKHOLE_NAME + ".", "A", SINKHOLE_V4)
    assert from_unbound_v6[-1] == (SINKHOLE_NAME + ".", "AAAA", SINKHOLE_V6)


def test_stub_resolvers_get_the_address(chasing):
    lab, _ = chasing
    getent = lab.ns(lab.client, "getent", "ahostsv4", "glibc.cname.example", check=False)
    assert getent.returncode == 0 and UPSTREAM_SINKHOLE_V4 in getent.stdout, getent
    code = ("import dns.resolver; r = dns.resolver.Resolver(configure=False); "
            f"r.nameservers = ['{UPSTREAM_V4}']; print([a.address for a in r.resolve('py.cname.example', 'A')])")
    out = lab.ns(lab.client, "/usr/bin/python3", "-c", code).stdout
    assert UPSTREAM_SINKHOLE_V4 in out


def test_the_target_is_kept_for_its_ttl_then_asked_again(chasing):
    lab, unbound = chasing
    before = lab.stats()["override_targets"]
    for index in range(5):
        _, records = answer_lines(lab, f"kept{index}.cname.example", server=unbound.v4)
        assert records[-1] == (SINKHOLE_NAME + ".", "A", SINKHOLE_V4)
    middle = lab.stats()["override_targets"]
    assert middle["queries"] - before["queries"] <= 1, "asked more than once within the TTL"
    assert middle["cache_hits"] - before["cache_hits"] >= 4
    time.sleep(SINKHOLE_TTL + 1)
    _, records = answer_lines(lab, "expired.cname.example", server=unbound.v4)
    ttls = [int(line.split()[1]) for line in lab.dig("+noall", "+answer", "later.cname.example",
                                                      server=unbound.v4).splitlines() if SINKHOLE_NAME in line.split()[0]]
    after = lab.stats()["override_targets"]
    assert after["queries"] - middle["queries"] == 1, "not asked again once the TTL ran out"
    assert records[-1] == (SINKHOLE_NAME + ".", "A", SINKHOLE_V4)
    assert ttls and ttls[0] <= SINKHOLE_TTL, "the target's TTL is passed on, not stretched"


def test_a_silent_resolver_gets_servfail_and_holds_up_nothing_else(chasing):
    """The chase runs off the workers: while dnsgate waits for a resolver that
    never answers, every other query through both queues is decided at once."""
    lab, _ = chasing
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        started = time.monotonic()
        pending = pool.submit(answer_lines, lab, "silent.cname.example", "+time=5", server=SILENT_RESOLVER)
        time.sleep(0.2)
        code = ("import time, dns.message, dns.query\n"
                "worst = 0\n"
                "for i in range(20):\n"
                f"    q = dns.message.make_query(f'ok{{i}}.allowed.example', 'A')\n"
                "    t = time.monotonic()\n"
                f"    dns.query.udp(q, '{UPSTREAM_V4}', timeout=2, source='{CLIENT_V4}')\n"
                "    worst = max(worst, time.monotonic() - t)\n"
                "print(worst)\n")
        worst = float(lab.ns(lab.client, "/usr/bin/python3", "-c", code).stdout)
        status, records = pending.result(timeout=30)
        elapsed = time.monotonic() - started
    assert worst < 0.5, f"an allowed query waited {worst:.2f} s while a target was being chased"
    assert status == "SERVFAIL" and records == []
    assert elapsed < 4, f"SERVFAIL after {elapsed:.1f} s"
    asked = lab.stats()["override_targets"]
    assert asked["failures"] >= 1
    # The failure is kept for 5 s: the next blocked name waits for nothing and asks nobody.
    started = time.monotonic()
    status, _ = answer_lines(lab, "silent2.cname.example", "+time=5", server=SILENT_RESOLVER)
    assert status == "SERVFAIL" and time.monotonic() - started < 1.0
    assert lab.stats()["override_targets"]["queries"] == asked["queries"]


def test_other_types_get_the_cname_then_nodata(chasing):
    lab, _ = chasing
    before = len(sinkhole_queries(lab))
    status, records = answer_lines(lab, "mail.cname.example", "MX")
    assert status == "NOERROR"
    assert records == [("mail.cname.example.", "CNAME", SINKHOLE_NAME + ".")]
    assert "dnsgate.invalid." in lab.dig("+noall", "+authority", "mail2.cname.example", "MX")
    assert len(sinkhole_queries(lab)) == before, "only A and AAAA targets are asked for"
