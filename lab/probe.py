#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Sends one DNS query over UDP and prints the response's fields as JSON
(or {"timeout": true}). Used by the end-to-end tests from the client namespace.

    probe.py SERVER NAME [--type A] [--source ADDR] [--id N] [--cookie HEX] [--no-edns] [--cd]
"""
import argparse
import json
import socket

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("server")
    parser.add_argument("name")
    parser.add_argument("--type", default="A")
    parser.add_argument("--source")
    parser.add_argument("--id", type=int)
    parser.add_argument("--cookie", help="COOKIE option data in hex: a client cookie (16 digits), or client and server cookie")
    parser.add_argument("--no-edns", action="store_true")
    parser.add_argument("--cd", action="store_true")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()

    options = []
    if args.cookie:
        options.append(dns.edns.GenericOption(dns.edns.COOKIE, bytes.fromhex(args.cookie)))
    query = dns.message.make_query(args.name, args.type, use_edns=False if args.no_edns else 0, options=options,
                                   payload=1232)
    if args.id is not None:
        query.id = args.id
    if args.cd:
        query.flags |= dns.flags.CD
    try:
        response = dns.query.udp(query, args.server, timeout=args.timeout, source=args.source,
                                 ignore_unexpected=True)
    except dns.exception.Timeout:
        print(json.dumps({"timeout": True}))
        return
    wire_question = response.to_wire()[12:]
    result = {
        "timeout": False,
        "id": response.id,
        "rcode": dns.rcode.to_text(response.rcode()),
        "flags": dns.flags.to_text(response.flags).split(),
        "question": [q.to_text() for q in response.question],
        "question_name_wire_case": response.question[0].name.to_text() if response.question else None,
        "answer": [{"name": r.name.to_text(), "type": dns.rdatatype.to_text(r.rdtype), "ttl": r.ttl,
                    "data": [d.to_text() for d in r]} for r in response.answer],
        "authority": [{"name": r.name.to_text(), "type": dns.rdatatype.to_text(r.rdtype), "ttl": r.ttl,
                       "data": [d.to_text() for d in r]} for r in response.authority],
        "edns": response.edns,
        "ede": [],
        "cookie": None,
        "size": len(response.to_wire()),
    }
    for option in response.options:
        if option.otype == dns.edns.EDE:
            result["ede"].append({"code": int(option.code), "text": option.text})
        elif option.otype == dns.edns.COOKIE:
            data = option.to_wire() if hasattr(option, "to_wire") else option.data
            result["cookie"] = bytes(data).hex()
    del wire_question
    print(json.dumps(result))


if __name__ == "__main__":
    main()
