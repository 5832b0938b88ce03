# SPDX-License-Identifier: GPL-2.0-or-later
"""Faults around the daemon never switch enforcement off (issue #10).

Each test injects one fault an SRE would meet (a full disk or read-only file
system under the query log, a FIFO with no reader or a reader that leaves,
signals while the policy loads, a second instance, a stats_socket path that is
a regular file) and asserts that the daemon lives, blocked names stay blocked,
and the loss is counted and reported instead of hidden.
"""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab import CLIENT_V4, UPSTREAM_V4

CONFIG = """queues: "0-1"
stats_socket: {socket}
tcp_port: {tcp_port}
{extra}
domain_lists: [{{name: bad, file: {list_file}}}]
rule_groups: [{{name: g, priority: 1, rules: [{{name: block-bad, priority: 1, domain_list: bad, action: BLOCK}}]}}]
"""

# Sends `count` queries for distinct names under the blocked zone and prints
# "answers nxdomain resolved timeouts" as the client saw them.
FLOOD = """import sys, dns.message, dns.query, dns.rcode, dns.exception
count, prefix = int(sys.argv[1]), sys.argv[2]
answers = nx = resolved = timeouts = 0
for i in range(count):
    q = dns.message.make_query(f"n{i}.{prefix}.bad.example", "A")
    try:
        r = dns.query.udp(q, "%s", timeout=1, source="%s")
    except dns.exception.Timeout:
        timeouts += 1
        continue
    answers += 1
    nx += r.rcode() == dns.rcode.NXDOMAIN
    resolved += bool(r.answer)
print(answers, nx, resolved, timeouts)
""" % (UPSTREAM_V4, CLIENT_V4)


def write_config(lab, name, extra="", socket=None, tcp_port=5053, list_text="*.bad.example\n"):
    list_file = lab.dir / f"{name}.txt"
    list_file.write_text(list_text)
    return lab.write_config(CONFIG.format(socket=socket or lab.socket_path, tcp_port=tcp_port, extra=extra,
                                          list_file=list_file), f"{name}.yaml")


def flood(lab, count, prefix):
    out = lab.ns(lab.client, "/usr/bin/python3", "-c", FLOOD, str(count), prefix, timeout=count * 2 + 30).stdout
    answers, nx, resolved, timeouts = map(int, out.split())
    return {"answers": answers, "nxdomain": nx, "resolved": resolved, "timeouts": timeouts}


@pytest.fixture
def rules(lab):
    lab.apply_rules()
    yield lab
    lab.stop_dnsgate()
    lab.remove_rules()


@pytest.fixture
def small_mount(lab):
    """A 64 KiB tmpfs: a disk that fills after a few hundred log lines."""
    mount = lab.dir / "small"
    mount.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_under_the_query_log_costs_records_not_enforcement(rules, small_mount):
    lab = rules
    log = small_mount / "queries.log"
    config = write_config(lab, "fulldisk", extra=f"query_log: {{path: {log}, actions: [BLOCK, ALLOW]}}")
    daemon = lab.start_dnsgate(config)
    seen = flood(lab, 600, "full")
    assert daemon.poll() is None, f"dnsgate died: {lab.dnsgate_stderr()[-2000:]}"
    assert seen["resolved"] == 0 and seen["nxdomain"] == seen["answers"] == 600, seen
    time.sleep(0.5)  # the log thread's last round
    stats = lab.stats()
    query_log = stats["query_log"]
    assert query_log["lost"] > 0, query_log
    assert query_log["written"] + query_log["lost"] + stats["errors"]["query_log_dropped"] == 600, query_log
    assert "No space left" in (query_log.get("last_error") or "") or "ENOSPC" in (query_log.get("last_error") or "")
    assert "query log:" in lab.dnsgate_stderr()
    whole_lines = log.read_text().count("\n")
    assert whole_lines == query_log["written"], "a line was counted as written but is not whole in the file"
    # Room again: writing resumes and says so.
    log.write_text("")
    time.sleep(QUERY_LOG_RETRY)
    assert flood(lab, 20, "again")["nxdomain"] == 20
    time.sleep(0.5)
    after = lab.stats()["query_log"]
    assert after["written"] > query_log["written"] and after.get("last_error") is None, after
    assert "query log: writing again" in lab.dnsgate_stderr()


QUERY_LOG_RETRY = 6  # seconds: the writer retries a failed output every 5 s


def test_a_read_only_file_system_is_reported_and_counted(rules, small_mount):
    lab = rules
    log = small_mount / "ro.log"
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    config = write_config(lab, "readonly", extra=f"query_log: {{path: {log}, actions: [BLOCK]}}")
    daemon = lab.start_dnsgate(config)
    seen = flood(lab, 200, "ro")
    assert seen["nxdomain"] == 200 and daemon.poll() is None
    time.sleep(0.5)
    query_log = lab.stats()["query_log"]
    assert query_log["lost"] == 200 and query_log["written"] == 0, query_log
    assert "Read-only" in (query_log.get("last_error") or ""), query_log


def test_a_fifo_nobody_reads_neither_blocks_start_nor_stop(rules):
    lab = rules
    fifo = lab.dir / "nobody.fifo"
    os.mkfifo(fifo)
    config = write_config(lab, "fifo", extra=f"query_log: {{path: {fifo}, actions: [BLOCK]}}")
    daemon = lab.start_dnsgate(config)
    assert flood(lab, 20, "fifo")["nxdomain"] == 20
    time.sleep(0.3)
    assert lab.stats()["query_log"]["lost"] == 20
    started = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=10)
    assert time.monotonic() - started < 4, "SIGTERM waited on the FIFO"


def test_a_fifo_reader_that_leaves_costs_records_not_the_daemon(rules):
    lab = rules
    fifo = lab.dir / "reader.fifo"
    os.mkfifo(fifo)
    received = lab.dir / "received.log"
    reader = subprocess.Popen(["sh", "-c", f"exec cat '{fifo}' > '{received}'"])
    try:
        config = write_config(lab, "fiforeader", extra=f"query_log: {{path: {fifo}, actions: [BLOCK]}}")
        daemon = lab.start_dnsgate(config)
        assert flood(lab, 10, "read")["nxdomain"] == 10
        time.sleep(0.5)
        assert len(received.read_text().splitlines()) == 10, "the reader did not get the records"
        reader.terminate()
        reader.wait(timeout=5)
        seen = flood(lab, 30, "gone")
        assert seen["nxdomain"] == 30 and daemon.poll() is None, lab.dnsgate_stderr()[-2000:]
        time.sleep(0.5)
        assert lab.stats()["query_log"]["lost"] >= 29, lab.stats()["query_log"]
    finally:
        if reader.poll() is None:
            reader.kill()


def test_stdout_piped_to_a_reader_that_exits_is_no_sigpipe_death(rules):
    lab = rules
    config = write_config(lab, "stdout", extra="query_log: {path: '-', actions: [BLOCK]}")
    reader = subprocess.Popen(["head", "-c", "200"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    daemon = subprocess.Popen(["ip", "netns", "exec", lab.gateway, str(lab.binary), "run", "--config", str(config)],
                              stdout=reader.stdin, stderr=open(lab.dir / "dnsgate.stderr", "a"))
    reader.stdin.close()
    lab.processes.append(daemon)
    try:
        deadline = time.monotonic() + 10
        while lab.try_stats() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        seen = flood(lab, 50, "pipe")
        reader.wait(timeout=5)  # it read its 200 bytes and left
        seen_after = flood(lab, 50, "pipe2")
        assert daemon.poll() is None, f"dnsgate died with {daemon.returncode}"
        assert seen["nxdomain"] == 50 and seen_after["nxdomain"] == 50
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)


def test_signals_while_the_policy_loads_do_not_kill_it(rules):
    lab = rules
    names = "".join(f"n{i}.loading.example\n" for i in range(1_500_000))
    config = write_config(lab, "loading", list_text="*.bad.example\n" + names)
    daemon = subprocess.Popen(["ip", "netns", "exec", lab.gateway, str(lab.binary), "run", "--config", str(config)],
                              stdout=subprocess.DEVNULL, stderr=open(lab.dir / "dnsgate.stderr", "a"))
    lab.processes.append(daemon)
    lab.dnsgate = daemon
    time.sleep(0.3)
    assert lab.try_stats() is None, "the policy loaded too fast for this test to mean anything"
    daemon.send_signal(signal.SIGHUP)
    daemon.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 60
    while lab.try_stats() is None and daemon.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert daemon.poll() is None, f"dnsgate exited with {daemon.returncode} after a signal during load"
    assert flood(lab, 5, "sig")["nxdomain"] == 5


def test_a_second_instance_fails_and_leaves_the_first_alone(rules):
    lab = rules
    config = write_config(lab, "first")
    first = lab.start_dnsgate(config)
    # Same queues: refused by the kernel, and said so.
    second = lab.ns(lab.gateway, str(lab.binary), "run", "--config", str(config), check=False, timeout=30)
    assert second.returncode == 1, second
    assert "NFQUEUE 0" in second.stderr and "another process" in second.stderr, second.stderr
    # Other queues and port, same stats socket: refused before it touches the socket.
    other = write_config(lab, "other", tcp_port=5054).read_text().replace('queues: "0-1"', 'queues: "5"')
    other_path = lab.write_config(other, "other-queues.yaml")
    third = lab.ns(lab.gateway, str(lab.binary), "run", "--config", str(other_path), check=False, timeout=30)
    assert third.returncode == 1 and "another dnsgate answers there" in third.stderr, third.stderr
    assert first.poll() is None and lab.socket_path.exists()
    assert lab.try_stats() is not None, "the first instance lost its stats socket"
    assert flood(lab, 10, "two")["nxdomain"] == 10


def test_a_stats_socket_path_that_is_a_file_is_never_deleted(rules):
    lab = rules
    precious = lab.dir / "precious.data"
    precious.write_text("not a socket\n")
    config = write_config(lab, "precious", socket=precious)
    result = lab.ns(lab.gateway, str(lab.binary), "run", "--config", str(config), check=False, timeout=30)
    assert result.returncode == 1
    assert "exists and is not a socket" in result.stderr, result.stderr
    assert precious.read_text() == "not a socket\n"


def test_sigterm_unbinds_the_queues_at_once(rules):
    """Fail-closed rules: once dnsgate is told to stop, queries are dropped by
    the kernel (no queue bound) rather than waiting in a queue nobody reads."""
    lab = rules
    config = write_config(lab, "term")
    daemon = lab.start_dnsgate(config)
    started = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=10)
    assert time.monotonic() - started < 3
    bound = Path("/proc/net/netfilter/nfnetlink_queue")
    text = lab.ns(lab.gateway, "cat", str(bound), check=False).stdout
    assert text.strip() == "", f"queues still bound after exit: {text}"
