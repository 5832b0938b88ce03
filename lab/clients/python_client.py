#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Looks names up one after another with a Python DNS library, on one resolver
object as an application would, and prints per name the addresses or the
library's error and how long it took, as JSON lines.

    python_client.py pycares|dnspython SERVER udp|tcp TIMEOUT|- TRIES|- A:NAME|AAAA:NAME ...

pycares is c-ares (>= 1.33 from PyPI, EDNS on, as applications using c-ares
do); dnspython is dns.resolver. TIMEOUT (seconds) and TRIES "-" keep the
library's defaults.
"""
import json
import sys
import threading
import time


def pycares_lookups(server: str, tcp: bool, timeout: str, tries: str):
    import pycares

    options = {"servers": [server], "flags": pycares.ARES_FLAG_EDNS | (pycares.ARES_FLAG_USEVC if tcp else 0)}
    if timeout != "-":
        options["timeout"] = float(timeout)
    if tries != "-":
        options["tries"] = int(tries)
    channel = pycares.Channel(**options)

    def lookup(qtype: str, name: str) -> tuple[list[str], str | None]:
        done, outcome = threading.Event(), {}

        def answered(result, error):
            if error:
                outcome["error"] = pycares.errno.errorcode.get(error, str(error))
            else:
                # c-ares 1.34 answers with the whole answer section: keep addresses only.
                outcome["addresses"] = [r.data.addr for r in result.answer if hasattr(r.data, "addr")]
            done.set()

        channel.query(name, pycares.QUERY_TYPE_AAAA if qtype == "AAAA" else pycares.QUERY_TYPE_A, callback=answered)
        if not done.wait(timeout=120):  # a safety net only: c-ares's own timeouts decide
            return [], "no callback"
        return outcome.get("addresses", []), outcome.get("error")

    return lookup


def dnspython_lookups(server: str, tcp: bool, timeout: str, tries: str):
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server]
    if timeout != "-":
        resolver.timeout = resolver.lifetime = float(timeout)

    def lookup(qtype: str, name: str) -> tuple[list[str], str | None]:
        try:
            answer = resolver.resolve(name, qtype, tcp=tcp, search=False)
            return [record.address for record in answer], None
        except dns.exception.DNSException as error:
            return [], type(error).__name__

    return lookup


def main() -> None:
    library, server, transport, timeout, tries, *queries = sys.argv[1:]
    make = {"pycares": pycares_lookups, "dnspython": dnspython_lookups}[library]
    lookup = make(server, transport == "tcp", timeout, tries)
    for query in queries:
        qtype, name = query.split(":", 1)
        started = time.monotonic()
        addresses, error = lookup(qtype, name)
        if not addresses and not error:
            error = "EMPTY"  # success without an address (c-ares given a CNAME and nothing for its target)
        line = {"name": name, "type": qtype, "seconds": round(time.monotonic() - started, 3), "addresses": addresses}
        if error:
            line["error"] = error
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
