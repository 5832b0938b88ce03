# SPDX-License-Identifier: GPL-2.0-or-later
"""Faults of lists and feeds (issue #10): a list that collapses is refused by
`check` and by reload while the running policy stays in force; list files and
downloads are read within hard caps; a feed that stalls holds up neither
start-up, nor reload, nor the stats socket, nor shutdown, and in fail_mode
closed nothing passes undecided until every list has a copy; a relative
cache_dir with a bare --config name is enforced."""
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab import UPSTREAM_V4, wait_until

# Memory the daemon or `check` may reach at most, whatever the list or feed
# does (a debug build starts at a few tens of MB; the caps add one list at most).
MEMORY_BOUND_KB = 300 * 1024


@pytest.fixture
def fresh(lab):
    lab.apply_rules()
    yield lab
    lab.stop_dnsgate()
    lab.remove_rules()


@pytest.fixture
def fresh_closed(lab):
    lab.apply_rules("--closed")
    yield lab
    lab.stop_dnsgate()
    lab.remove_rules()


def rcode(client, name, timeout=2.0):
    response = client.probe(name, timeout=timeout)
    return "TIMEOUT" if response["timeout"] else response["rcode"]


def memory_high_water_kb(pid: int) -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))


def list_status(lab, name: str) -> dict:
    return next(entry for entry in lab.stats()["lists"] if entry["name"] == name)


def local_policy(lab, list_file: Path, extra: str = "", name: str = "local.yaml") -> Path:
    """One file list, blocked with NXDOMAIN; `extra` adds keys to the list."""
    return lab.write_config(f"""queues: "0-1"
stats_socket: {lab.socket_path}
domain_lists:
  - name: local
    file: {list_file}
{extra}rule_groups:
  - name: g
    priority: 1
    rules:
      - {{name: r, priority: 1, domain_list: local, action: BLOCK}}
""", name)


def feed_policy(lab, url: str, cache: Path, fail_mode: str = "open", refresh: str = "1s", extra: str = "",
                local: Path | None = None) -> Path:
    """A remote list (and optionally a local one), each blocked with NXDOMAIN."""
    lists = f"""  - name: remote
    url: {url}
    refresh: {refresh}
    format: domains
{extra}"""
    rules = "      - {name: remote, priority: 2, domain_list: remote, action: BLOCK}\n"
    if local:
        lists += f"  - {{name: local, file: {local}}}\n"
        rules += "      - {name: local, priority: 1, domain_list: local, action: BLOCK}\n"
    return lab.write_config(f"""queues: "0-1"
fail_mode: {fail_mode}
stats_socket: {lab.socket_path}
cache_dir: {cache}
domain_lists:
{lists}rule_groups:
  - name: g
    priority: 1
    rules:
{rules}""", "feed-faults.yaml")


def check(lab, config: Path) -> subprocess.CompletedProcess:
    return lab.cli("check", "--config", str(config), check=False)


def reload(lab) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = lab.cli("reload", "--socket", str(lab.socket_path), check=False)
    return result, time.monotonic() - started


# -- a list that collapses is refused ------------------------------------------------

COLLAPSES = {
    # Binary garbage where the list was (a NUL byte on line 2).
    "binary": lambda: b"blocked.faults.example\n" + b"\x00\x8f" + os.urandom(1 << 20),
    # A million lines of no list syntax around the one good line: mostly unreadable.
    "mostly-invalid": lambda: b"blocked.faults.example\n" + b"<td>not a list line</td>\n" * 1_000_000,
    # Truncated to nothing.
    "empty": lambda: b"",
}


@pytest.mark.parametrize("collapse", list(COLLAPSES))
def test_a_collapsed_list_fails_check_and_reload_and_the_running_policy_stays(fresh, client, collapse):
    lab = fresh
    listed = lab.dir / f"collapse-{collapse}.txt"
    listed.write_text("blocked.faults.example\n")
    config = local_policy(lab, listed)
    lab.start_dnsgate(config)
    assert rcode(client, "blocked.faults.example") == "NXDOMAIN"
    generation = lab.stats()["policy"]["generation"]

    listed.write_bytes(COLLAPSES[collapse]())
    checked = check(lab, config)
    assert checked.returncode == 1, checked.stdout
    errors = [line for line in checked.stdout.splitlines() if ": error: " in line]
    assert errors and all(line.startswith(str(listed)) for line in errors), checked.stdout
    if collapse == "binary":
        assert f"{listed}:2: error:" in checked.stdout and "binary content" in checked.stdout
    elif collapse == "mostly-invalid":
        assert f"{listed}:2: error:" in checked.stdout and "1000000 of its 1000001 lines" in checked.stdout
    else:
        assert "no entries" in checked.stdout and "allow_empty" in checked.stdout

    # SIGHUP, since a million lines take a debug build longer than the stats
    # socket's 3 s deadline for a `reload` reply.
    lab.dnsgate.send_signal(signal.SIGHUP)
    stats = wait_until(lambda: (s := lab.stats())["errors"]["reload_failures"] == 1 and s, timeout=30)
    assert stats["policy"]["generation"] == generation
    assert "reload failed; the running policy stays in force" in lab.dnsgate_stderr()
    assert f"{listed}:" in lab.dnsgate_stderr().split("reload failed", 1)[1]
    assert rcode(client, "blocked.faults.example") == "NXDOMAIN", "the running policy stays in force"
    if collapse != "mostly-invalid":
        result, _ = reload(lab)
        assert result.returncode == 1 and result.stdout.startswith("error: reload failed"), result.stdout
        assert str(listed) in result.stdout

    if collapse == "empty":
        # Saying that an empty list is meant makes it valid.
        meant = local_policy(lab, listed, extra="    allow_empty: true\n")
        config.write_text(meant.read_text())
        assert check(lab, config).returncode == 0
        result, _ = reload(lab)
        assert result.returncode == 0, result.stdout
        assert rcode(client, "blocked.faults.example") == "NOERROR"
    listed.unlink()


def test_a_feed_download_that_collapses_never_replaces_the_cached_copy(fresh, client):
    lab = fresh
    folder = lab.dir / "feed-collapse"
    folder.mkdir(exist_ok=True)
    (folder / "remote.txt").write_text("fed.faults.example\n")
    lab.start_feed_server(folder)
    cache = lab.dir / "cache-collapse"
    lab.start_dnsgate(feed_policy(lab, f"http://{UPSTREAM_V4}:8080/remote.txt", cache))
    wait_until(lambda: list_status(lab, "remote")["entries"] == 1)
    assert rcode(client, "fed.faults.example") == "NXDOMAIN"
    cached = (cache / "remote.list").read_bytes()

    for garbage, why in ((b"fed.faults.example\n\x00\x01\x02" + os.urandom(4096), "binary content"),
                         (b"fed.faults.example\n" + b"<p>maintenance</p>\n" * 5000, "lines are not domains syntax")):
        (folder / "remote.txt").write_bytes(garbage)
        status = wait_until(lambda: (s := list_status(lab, "remote"))["last_error"] and why in s["last_error"] and s,
                            timeout=10)
        assert status["last_error"].startswith("download refused"), status
        assert (cache / "remote.list").read_bytes() == cached, "the last good copy stays"
        assert rcode(client, "fed.faults.example") == "NXDOMAIN"
    assert "refused" in lab.dnsgate_stderr()


# -- bounded memory -----------------------------------------------------------------

def test_a_2_gib_list_file_is_refused_in_bounded_memory(fresh, client):
    lab = fresh
    listed = lab.dir / "small.txt"
    listed.write_text("blocked.faults.example\n")
    config = local_policy(lab, listed)
    lab.start_dnsgate(config)
    huge = lab.dir / "huge-sparse.txt"
    try:
        with open(huge, "wb") as out:
            out.truncate(2 << 30)  # sparse: no disk, but 2 GiB to whoever reads it
        config.write_text(config.read_text().replace(str(listed), str(huge)))

        process = subprocess.Popen([str(lab.binary), "check", "--config", str(config)], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        assert process.returncode == 1, out
        assert f"cannot read {huge}: 2147483648 bytes, more than max_size (268435456 bytes)" in out, out
        assert usage.ru_maxrss < MEMORY_BOUND_KB, f"check reached {usage.ru_maxrss} KB"

        result, _ = reload(lab)
        assert result.returncode == 1 and "more than max_size" in result.stdout, result.stdout
        assert rcode(client, "blocked.faults.example") == "NXDOMAIN", "the running policy stays in force"
        peak = memory_high_water_kb(lab.dnsgate.pid)
        assert peak < MEMORY_BOUND_KB, f"the daemon reached {peak} KB"
    finally:
        huge.unlink(missing_ok=True)


def test_a_feed_flooding_past_max_size_is_cut_off_in_bounded_memory(fresh, client):
    lab = fresh
    folder = lab.dir / "feed-flood"
    folder.mkdir(exist_ok=True)
    limit = 64 << 20
    (folder / "remote.txt").write_text("unused.faults.example\n")
    (folder / "remote.txt.flood").write_text(str(3 * limit))
    requests = lab.start_feed_server(folder)
    listed = lab.dir / "flood-local.txt"
    listed.write_text("blocked.faults.example\n")
    lab.start_dnsgate(feed_policy(lab, f"http://{UPSTREAM_V4}:8080/remote.txt", lab.dir / "cache-flood",
                                  refresh="1d", extra="    max_size: 64M\n", local=listed))
    status = wait_until(lambda: (s := list_status(lab, "remote"))["last_error"] and "max_size" in s["last_error"]
                        and s, timeout=30)
    assert "aborted" in status["last_error"] and status["entries"] == 0, status
    floods = [json.loads(line) for line in requests.read_text().splitlines() if "flood" in line]
    assert floods and floods[0]["sent"] < 3 * limit, f"the download was not cut off: {floods}"
    peak = memory_high_water_kb(lab.dnsgate.pid)
    print(f"\nflood: the feed sent {floods[0]['sent']} of {3 * limit} bytes; daemon peak {peak} KB")
    assert peak < MEMORY_BOUND_KB, f"the daemon reached {peak} KB"
    assert rcode(client, "blocked.faults.example") == "NXDOMAIN", "the rest of the policy is enforced"


# -- a feed that stalls ---------------------------------------------------------------

def stalled_feed(lab, name: str) -> tuple[Path, Path]:
    """A feed folder whose remote.txt stalls until `remote.txt.stall` is removed."""
    folder = lab.dir / name
    folder.mkdir(exist_ok=True)
    (folder / "remote.txt").write_text("stalled.faults.example\n")
    (folder / "remote.txt.stall").write_text("")
    return folder, lab.start_feed_server(folder)


def stalling(requests: Path) -> bool:
    return requests.exists() and '"stalling"' in requests.read_text()


def test_a_stalled_feed_in_fail_mode_closed_holds_up_nothing_and_passes_nothing_undecided(fresh_closed, client):
    lab = fresh_closed
    folder, requests = stalled_feed(lab, "feed-stall-closed")
    config = feed_policy(lab, f"http://{UPSTREAM_V4}:8080/remote.txt", lab.dir / "cache-stall-closed",
                         fail_mode="closed", refresh="1d")
    started = time.monotonic()
    lab.start_dnsgate(config)
    took = time.monotonic() - started
    assert took < 5, f"start-up took {took:.1f}s: it waited on the feed"
    wait_until(lambda: stalling(requests))
    remote = list_status(lab, "remote")
    assert remote["entries"] == 0 and "no copy yet" in remote["last_error"], remote

    # No list has all its names yet: a name no rule matches is dropped, not passed.
    assert rcode(client, "unlisted.faults.example", timeout=1.0) == "TIMEOUT"
    assert lab.stats()["verdicts"]["no_match_dropped"] >= 1

    # Neither reload nor the stats socket waits for the feed.
    result, took = reload(lab)
    assert result.returncode == 0 and took < 2.5, (result.stdout, took)
    started = time.monotonic()
    lab.stats()
    assert time.monotonic() - started < 2

    # The list arrives: it is enforced, and names no rule matches pass again.
    (folder / "remote.txt.stall").unlink()
    wait_until(lambda: list_status(lab, "remote")["entries"] == 1, timeout=30)
    assert list_status(lab, "remote")["last_error"] is None
    assert rcode(client, "stalled.faults.example") == "NXDOMAIN"
    assert rcode(client, "unlisted.faults.example") == "NOERROR"


def test_a_stalled_feed_in_fail_mode_open_passes_unmatched_names(fresh, client):
    lab = fresh
    folder, requests = stalled_feed(lab, "feed-stall-open")
    lab.start_dnsgate(feed_policy(lab, f"http://{UPSTREAM_V4}:8080/remote.txt", lab.dir / "cache-stall-open",
                                  refresh="1d"))
    wait_until(lambda: stalling(requests))
    assert rcode(client, "unlisted.faults.example") == "NOERROR"
    assert lab.stats()["verdicts"]["no_match_dropped"] == 0
    (folder / "remote.txt.stall").unlink()


def test_sigterm_during_a_stalled_fetch_exits_at_once(fresh, client):
    lab = fresh
    folder, requests = stalled_feed(lab, "feed-stall-term")
    daemon = lab.start_dnsgate(feed_policy(lab, f"http://{UPSTREAM_V4}:8080/remote.txt",
                                           lab.dir / "cache-stall-term", refresh="1d"))
    wait_until(lambda: stalling(requests))
    time.sleep(0.5)  # well inside the fetch
    started = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    code = daemon.wait(timeout=10)
    took = time.monotonic() - started
    assert code == 0 and took < 2, f"exit {code} after {took:.2f}s"
    (folder / "remote.txt.stall").unlink()


# -- relative paths -------------------------------------------------------------------

def test_a_relative_cache_dir_with_a_bare_config_name_is_enforced(fresh, client):
    lab = fresh
    folder = lab.dir / "feed-relative"
    folder.mkdir(exist_ok=True)
    (folder / "remote.txt").write_text("relative.faults.example\n")
    lab.start_feed_server(folder)
    # Every path relative: the cache, the stats socket and a list file.
    (lab.dir / "relative-local.txt").write_text("local.faults.example\n")
    (lab.dir / "relative.yaml").write_text(f"""queues: "0-1"
stats_socket: {lab.socket_path.name}
cache_dir: relative-cache
domain_lists:
  - {{name: remote, url: "http://{UPSTREAM_V4}:8080/remote.txt", refresh: 1d, format: domains}}
  - {{name: local, file: relative-local.txt}}
rule_groups:
  - name: g
    priority: 1
    rules:
      - {{name: remote, priority: 1, domain_list: remote, action: BLOCK}}
      - {{name: local, priority: 2, domain_list: local, action: BLOCK}}
""")
    checked = subprocess.run([str(lab.binary), "check", "--config", "relative.yaml"], cwd=lab.dir,
                             capture_output=True, text=True)
    assert f"[{lab.dir}/relative-local.txt]" in checked.stdout, checked.stdout
    lab.start_dnsgate(Path("relative.yaml"), cwd=lab.dir)
    wait_until(lambda: list_status(lab, "remote")["entries"] == 1)
    cached = lab.dir / "relative-cache" / "remote.list"
    assert cached.exists() and not Path("/relative-cache").exists()
    assert list_status(lab, "remote")["file"] == str(cached)
    assert rcode(client, "relative.faults.example") == "NXDOMAIN"
    assert rcode(client, "local.faults.example") == "NXDOMAIN"
