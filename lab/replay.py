#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Replays a query stream from the client namespace, one query at a time and
in order, and prints one JSON line per query: {"rcode": ..., "answers": N} or
{"rcode": "TIMEOUT"}. Each input line is `NAME-IN-HEX QTYPE`: names go on the
wire byte for byte (a tunnel's labels may hold `=`, `+`, 8-bit bytes).

    replay.py SERVER [--source ADDR] [--timeout 1.0] < stream
"""
import argparse
import json
import socket
import sys

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("server")
    parser.add_argument("--source")
    parser.add_argument("--timeout", type=float, default=1.0)
    args = parser.parse_args()
    for line in sys.stdin:
        hex_name, qtype = line.split()
        labels = [label for label in bytes.fromhex(hex_name).split(b".") if label]
        query = dns.message.make_query(dns.name.Name(labels + [b""]), dns.rdatatype.from_text(qtype))
        try:
            response = dns.query.udp(query, args.server, timeout=args.timeout, source=args.source)
            print(json.dumps({"rcode": dns.rcode.to_text(response.rcode()),
                              "answers": sum(len(rrset) for rrset in response.answer)}), flush=True)
        except dns.exception.Timeout:
            print(json.dumps({"rcode": "TIMEOUT"}), flush=True)
        except (OSError, dns.exception.DNSException) as error:
            print(json.dumps({"rcode": "ERROR", "error": str(error)}), flush=True)


if __name__ == "__main__":
    main()
