#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""What the DNS-over-TCP relay costs: dnsperf over TCP from the client through
the gateway to the lab's resolver, first with plain kernel forwarding, then
through the shipped rules and dnsgate's relay (every query decided; 10% of the
names blocked and answered in the stream). Prints q/s, dnsperf's mean latency
and dnsgate's CPU time per TCP query (user + system, from /proc), beside the
same figure for UDP queries measured in the same run.

    sudo bench/tcp_relay.py [--seconds 5] [--runs 3]
"""
import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lab"))
from lab import UPSTREAM_V4, Lab  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system time of a process and all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dnsperf(lab: Lab, queries: Path, seconds: int, tcp: bool) -> dict:
    mode = ["-m", "tcp"] if tcp else []
    out = lab.ns(lab.client, "dnsperf", "-s", UPSTREAM_V4, "-d", str(queries), *mode, "-l", str(seconds),
                 "-c", "8", "-q", "64", "-t", "2", timeout=seconds + 60).stdout
    return {"completed": int(re.search(r"Queries completed:\s+(\d+)", out).group(1)),
            "qps": float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1)),
            "latency_us": float(re.search(r"Average Latency \(s\):\s+([\d.]+)", out).group(1)) * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    lab = Lab().up()
    try:
        queries = lab.dir / "queries.txt"
        queries.write_text("".join(f"{'x.blocked' if i % 10 == 0 else 'ok'}{i}.relay.example A\n" for i in range(10000)))
        (lab.dir / "block.txt").write_text("*.blocked.relay.example\n" + "".join(
            f"x.blocked{i}.relay.example\n" for i in range(0, 10000, 10)))
        config = lab.write_config(f"""queues: "0-1"
stats_socket: {lab.socket_path}
domain_lists: [{{name: b, file: block.txt}}]
rule_groups: [{{name: g, priority: 1, rules: [{{name: r, priority: 1, domain_list: b, action: BLOCK}}]}}]
""")
        rows = {}
        for name, tcp, gated in (("TCP, kernel forwarding", True, False), ("TCP through dnsgate's relay", True, True),
                                 ("UDP through dnsgate's queue", False, True)):
            runs = []
            for _ in range(args.runs):
                cpu = None
                if gated:
                    lab.apply_rules()
                    process = lab.start_dnsgate(config)
                    cpu = cpu_seconds(process.pid)
                result = dnsperf(lab, queries, args.seconds, tcp)
                if gated:
                    result["cpu_us"] = (cpu_seconds(process.pid) - cpu) / max(result["completed"], 1) * 1e6
                    lab.stop_dnsgate()
                    lab.remove_rules()
                runs.append(result)
            rows[name] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            print(f"{name}: {rows[name]}", flush=True)
        print(f"\n{args.runs} runs of {args.seconds} s (medians), dnsperf -c 8 -q 64, 10% of names blocked\n")
        print("| path | q/s | mean latency µs | dnsgate CPU µs/query |")
        print("|---|--:|--:|--:|")
        for name, r in rows.items():
            cpu = f"{r['cpu_us']:.1f}" if "cpu_us" in r else "–"
            print(f"| {name} | {r['qps']:,.0f} | {r['latency_us']:.0f} | {cpu} |")
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
