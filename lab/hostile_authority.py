#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A hostile authoritative server for `evil.test`, for answer inspection's
tests (lab/answers.py delegates the zone to it): it serves RDATA that real
resolvers pass on as they got it, because they do not check it.

    hint.evil.test  HTTPS  1 . ipv4hint=<6 bytes>            (broken: not whole addresses)
                           1 . alpn=h2 ipv4hint=192.168.1.30  (a private hint)
    any.evil.test   ANY    the broken HTTPS record, then A 192.168.1.40

Everything else under evil.test is NODATA. UDP and TCP on ADDRESS port 53,
until killed.

    hostile_authority.py ADDRESS
"""
import socket
import struct
import sys
import threading

import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

ZONE = dns.name.from_text("evil.test.")
HTTPS = 65
BROKEN_HINT = struct.pack("!HBHH", 1, 0, 4, 6) + bytes([198, 51, 100, 1, 0, 0])
PRIVATE_HINT = struct.pack("!HBHHB", 1, 0, 1, 3, 2) + b"h2" + struct.pack("!HH", 4, 4) + socket.inet_aton("192.168.1.30")


def https(name: dns.name.Name, *rdata: bytes) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(name, dns.rdataclass.IN, HTTPS)
    for raw in rdata:
        rrset.add(dns.rdata.GenericRdata(dns.rdataclass.IN, HTTPS, raw), ttl=5)
    return rrset


def answer(address: str, wire: bytes) -> bytes:
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    response.flags |= 0x0400  # authoritative
    name, qtype = query.question[0].name, query.question[0].rdtype
    soa = dns.rrset.from_text(ZONE, 5, "IN", "SOA", "ns.evil.test. hostmaster.evil.test. 1 60 60 60 5")
    text = name.to_text().lower()
    if text == "evil.test." and qtype == dns.rdatatype.NS:
        response.answer.append(dns.rrset.from_text(ZONE, 5, "IN", "NS", "ns.evil.test."))
    elif text == "evil.test." and qtype == dns.rdatatype.SOA:
        response.answer.append(soa)
    elif text == "ns.evil.test." and qtype == dns.rdatatype.A:
        response.answer.append(dns.rrset.from_text(name, 5, "IN", "A", address))
    elif text == "hint.evil.test." and qtype == HTTPS:
        response.answer.append(https(name, BROKEN_HINT, PRIVATE_HINT))
    elif text == "any.evil.test." and qtype in (HTTPS, dns.rdatatype.ANY):
        response.answer.append(https(name, BROKEN_HINT))
        if qtype == dns.rdatatype.ANY:
            response.answer.append(dns.rrset.from_text(name, 5, "IN", "A", "192.168.1.40"))
    else:
        response.authority.append(soa)
    return response.to_wire()


def serve_udp(address: str) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((address, 53))
    while True:
        data, peer = server.recvfrom(4096)
        try:
            server.sendto(answer(address, data), peer)
        except Exception as error:  # a query it cannot read: no answer
            print("udp:", error, flush=True)


def read_exactly(connection: socket.socket, count: int) -> bytes:
    """`count` bytes, however the stream splits them (at most `count` reads)."""
    data = b""
    for _ in range(count):
        if len(data) == count:
            break
        chunk = connection.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed mid-message")
        data += chunk
    return data


def serve_tcp(address: str) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, 53))
    server.listen(16)
    while True:
        connection, _ = server.accept()
        connection.settimeout(3)
        try:
            length = struct.unpack("!H", read_exactly(connection, 2))[0]
            out = answer(address, read_exactly(connection, length))
            connection.sendall(struct.pack("!H", len(out)) + out)
        except Exception as error:
            print("tcp:", error, flush=True)
        finally:
            connection.close()


if __name__ == "__main__":
    threading.Thread(target=serve_udp, args=(sys.argv[1],), daemon=True).start()
    print("ready", flush=True)
    serve_tcp(sys.argv[1])
