# SPDX-License-Identifier: GPL-2.0-or-later
"""A bounded soak at load: memory stays flat per query, per reload and per list
refresh, with threat rules (every reload reads the model and the suffix list
anew; every query is scored and recorded in the tunnel table).

It runs the release build, what ships: a debug build allocates on the packet
path (no inlining, no stack promotion), and its heap grows with that churn
(measured: 68 to 115 MB in 3 minutes, where the release build stays flat)."""
import re
import subprocess
import threading
import time
from pathlib import Path

from lab import UPSTREAM_V4, release_binary


def rss_kb(pid: int) -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))


def test_soak_memory_is_flat_under_load_reloads_and_refreshes(lab, client):
    folder = lab.dir / "soak-feed"
    folder.mkdir(exist_ok=True)
    (folder / "feed.txt").write_text("".join(f"feed{i}.soak.example\n" for i in range(2000)))
    lab.start_feed_server(folder)
    (lab.dir / "soak.txt").write_text("".join(f"b{i}.soak.example\n" for i in range(5000)))
    config = lab.write_config(f"""queues: "0-1"
stats_socket: {lab.socket_path}
cache_dir: {lab.dir / 'soak-cache'}
query_log: {{path: {lab.dir / 'soak.jsonl'}, actions: [BLOCK]}}
domain_lists:
  - {{name: local, file: soak.txt}}
  - {{name: feed, url: "http://{UPSTREAM_V4}:8080/feed.txt", refresh: 1s, format: domains}}
rule_groups:
  - {{name: g, priority: 1, rules: [{{name: local, priority: 1, domain_list: local, action: BLOCK}},
                                   {{name: feed, priority: 2, domain_list: feed, action: BLOCK}},
                                   {{name: dga, priority: 3, threat: DGA, confidence: LOW, action: ALERT}},
                                   {{name: tunnels, priority: 4, threat: DNS_TUNNELING, confidence: LOW, action: ALERT}}]}}
""", "soak.yaml")
    lab.apply_rules()
    debug_binary, lab.binary = lab.binary, release_binary()
    try:
        run_soak(lab, config, folder)
    finally:
        lab.stop_dnsgate()
        lab.binary = debug_binary
        lab.remove_rules()


def run_soak(lab, config: Path, folder: Path) -> None:
    lab.start_dnsgate(config)
    queries = lab.dir / "soak-queries.txt"
    # Four blocked names for one passed on: the lab's Python resolver is not the bottleneck.
    queries.write_text("".join(f"b{i % 5000}.soak.example A\n" if i % 5 else f"ok{i}.soak.example A\n"
                               for i in range(50000)))
    pid = lab.dnsgate.pid
    seconds, rate = 180, 20000
    stop = threading.Event()
    events = {"reloads": 0, "refreshes": 0}

    def churn():
        flip = 0
        while not stop.wait(1.0):
            flip += 1
            # A changed feed every second (fetched, compiled, swapped), a reload every other.
            (folder / "feed.txt").write_text("".join(f"feed{i + flip}.soak.example\n" for i in range(2000)))
            events["refreshes"] += 1
            if flip % 2 == 0:
                lab.cli("reload", "--socket", str(lab.socket_path), check=False)
                events["reloads"] += 1

    samples = []
    churner = threading.Thread(target=churn)
    load = subprocess.Popen(["ip", "netns", "exec", lab.client, "dnsperf", "-s", UPSTREAM_V4, "-d", str(queries),
                             "-l", str(seconds), "-Q", str(rate), "-c", "4", "-t", "2"], stdout=subprocess.PIPE, text=True)
    churner.start()
    try:
        for _ in range(seconds // 5):
            time.sleep(5)
            samples.append(rss_kb(pid))
        out = load.communicate(timeout=60)[0]
    finally:
        stop.set()
        churner.join()
        if load.poll() is None:
            load.kill()
    completed = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
    stats = lab.stats()
    print(f"\nsoak: {completed} queries in {seconds}s, {events['reloads']} reloads, {events['refreshes']} feed changes, "
          f"policy generation {stats['policy']['generation']}; RSS samples (KB) {samples}")
    (lab.dir / "soak.json").write_text(str({"completed": completed, "samples": samples}))
    assert completed > 1_800_000, "about 90 minutes of a small network's lookups (333 q/s)"
    assert stats["policy"]["generation"] > 40, "the churn reloaded the policy"
    # Judged on the floor of each minute: a sample taken while a policy
    # compiles (one every second here) is megabytes above the floor, and
    # single samples made this check flaky. The floor of the last minute
    # against the floor of the minute before: a leak per query (20,000 a
    # second), reload or refresh raises the floor; measured, it moved 1.0 and
    # 1.6 MB in two runs with the heaps limited (MemoryTuning.limitHeaps), and
    # rose 9 MB in 3 minutes without (each compiling thread's arena kept its peak).
    second_minute, last_minute = min(samples[12:24]), min(samples[24:])
    assert last_minute - second_minute < 4096, f"RSS floor grew {last_minute - second_minute} KB from {second_minute} KB"
