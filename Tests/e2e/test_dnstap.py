# SPDX-License-Identifier: GPL-2.0-or-later
"""dnstap: decisions reach a Frame Streams collector (fstrm_capture) as
CLIENT_QUERY / CLIENT_RESPONSE messages with dnsgate's rule in their Policy,
read back with dnstap-ldns and with a small reader here; and dnsgate keeps
enforcing, counting what it drops, when the collector is absent or stalls."""
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import dns.message
import pytest

from lab import CLIENT_V4, UPSTREAM_V4, terminate, wait_until

CONFIG = """
queues: "0-1"
stats_socket: {socket}
dnstap: {dnstap}
domain_lists:
  - name: bad
    domains: ["*.bad.example"]
  - name: fine
    domains: ["ok.fine.example"]
rule_groups:
  - name: base
    priority: 1
    rules:
      - {{name: allow-fine, priority: 1, domain_list: fine, action: ALLOW}}
      - {{name: block-bad, priority: 2, domain_list: bad, action: BLOCK}}
"""

# dnstap.proto's numbers (Message.Type, Policy.Action, Policy.Match).
CLIENT_QUERY, CLIENT_RESPONSE = 5, 6
ACTION_NXDOMAIN, ACTION_PASS = 1, 3
MATCH_QNAME, MATCH_RESPONSE_IP = 1, 3


# -- a small Frame Streams file and protobuf reader ---------------------------------
def read_frames(path: Path) -> list[bytes]:
    """Data frames of a Frame Streams file (control frames skipped)."""
    data, offset, frames = path.read_bytes(), 0, []
    while offset + 4 <= len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        offset += 4
        if length == 0:  # escape: a control frame follows, its length first
            (control_length,) = struct.unpack_from(">I", data, offset)
            offset += 4 + control_length
            continue
        frames.append(data[offset:offset + length])
        offset += length
    return frames


def read_varint(data: bytes, offset: int) -> tuple[int, int]:
    value, shift = 0, 0
    for _ in range(10):
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, offset
    raise ValueError("varint longer than 10 bytes")


def protobuf_fields(data: bytes) -> dict[int, list]:
    """Field number to values: ints for varint and fixed fields, bytes for the rest."""
    fields: dict[int, list] = {}
    offset = 0
    while offset < len(data):
        key, offset = read_varint(data, offset)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, offset = read_varint(data, offset)
        elif wire == 1:
            value, offset = struct.unpack_from("<Q", data, offset)[0], offset + 8
        elif wire == 5:
            value, offset = struct.unpack_from("<I", data, offset)[0], offset + 4
        elif wire == 2:
            length, offset = read_varint(data, offset)
            value, offset = data[offset:offset + length], offset + length
        else:
            raise ValueError(f"wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def decode_dnstap(frame: bytes) -> dict:
    """The fields of a Dnstap frame the tests look at."""
    top = protobuf_fields(frame)
    message = protobuf_fields(top[14][0])
    policy = protobuf_fields(message[15][0]) if 15 in message else {}
    first = lambda fields, number: fields.get(number, [None])[0]  # noqa: E731
    return {
        "identity": first(top, 1), "version": first(top, 2),
        "type": first(message, 1), "family": first(message, 2), "protocol": first(message, 3),
        "query_address": first(message, 4), "response_address": first(message, 5),
        "query_port": first(message, 6), "response_port": first(message, 7),
        "query_time": first(message, 8), "query_message": first(message, 10),
        "response_message": first(message, 14),
        "policy": {"type": first(policy, 1), "rule": first(policy, 2), "action": first(policy, 3),
                   "match": first(policy, 4), "value": first(policy, 5)} if policy else None,
    }


# -- collectors -------------------------------------------------------------------------
def start_capture(lab, output: Path, *listen: str) -> subprocess.Popen:
    """fstrm_capture in the gateway namespace (`ip netns exec` execs it: the PID is its own)."""
    process = subprocess.Popen(["ip", "netns", "exec", lab.gateway, "fstrm_capture", "-t", "protobuf:dnstap.Dnstap",
                                *listen, "-w", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lab.processes.append(process)
    return process


def stop_capture(process: subprocess.Popen) -> None:
    """SIGINT: fstrm_capture closes its file whole."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        terminate(process)


def blocked(lab, name: str) -> bool:
    return "status: NXDOMAIN" in lab.dig(name)


def dnstap_stats(lab) -> dict:
    return lab.stats()["dnstap"]


# -- tests ------------------------------------------------------------------------------
def test_decisions_reach_a_unix_socket_collector_even_one_started_late(lab):
    tap = lab.dir / "tap.sock"
    capture_file = lab.dir / "unix.fstrm"
    config = lab.write_config(CONFIG.format(
        socket=lab.socket_path,
        dnstap=f"{{unix: {tap}, identity: lab-gw, actions: [BLOCK, ALLOW, NO_MATCH]}}"), "dnstap-unix.yaml")
    lab.apply_rules()
    lab.start_dnsgate(config)
    capture = None
    try:
        # No collector yet: the decision waits in the buffer, the query is blocked all the same.
        assert blocked(lab, "early.bad.example")
        assert dnstap_stats(lab)["connected"] is False
        capture = start_capture(lab, capture_file, "-u", str(tap))
        wait_until(lambda: dnstap_stats(lab)["connected"], timeout=15)  # within the reconnect backoff
        assert blocked(lab, "www.bad.example")
        assert blocked(lab, "Mixed.Bad.Example")
        assert "status: NOERROR" in lab.dig("ok.fine.example")
        assert "status: NOERROR" in lab.dig("unlisted.example")
        # 3 blocked queries (2 frames each), an ALLOW and a NO_MATCH (one each).
        wait_until(lambda: dnstap_stats(lab)["frames"] >= 8, timeout=10)
        stats = dnstap_stats(lab)
        assert stats["dropped"] == 0 and stats["buffered"] == 0 and stats.get("last_error") is None
        metrics = lab.cli("stats", "--socket", str(lab.socket_path), "--metrics").stdout
        lab.stop_dnsgate()  # STOP, FINISH: the stream ends whole
    finally:
        lab.stop_dnsgate()
        lab.remove_rules()
        if capture is not None:
            stop_capture(capture)

    text = subprocess.run(["dnstap-ldns", "-r", str(capture_file), "-y"], capture_output=True, text=True,
                          timeout=30, check=True).stdout
    assert "type: CLIENT_QUERY" in text and "type: CLIENT_RESPONSE" in text, text
    assert "www.bad.example." in text and "early.bad.example." in text
    assert "rcode: NXDOMAIN" in text, text
    assert 'identity: "lab-gw"' in text

    messages = [decode_dnstap(frame) for frame in read_frames(capture_file)]
    by_name = {}
    for message in messages:
        dns_bytes = message["query_message"] or message["response_message"]
        name = dns.message.from_wire(dns_bytes).question[0].name.to_text()
        by_name.setdefault(name, []).append(message)
    assert set(by_name) >= {"early.bad.example.", "www.bad.example.", "Mixed.Bad.Example.", "ok.fine.example.",
                            "unlisted.example."}, by_name.keys()

    query, response = by_name["www.bad.example."]
    assert query["type"] == CLIENT_QUERY and response["type"] == CLIENT_RESPONSE
    assert query["identity"] == b"lab-gw" and query["version"].startswith(b"dnsgate ")
    assert query["family"] == 1 and query["protocol"] == 1  # INET, UDP
    assert query["query_address"] == socket.inet_aton(CLIENT_V4)
    assert query["response_address"] == socket.inet_aton(UPSTREAM_V4) and query["response_port"] == 53
    assert abs(query["query_time"] - time.time()) < 600
    assert query["policy"] == {"type": b"dnsgate", "rule": b"base/block-bad", "action": ACTION_NXDOMAIN,
                               "match": MATCH_QNAME, "value": b"www.bad.example."}
    asked = dns.message.from_wire(query["query_message"])
    forged = dns.message.from_wire(response["response_message"])
    assert forged.id == asked.id and forged.rcode() == 3  # NXDOMAIN, to the query it answers

    assert by_name["Mixed.Bad.Example."][0]["policy"]["value"] == b"Mixed.Bad.Example.", "the name as asked"
    (allowed,) = by_name["ok.fine.example."]
    assert allowed["type"] == CLIENT_QUERY and allowed["policy"]["action"] == ACTION_PASS
    assert allowed["policy"]["rule"] == b"base/allow-fine"
    (unmatched,) = by_name["unlisted.example."]
    assert unmatched["type"] == CLIENT_QUERY and unmatched["policy"] is None
    assert "dnsgate_dnstap_connected 1\n" in metrics
    assert "dnsgate_dnstap_frames_total " in metrics and "dnsgate_dnstap_dropped_total 0\n" in metrics


def test_decisions_reach_a_tcp_collector(lab):
    capture_file = lab.dir / "tcp.fstrm"
    capture = start_capture(lab, capture_file, "-a", "198.51.100.1", "-p", "6053")
    config = lab.write_config(CONFIG.format(socket=lab.socket_path, dnstap='{tcp: "198.51.100.1:6053"}'),
                              "dnstap-tcp.yaml")
    lab.apply_rules()
    try:
        lab.start_dnsgate(config)
        wait_until(lambda: dnstap_stats(lab)["connected"], timeout=15)
        assert blocked(lab, "tcp.bad.example")
        assert "status: NXDOMAIN" in lab.dig("+tcp", "stream.bad.example")  # through the TCP relay
        assert "status: NOERROR" in lab.dig("ok.fine.example")  # ALLOW: not in the default actions
        wait_until(lambda: dnstap_stats(lab)["frames"] >= 4, timeout=10)
        lab.stop_dnsgate()
    finally:
        lab.stop_dnsgate()
        lab.remove_rules()
        stop_capture(capture)
    messages = [decode_dnstap(frame) for frame in read_frames(capture_file)]
    assert [m["type"] for m in messages] == [CLIENT_QUERY, CLIENT_RESPONSE] * 2
    assert [m["protocol"] for m in messages] == [1, 1, 2, 2]  # UDP, then TCP
    assert all(m["policy"]["rule"] == b"base/block-bad" for m in messages)
    assert dns.message.from_wire(messages[3]["response_message"]).rcode() == 3
    text = subprocess.run(["dnstap-ldns", "-r", str(capture_file)], capture_output=True, text=True, timeout=30,
                          check=True).stdout
    assert "CQ" in text and "CR" in text and "tcp.bad.example" in text, text


@pytest.mark.parametrize("collector", ["absent", "stalled"])
def test_enforcing_goes_on_and_drops_are_counted_without_a_working_collector(lab, collector):
    tap = lab.dir / f"{collector}.sock"
    listener = None
    if collector == "stalled":
        # Accepts connections (the kernel does, from the backlog) but never reads or answers READY.
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(tap))
        listener.listen(4)
    config = lab.write_config(CONFIG.format(socket=lab.socket_path, dnstap=f"{{unix: {tap}, buffer_frames: 16}}"),
                              f"dnstap-{collector}.yaml")
    lab.apply_rules()
    try:
        lab.start_dnsgate(config)
        started = time.monotonic()
        for index in range(12):  # 24 frames for a buffer of 16
            assert blocked(lab, f"n{index}.bad.example"), f"query {index} not blocked"
        assert time.monotonic() - started < 30, "queries were slowed down by the collector"
        # Drops as soon as the log thread has the records; the error of a stalled
        # collector once it has not answered READY for 5 s.
        wait_until(lambda: lab.stats()["dnstap"]["dropped"] >= 8 and lab.stats()["dnstap"].get("last_error"), timeout=15)
        stats = lab.stats()
        assert stats["dnstap"]["connected"] is False
        assert stats["dnstap"]["dropped"] >= 8 and stats["dnstap"]["buffered"] == 16, stats["dnstap"]
        assert stats["dnstap"].get("last_error"), stats["dnstap"]
        assert stats["verdicts"]["block"] >= 12
        table = lab.cli("stats", "--socket", str(lab.socket_path)).stdout
        assert "dnstap_error" in table and "dropped" in table, table
    finally:
        lab.stop_dnsgate()
        lab.remove_rules()
        if listener is not None:
            listener.close()
    assert "dnstap: " in lab.dnsgate_stderr()


def test_a_block_on_a_resolvers_answer_is_the_client_response_it_got(lab):
    """Decided on the answer (lab/upstream.py answers every A with 203.0.113.7):
    the message is the forged answer that replaced the resolver's, and Policy
    names the address that matched."""
    tap = lab.dir / "answers.sock"
    capture_file = lab.dir / "answers.fstrm"
    capture = start_capture(lab, capture_file, "-u", str(tap))
    config = lab.write_config(f"""
queues: "0-1"
stats_socket: {lab.socket_path}
dnstap: {{unix: {tap}, actions: [BLOCK]}}
ip_lists:
  - name: lab-answers
    addresses: ["203.0.113.7/32"]
rule_groups:
  - name: base
    priority: 1
    rules:
      - {{name: block-address, priority: 1, ip_list: lab-answers, action: BLOCK}}
""", "dnstap-answers.yaml")
    lab.apply_rules()
    try:
        wait_until(tap.exists, timeout=10)
        lab.start_dnsgate(config)
        wait_until(lambda: dnstap_stats(lab)["connected"], timeout=15)
        assert blocked(lab, "answered.example")
        wait_until(lambda: dnstap_stats(lab)["frames"] >= 1, timeout=10)
        lab.stop_dnsgate()
    finally:
        lab.stop_dnsgate()
        lab.remove_rules()
        stop_capture(capture)
    (message,) = [decode_dnstap(frame) for frame in read_frames(capture_file)]
    assert message["type"] == CLIENT_RESPONSE
    assert message["query_address"] == socket.inet_aton(CLIENT_V4)
    assert message["response_address"] == socket.inet_aton(UPSTREAM_V4)
    assert message["policy"] == {"type": b"dnsgate", "rule": b"base/block-address", "action": ACTION_NXDOMAIN,
                                 "match": MATCH_RESPONSE_IP, "value": b"203.0.113.7"}
    forged = dns.message.from_wire(message["response_message"])
    assert forged.rcode() == 3 and forged.question[0].name.to_text() == "answered.example."
    assert not forged.answer, "the resolver's address is not in what the client got"
