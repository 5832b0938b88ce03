#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The lab's upstream resolver: answers every name, and records each query it
receives (one line: name type) so tests can prove what did or did not get past
the gateway.

Answers: A 203.0.113.7, AAAA 2001:db8:ff::7, TXT "upstream", other types NOERROR
with no data; except `sinkhole.lab.example`, the target of the lab's OVERRIDE
CNAME rules, which has A 203.0.113.53 and AAAA 2001:db8:ff::53 so that a test
can tell the target's address from any other name's; and, for the demo's
answer inspection, `cloaked.lab.example` (A: a CNAME to c2.malware.example,
then 203.0.113.66) and `rebind.lab.example` (A 192.168.1.66). Runs until killed.
"""
import socket
import sys
import threading

import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

ANSWERS = {
    dns.rdatatype.A: "203.0.113.7",
    dns.rdatatype.AAAA: "2001:db8:ff::7",
    dns.rdatatype.TXT: '"upstream"',
}
# The CNAME target of OVERRIDE CNAME tests: addresses no other name has.
SINKHOLE_NAME = dns.name.from_text("sinkhole.lab.example")
SINKHOLE_ANSWERS = {
    dns.rdatatype.A: "203.0.113.53",
    dns.rdatatype.AAAA: "2001:db8:ff::53",
}
# The demo's answers: a chain into a blocked name, and a private address for a public name.
CLOAKED_NAME, CLOAKED_TARGET = dns.name.from_text("cloaked.lab.example"), dns.name.from_text("c2.malware.example")
REBIND_NAME = dns.name.from_text("rebind.lab.example")


def answer(wire: bytes) -> bytes | None:
    try:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
    except Exception:
        return None
    response.flags |= dns.flags.RA
    question = query.question[0] if query.question else None
    if question is not None and question.rdtype == dns.rdatatype.A and question.name in (CLOAKED_NAME, REBIND_NAME):
        owner = question.name
        if owner == CLOAKED_NAME:
            response.answer.append(dns.rrset.from_text(owner, 60, dns.rdataclass.IN, dns.rdatatype.CNAME,
                                                       CLOAKED_TARGET.to_text()))
            owner = CLOAKED_TARGET
        address = "203.0.113.66" if question.name == CLOAKED_NAME else "192.168.1.66"
        response.answer.append(dns.rrset.from_text(owner, 60, dns.rdataclass.IN, dns.rdatatype.A, address))
    elif question is not None and question.rdtype in ANSWERS:
        answers = SINKHOLE_ANSWERS if question.name == SINKHOLE_NAME and question.rdtype in SINKHOLE_ANSWERS else ANSWERS
        response.answer.append(
            dns.rrset.from_text(question.name, 60, dns.rdataclass.IN, question.rdtype, answers[question.rdtype]))
    return response.to_wire()


def record(wire: bytes, peer: str, log, lock: threading.Lock, transport: str = "") -> None:
    """One log line per query: name, type, peer (and "tcp")."""
    try:
        question = dns.message.from_wire(wire).question[0]
        line = f"{question.name.to_text().lower()} {dns.rdatatype.to_text(question.rdtype)} {peer}"
    except Exception:
        line = f"<undecodable {len(wire)} bytes> - {peer}"
    with lock:
        log.write(line + (f" {transport}" if transport else "") + "\n")
        log.flush()


def serve(family: int, address: str, log, lock: threading.Lock) -> None:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, 53))
    while True:
        wire, peer = sock.recvfrom(65535)
        record(wire, peer[0], log, lock)
        reply = answer(wire)
        if reply is not None:
            sock.sendto(reply, peer)


def serve_tcp(family: int, address: str, log, lock: threading.Lock) -> None:
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, 53))
    listener.listen(64)
    while True:
        connection, peer = listener.accept()
        threading.Thread(target=tcp_connection, args=(connection, peer, log, lock), daemon=True).start()


def tcp_connection(connection: socket.socket, peer, log, lock: threading.Lock) -> None:
    """RFC 7766: each message is preceded by its length; several per connection."""
    buffered = b""
    connection.settimeout(10)
    try:
        while True:
            chunk = connection.recv(65535)
            if not chunk:
                return
            buffered += chunk
            while len(buffered) >= 2 and len(buffered) >= 2 + int.from_bytes(buffered[:2], "big"):
                length = int.from_bytes(buffered[:2], "big")
                wire, buffered = buffered[2:2 + length], buffered[2 + length:]
                record(wire, peer[0], log, lock, "tcp")
                reply = answer(wire)
                if reply is not None:
                    connection.sendall(len(reply).to_bytes(2, "big") + reply)
    except OSError:
        return
    finally:
        connection.close()


def main() -> None:
    log_path, v4, v6 = sys.argv[1], sys.argv[2], sys.argv[3]
    lock = threading.Lock()
    with open(log_path, "a", buffering=1) as log:
        threads = [threading.Thread(target=serve, args=(socket.AF_INET, v4, log, lock), daemon=True),
                   threading.Thread(target=serve, args=(socket.AF_INET6, v6, log, lock), daemon=True),
                   threading.Thread(target=serve_tcp, args=(socket.AF_INET, v4, log, lock), daemon=True),
                   threading.Thread(target=serve_tcp, args=(socket.AF_INET6, v6, log, lock), daemon=True)]
        for thread in threads:
            thread.start()
        print("ready", flush=True)
        for thread in threads:
            thread.join()


if __name__ == "__main__":
    main()
