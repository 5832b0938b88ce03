#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Writes seed corpora for the fuzz targets into FOLDER/corpus-TARGET:
queries of many shapes (IPv4/IPv6, EDNS, cookies, extension headers),
small lists in every syntax, and the example config."""
import struct
import sys
from pathlib import Path

import dns.edns
import dns.message
import dns.rrset

ROOT = Path(__file__).resolve().parent.parent


def ipv4(payload: bytes, ports: tuple[int, int] = (40000, 53)) -> bytes:
    udp = struct.pack("!HHHH", ports[0], ports[1], 8 + len(payload), 0) + payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, 64, 17, 0,
                       bytes([192, 0, 2, 10]), bytes([198, 51, 100, 53])) + udp


def ipv6(payload: bytes, hop_by_hop: bool = False) -> bytes:
    udp = struct.pack("!HHHH", 40000, 53, 8 + len(payload), 0) + payload
    extension, next_header = b"", 17
    if hop_by_hop:
        extension, next_header = bytes([17, 0, 1, 4, 0, 0, 0, 0]), 0
    body = extension + udp
    return struct.pack("!IHBB", 0x60000000, len(body), next_header, 64) + bytes(15) + b"\x01" + bytes(15) + b"\x02" + body


def main() -> None:
    folder = Path(sys.argv[1])
    packets = folder / "corpus-FuzzPacket"
    packets.mkdir(parents=True, exist_ok=True)
    messages = [
        dns.message.make_query("www.Example.com", "A").to_wire(),
        dns.message.make_query("a.b.c.example", "AAAA", use_edns=0, payload=1232).to_wire(),
        dns.message.make_query("x.example", "HTTPS", use_edns=0,
                               options=[dns.edns.GenericOption(dns.edns.COOKIE, bytes(range(8)))]).to_wire(),
        dns.message.make_query("padded.example", "TXT", use_edns=0, options=[dns.edns.GenericOption(12, bytes(40))]).to_wire(),
        dns.message.make_query(".", "NS").to_wire(),
    ]
    # A resolver's answer for an OVERRIDE CNAME target (`www.`): a chain, then addresses.
    chase = dns.message.make_response(dns.message.make_query("www.", "A", use_edns=0, payload=1232))
    chase.answer.append(dns.rrset.from_text("www.", 60, "IN", "CNAME", "edge.cdn.example."))
    chase.answer.append(dns.rrset.from_text("edge.cdn.example.", 30, "IN", "A", "203.0.113.53", "203.0.113.54"))
    seeds = [ipv4(m) for m in messages] + [ipv6(m) for m in messages] + [ipv6(messages[2], hop_by_hop=True)]
    seeds.append(chase.to_wire())
    # Resolvers' responses to clients, for the answer stage: a CNAME chain, a DNAME, a private address.
    chain = dns.message.make_response(dns.message.make_query("www.cloaked.example", "A", use_edns=0))
    chain.answer.append(dns.rrset.from_text("www.cloaked.example.", 60, "IN", "CNAME", "tracker.blocked.example."))
    chain.answer.append(dns.rrset.from_text("tracker.blocked.example.", 60, "IN", "A", "203.0.113.66"))
    dname = dns.message.make_response(dns.message.make_query("x.alias.example", "AAAA"))
    dname.answer.append(dns.rrset.from_text("alias.example.", 60, "IN", "DNAME", "blocked.example."))
    dname.answer.append(dns.rrset.from_text("x.alias.example.", 60, "IN", "CNAME", "x.blocked.example."))
    dname.answer.append(dns.rrset.from_text("x.blocked.example.", 60, "IN", "AAAA", "fd00::1"))
    for response in (chain, dname):
        seeds.append(ipv4(response.to_wire(), ports=(53, 40000)))
    for index, seed in enumerate(seeds):
        (packets / f"seed-{index}").write_bytes(seed)
    lists = folder / "corpus-FuzzLists"
    lists.mkdir(parents=True, exist_ok=True)
    samples = {
        "domains": "# c\nads.example\n*.track.example\n*\n",
        "hosts": "127.0.0.1 localhost\n0.0.0.0 a.example b.example # x\n:: c.example\n",
        "adblock": "! t\n||ads.example^\n@@||ok.ads.example^\n||x.example^$third-party\n||a*.b^\n",
        "rpz": "$TTL 60\n$ORIGIN rpz.\n@ SOA a. b. ( 1 2 3 4 5 )\nx.example CNAME .\n*.y.example CNAME *.\n"
               "z CNAME rpz-passthru.\nw A 192.0.2.1\n24.0.2.0.192.rpz-ip CNAME .\n",
        "addresses": "# c\n192.0.2.1\n198.51.100.0/24 ; x\r\n2001:db8::/32\n::ffff:10.0.0.0/104\n0.0.0.0/0\n",
        "rpz-ip": "$ORIGIN rpz.\n@ SOA a. b. 1 2 3 4 5\n32.1.2.0.192.rpz-ip CNAME .\n48.zz.db8.2001.rpz-ip CNAME rpz-drop.\n"
                  "128.1.zz.db8.2001.rpz-ip AAAA 2001:db8::53\nx.example CNAME .\n",
    }
    for name, text in samples.items():
        (lists / f"seed-{name}").write_text(text)
    configs = folder / "corpus-FuzzConfig"
    configs.mkdir(parents=True, exist_ok=True)
    (configs / "seed-example").write_text((ROOT / "config" / "dnsgate.yaml").read_text())
    threats = folder / "corpus-FuzzThreats"
    threats.mkdir(parents=True, exist_ok=True)
    (threats / "seed-names").write_text(
        "www.google.com\nxjw4kq9vzt2pl8rb7yhc.com\nkepthearsomething.net\nd2908q01vomqb2.cloudfront.net\n"
        "nbswy3dpeb3w64tmmqqhg2lbmvzq.nbswy3dp.t.tunnel.example\nAAAAAO1kQA.=auth.srv.tunnel.com\n"
        "_dmarc.example.org\n1.2.0.192.in-addr.arpa\nx.www.ck\nco.uk\n")
    (threats / "seed-suffixes").write_text("// ===BEGIN ICANN DOMAINS===\ncom\n*.ck\n!www.ck\n// ===END ICANN DOMAINS===\n"
                                           "// ===BEGIN PRIVATE DOMAINS===\ngithub.io\n// ===END PRIVATE DOMAINS===\n")
    (configs / "seed-small").write_text("queues: 1\ndomain_lists: [{name: l, file: /l}]\nrule_groups: "
                                        "[{name: g, priority: 1, rules: [{name: r, priority: 1, domain_list: l, action: BLOCK}]}]\n")


if __name__ == "__main__":
    main()
