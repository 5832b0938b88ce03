# SPDX-License-Identifier: GPL-2.0-or-later
"""DNSSEC behind the gateway (issue #9 item 6): a forged answer cannot be
signed, so a validating resolver turns a blocked name under a trust anchor
into SERVFAIL. That must be all it does: the blocked name's parent zone, its
siblings, its TLD and the rest of the chain of trust keep validating (AD,
NOERROR), and a blocked name in an insecure zone gets the forged answer
through the validator, with the SOA it was sent with, cached by the validator
for the block TTL and no longer.

Real programs only: an authoritative BIND serves `example.` (signed; its DS is
the only trust anchor, a stand-in for root and TLD), `signed.example.` (signed,
delegated with a DS) with a signed child `sub.signed.example.`, and
`unsigned.example.` (delegated without a DS), all signed at test time with
dnssec-keygen / dnssec-signzone (lab/dnssec.py). A validating Unbound, BIND
and Knot Resolver in the client namespace forward to a resolver on the far
side of the gateway (as to an ISP's), over IPv4 and IPv6, or straight to the
authority, or iterate from example.'s server down; every query they send
crosses dnsgate, which blocks `ads.signed.example` and
`tracker.unsigned.example` (and what is below them) with NXDOMAIN, NODATA or
OVERRIDE A.

`pytest -s` prints, per validator, the queries it sent for the blocked names
(dnsgate's query log: the blocked name's A/AAAA and its DS, which the
validator asks on its own to find out whether the name is signed).
"""
import json
import time

import pytest

from dnssec import (ADSX_V4, NEWS_V4, OTHER_V4, SUB_V4, UNSIGNED_V4, WWW_V4, SignedAuthority, UpstreamResolver,
                    Validator, ask, find_binary, missing_tools)

MISSING = missing_tools() + ([] if find_binary("unbound") else ["unbound"])
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)} (scripts/setup installs them)")

BLOCKED = "ads.signed.example"          # under the trust anchor
INSECURE_BLOCKED = "tracker.unsigned.example"  # under an insecure delegation
SINKHOLE = "192.0.2.250"
BLOCK_TTL = 60
FORGED_MNAME = "dnsgate.invalid."
OVERRIDE = f", override: {{type: A, value: {SINKHOLE}, ttl: 300}}"


class Gate:
    """dnsgate in the lab's gateway with one blocking rule, restarted when the rule changes."""

    def __init__(self, lab):
        self.lab = lab
        self.current: tuple | None = None
        self.log = lab.dir / "dnssec-queries.jsonl"

    def use(self, response: str, entries: tuple[str, ...] | None = None, qtypes: str | None = None) -> None:
        entries = entries or (BLOCKED, f"*.{BLOCKED}", INSECURE_BLOCKED, f"*.{INSECURE_BLOCKED}")
        wanted = (response, entries, qtypes)
        if wanted == self.current:
            return
        (self.lab.dir / "dnssec-block.txt").write_text("\n".join(entries) + "\n")
        extra = (OVERRIDE if response == "OVERRIDE" else "") + (f", qtypes: {qtypes}" if qtypes else "")
        config = self.lab.write_config(f"""queues: "0-1"
stats_socket: {self.lab.socket_path}
block_defaults: {{ttl: {BLOCK_TTL}}}
query_log: {{path: {self.log}, actions: [BLOCK]}}
domain_lists: [{{name: blocked, file: dnssec-block.txt}}]
rule_groups: [{{name: g, priority: 1, rules: [{{name: dnssec, priority: 1, domain_list: blocked, action: BLOCK,
               block_response: {response}{extra}}}]}}]
""", "dnssec.yaml")
        self.lab.start_dnsgate(config)
        self.current = wanted

    def blocked_since(self, offset: int, sources: tuple[str, ...]) -> list[tuple[str, str]]:
        """(name, type) of every query from `sources` blocked since byte `offset` of the query log."""
        time.sleep(0.3)  # the log thread writes behind the packet path
        if not self.log.exists():
            return []
        records = [json.loads(line) for line in self.log.read_bytes()[offset:].decode().splitlines() if line.strip()]
        return [(r["query_name"].lower().rstrip("."), r["query_type"]) for r in records if r["srcaddr"] in sources]

    def offset(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0


@pytest.fixture(scope="module")
def signed(lab):
    authority = SignedAuthority(lab).start()
    resolver = UpstreamResolver(lab, authority).start()
    lab.apply_rules()
    yield authority, resolver, Gate(lab)
    lab.stop_dnsgate()
    lab.remove_rules()
    resolver.stop()
    authority.stop()


def _soa(answer) -> tuple[str, int, list[str]] | None:
    """(owner, TTL, rdata fields) of the authority section's SOA, if any."""
    for owner, ttl, data in answer.rrs("AUTHORITY", "SOA"):
        return owner, ttl, data.split()
    return None


def _assert_forged(answer, response: str, qtype: str) -> None:
    """The forged answer, as dnsgate sent it, came through the validator: not
    validated (no AD), and a negative one with dnsgate's SOA, whose TTL and
    MINIMUM are the block TTL, so caches below keep it that long and no longer."""
    negative = response in ("NXDOMAIN", "NODATA") or qtype != "A"
    expected = "NXDOMAIN" if response == "NXDOMAIN" else "NOERROR"
    assert answer.status == expected and not answer.ad, answer
    if not negative:
        assert [data for _, _, data in answer.rrs("ANSWER", "A")] == [SINKHOLE], answer
        return
    assert not answer.rrs("ANSWER"), answer
    soa = _soa(answer)
    assert soa is not None, f"the forged negative answer lost its SOA (no negative caching below):\n{answer}"
    owner, ttl, fields = soa
    assert fields[0] == FORGED_MNAME, f"the SOA is not dnsgate's but {owner}'s real one:\n{answer}"
    assert ttl <= BLOCK_TTL and int(fields[-1]) <= BLOCK_TTL, (
        f"negative TTL {ttl}/{fields[-1]} above the block TTL {BLOCK_TTL}:\n{answer}")


def _assert_secure(answer, status: str = "NOERROR", address: str | None = None) -> None:
    assert answer.status == status and answer.ad, answer
    if address:
        assert [data for _, _, data in answer.rrs("ANSWER", "A")] == [address], answer


def _check_chain_of_trust(lab, server: str) -> None:
    """Everything around the blocked names still validates."""
    _assert_secure(ask(lab, server, "www.signed.example"), address=WWW_V4)
    _assert_secure(ask(lab, server, "news.signed.example"), address=NEWS_V4)       # a sibling
    _assert_secure(ask(lab, server, "adsx.signed.example"), address=ADSX_V4)       # the NSEC neighbour
    _assert_secure(ask(lab, server, "sub.signed.example"), address=SUB_V4)         # a signed child zone
    _assert_secure(ask(lab, server, "nothere.signed.example"), status="NXDOMAIN")  # NSEC proof from the parent
    for zone in ("signed.example", "example"):
        soa = ask(lab, server, zone, "SOA")
        _assert_secure(soa)
        assert [data.split()[0] for _, _, data in soa.rrs("ANSWER", "SOA")] == ["ns.example."], soa
        dnskey = ask(lab, server, zone, "DNSKEY")
        _assert_secure(dnskey)
        assert len(dnskey.rrs("ANSWER", "DNSKEY")) == 2, dnskey
    nothere = ask(lab, server, "nothere.example")
    _assert_secure(nothere, status="NXDOMAIN")
    assert _soa(nothere)[2][0] == "ns.example.", f"the TLD's negative answer carries a forged SOA:\n{nothere}"
    _assert_secure(ask(lab, server, "other.example"), address=OTHER_V4)
    insecure = ask(lab, server, "www.unsigned.example")
    assert insecure.status == "NOERROR" and not insecure.ad, insecure
    assert [data for _, _, data in insecure.rrs("ANSWER", "A")] == [UNSIGNED_V4], insecure
    # A real negative answer from the insecure zone (its real SOA is now cached too).
    missing = ask(lab, server, "nothere.unsigned.example")
    assert missing.status == "NXDOMAIN" and not missing.ad, missing
    assert _soa(missing)[0] == "unsigned.example" and _soa(missing)[2][0] == "ns.example.", missing


def _run_case(lab, signed, kind: str, mode: str, response: str, upstream: str) -> None:
    authority, resolver, gate = signed
    gate.use(response)
    target = {"resolver-v4": resolver.v4, "resolver-v6": resolver.v6, "authority": authority.v4}[upstream]
    validator = Validator(lab, kind, authority, upstream=target, mode=mode)
    try:
        validator.start()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    offset = gate.offset()
    authority.set_mark()
    source = (validator.v4, validator.v6)  # an iterating BIND picks either family
    try:
        # 1. The blocked name under the trust anchor: SERVFAIL, at once.
        for name, qtype in ((BLOCKED, "A"), (BLOCKED, "AAAA"), (f"x.{BLOCKED}", "A")):
            answer = ask(lab, validator.v4, name, qtype)
            assert answer.status == "SERVFAIL" and answer.seconds < 2.0, (name, qtype, answer)
        # 2. The blocked name under an insecure delegation: the forged answer.
        probes = ("A", "AAAA") if response == "OVERRIDE" else ("A",)
        for qtype in probes:
            _assert_forged(ask(lab, validator.v4, INSECURE_BLOCKED, qtype), response, qtype)
        # 3. The parent, its siblings, the TLD and the insecure zone are untouched.
        _check_chain_of_trust(lab, validator.v4)
        # 4. Asked again: answered from the validator's cache (dnsgate saw each
        # question once), still dnsgate's answer with the block TTL, although
        # the real SOAs of every zone above it are now in the cache too (a
        # forged SOA owned by one of them shares its cache entry); the signed
        # name still SERVFAIL.
        for qtype in probes:
            _assert_forged(ask(lab, validator.v4, INSECURE_BLOCKED, qtype), response, qtype)
        assert ask(lab, validator.v4, BLOCKED).status == "SERVFAIL"
        asked = gate.blocked_since(offset, source)
        for qtype in probes:
            assert asked.count((INSECURE_BLOCKED, qtype)) == 1, (
                f"the validator did not cache the forged answer to {INSECURE_BLOCKED} {qtype}: {asked}")

        assert all(name == BLOCKED or name.endswith(f".{BLOCKED}") or name == INSECURE_BLOCKED
                   for name, _ in asked), asked
        assert (BLOCKED, "DS") in asked, "the validator asks the blocked name's DS on its own"
        leaked = [q for q in authority.queries(since_mark=True) if BLOCKED in q[0] or INSECURE_BLOCKED in q[0]]
        assert not leaked, f"blocked names reached the authority: {leaked}"
    finally:
        print(f"\n{kind} {mode} via {upstream}, {response}: blocked queries from the validator: "
              + ", ".join(f"{name} {qtype}" for name, qtype in gate.blocked_since(offset, source)))
        validator.stop()


@pytest.mark.parametrize("response", ["NXDOMAIN", "NODATA", "OVERRIDE"])
@pytest.mark.parametrize("kind", ["unbound", "named", "kresd"])
def test_validating_forwarder_fails_only_the_blocked_name(lab, signed, kind, response):
    """A LAN-side validating forwarder using a resolver beyond the gateway."""
    _run_case(lab, signed, kind, "forward", response, "resolver-v4")


@pytest.mark.parametrize("upstream", ["resolver-v6", "authority"])
@pytest.mark.parametrize("kind", ["unbound", "named", "kresd"])
def test_validating_forwarder_other_paths(lab, signed, kind, upstream):
    """The same over IPv6, and forwarding straight to the authority (AA answers)."""
    _run_case(lab, signed, kind, "forward", "NXDOMAIN", upstream)


@pytest.mark.parametrize("kind", ["unbound", "named"])
def test_validating_recursive_resolver_fails_only_the_blocked_name(lab, signed, kind):
    """A LAN-side validating resolver that iterates (zone cuts, bailiwick
    checks, QNAME minimisation) from example.'s server down."""
    _run_case(lab, signed, kind, "recursive", "NXDOMAIN", "authority")


@pytest.mark.parametrize("kind", ["unbound", "named", "kresd"])
def test_servfail_comes_from_the_unsigned_answer_not_the_blocked_ds(lab, signed, kind):
    """With only A and AAAA blocked, the validator's DS query for the name
    reaches the authority, which proves the name has no DS (it is inside the
    signed zone): the forged A is still unsigned, so still SERVFAIL. Blocking
    the DS as well changes nothing for the name and nothing for its parent."""
    authority, resolver, gate = signed
    gate.use("NXDOMAIN", qtypes="[A, AAAA]")
    validator = Validator(lab, kind, authority, upstream=resolver.v4)
    try:
        validator.start()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    try:
        offset = gate.offset()
        assert ask(lab, validator.v4, BLOCKED).status == "SERVFAIL"
        asked = gate.blocked_since(offset, (validator.v4, validator.v6))
        assert (BLOCKED, "A") in asked and (BLOCKED, "DS") not in asked, asked
        _assert_secure(ask(lab, validator.v4, "www.signed.example"), address=WWW_V4)
        _assert_secure(ask(lab, validator.v4, "news.signed.example"), address=NEWS_V4)
    finally:
        validator.stop()


@pytest.mark.parametrize("kind", ["unbound", "named", "kresd"])
def test_exact_entry_for_a_signed_zone_apex_takes_the_zone_with_it(lab, signed, kind):
    """Documents a limit: a list entry for exactly `sub.signed.example` (not
    `*.sub.signed.example`) also blocks the DS and DNSKEY queries a validator
    sends for that zone apex, so every name in the zone (www.sub.signed.example,
    not listed) becomes SERVFAIL behind a validator. Siblings are unaffected."""
    authority, resolver, gate = signed
    gate.use("NXDOMAIN", entries=("sub.signed.example",))
    validator = Validator(lab, kind, authority, upstream=resolver.v4)
    try:
        validator.start()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    try:
        offset = gate.offset()
        assert ask(lab, validator.v4, "www.sub.signed.example").status == "SERVFAIL"
        asked = gate.blocked_since(offset, (validator.v4, validator.v6))
        assert {qtype for _, qtype in asked} & {"DS", "DNSKEY"}, asked
        assert all(name == "sub.signed.example" for name, _ in asked), asked
        _assert_secure(ask(lab, validator.v4, "www.signed.example"), address=WWW_V4)
        _assert_secure(ask(lab, validator.v4, "signed.example", "DNSKEY"))
    finally:
        validator.stop()
