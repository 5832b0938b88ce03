#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""End-to-end benchmark: what a DNS interceptor costs the gateway.

One invocation measures, in the namespace lab, UDP queries from the client
through the gateway to a fast C responder, for:
  forwarding  kernel forwarding, no queue
  floor       bench/floor.c: accept-all NFQUEUE (libmnl, recvmmsg, batched verdicts)
  dnsgate     a 1,000,000-name policy, 10% of queries blocked with forged
              NXDOMAIN, per-rule counters and the block log on
  + answers   the same, with rules on answers after the list rule: a
              100,000-prefix ip list and rebinding protection (every answer's
              addresses looked up)
  + threats   the same, with a BLOCK rule at HIGH for each threat after the
              list rule (DGA, DICT_DGA, DNS_TUNNELING): every query's
              registrable domain scored and recorded by the detectors
  unbound     Unbound on the gateway as forwarder, the same names as local-zone
              always_nxdomain (warm cache)
in rounds (each variant once a round, so each ratio is to a floor run beside
it; three rounds by default). The gateway's work is kept on CPU 1 (RPS steering of its
veths, the filter pinned there); client, dnsperf and responder run on CPU 0.
The list and the query mix come from a fixed seed.

The floor and dnsgate run behind the same rules: the shipped ones
(iptables/dnsgate.rules.v4 through dnsgate-firewall, conntrack match
included), on one queue (queue 0, on CPU 1) instead of 0-1. They queue both
directions, the query and the resolver's answer (issue #12: dnsgate inspects
answers), so the gateway's cost is per query+response pair = CPU 1 busy time /
queries answered, against a floor that also takes both through the queue.
--question-only drops the answer rules (every line of the shipped files that
matches --sport 53) to compare with the query-only diversion of before.

    sudo bench/run.py [--runs 3] [--seconds 10] [--names 1000000] [--skip-unbound] [--skip-threats]
                      [--skip-answer-rules] [--question-only]
"""
import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lab"))
from lab import GATEWAY_LAN_V4, UPSTREAM_V4, Lab, unbound_forwarder_config  # noqa: E402

GATEWAY_CPU, LOAD_CPU = 1, 0


def generate(directory: Path, names: int, seed: int = 20261129) -> tuple[Path, Path, list[str]]:
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ra", "ton", "vel", "qu", "zi", "bar", "dex", "nor", "ix", "pa", "sun", "tri"]
    suffixes = ["com", "net", "org", "io", "de", "co.uk", "info", "xyz", "fr", "example"]

    def name() -> str:
        label = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 5))) + str(rng.randint(0, 999))
        result = label + "." + rng.choice(suffixes)
        return rng.choice(["www", "ads", "cdn", "api"]) + "." + result if rng.random() < 0.3 else result

    listed, seen = [], set()
    while len(listed) < names:
        candidate = name()
        if candidate not in seen:
            seen.add(candidate)
            listed.append(candidate)
    unlisted = []
    while len(unlisted) < 9000:
        candidate = name()
        if candidate not in seen:
            seen.add(candidate)
            unlisted.append(candidate)
    blocked = rng.sample(listed, 1000)
    mix = [blocked[i // 10] if i % 10 == 0 else unlisted[i - i // 10 - 1] for i in range(10000)]
    list_file, query_file = directory / "names.txt", directory / "queries.txt"
    list_file.write_text("\n".join(listed) + "\n")
    query_file.write_text("".join(f"{n} A\n" for n in mix))
    return list_file, query_file, listed


def build_tools(directory: Path) -> None:
    for tool in ("floor", "responder", "latency"):
        libraries = ["-lnetfilter_queue", "-lmnl"] if tool == "floor" else []
        subprocess.run(["gcc", "-O2", "-o", str(directory / tool), str(ROOT / "bench" / f"{tool}.c"), *libraries], check=True)


def cpu_busy(cpu: int) -> float:
    """Seconds CPU `cpu` has spent not idle (user, nice, system, irq, softirq, steal)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            fields = [int(x) for x in line.split()[1:]]
            return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]) / os.sysconf("SC_CLK_TCK")
    raise RuntimeError(f"no cpu{cpu} in /proc/stat")


def rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


class Bench:
    def __init__(self, args):
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="dnsgate-bench-"))
        build_tools(self.dir)
        print(f"generating {args.names:,} names and the query mix (seeded) …", flush=True)
        self.list_file, self.queries, self.listed = generate(self.dir, args.names)
        self.rules = self.stage_rules()
        self.lab = Lab("dgb", upstream=False).up()
        lab = self.lab
        self.responder = subprocess.Popen(["ip", "netns", "exec", lab.upstream, "taskset", "-c", str(LOAD_CPU),
                                           str(self.dir / "responder"), UPSTREAM_V4], stdout=subprocess.PIPE, text=True)
        assert "ready" in self.responder.stdout.readline()
        # The gateway's packet processing on CPU 1, the rest on CPU 0.
        for namespace, link, cpu in ((lab.gateway, "g0", GATEWAY_CPU), (lab.gateway, "g1", GATEWAY_CPU),
                                     (lab.client, "c0", LOAD_CPU), (lab.upstream, "u0", LOAD_CPU)):
            lab.ns(namespace, "sh", "-c", f"echo {1 << cpu:x} > /sys/class/net/{link}/queues/rx-0/rps_cpus")

    def stage_rules(self) -> Path:
        """The shipped rule files, on queue 0 alone (bound by the floor and by
        dnsgate's `queues: "0"`), without the answer rules with --question-only."""
        staged = self.dir / "rules"
        staged.mkdir(exist_ok=True)
        for name in ("dnsgate.rules.v4", "dnsgate.rules.v6", "dnsgate-firewall"):
            lines = (ROOT / "iptables" / name).read_text().splitlines(keepends=True)
            if name.startswith("dnsgate.rules"):
                lines = [line.replace("--queue-balance 0:1", "--queue-num 0") for line in lines
                         if not (self.args.question_only and "--sport 53" in line and not line.startswith("#"))]
            (staged / name).write_text("".join(lines))
        (staged / "dnsgate-firewall").chmod(0o755)
        return staged

    def divert(self, on: bool) -> None:
        """The shipped rules (see stage_rules) in place, or none at all."""
        lab = self.lab
        firewall = self.rules / "dnsgate-firewall"
        lab.ns(lab.gateway, "env", f"DNSGATE_RULES_DIR={self.rules}", str(firewall), "remove", check=False)
        lab.rules_applied = None
        if on:
            lab.ns(lab.gateway, "env", f"DNSGATE_RULES_DIR={self.rules}", str(firewall), "apply")
            lab.rules_applied = []  # lab.down() removes them too
            rules = lab.ns(lab.gateway, "iptables", "-S", "DNSGATE").stdout
            assert ("--sport 53" in rules) != self.args.question_only, rules

    def measure(self, target: str) -> dict:
        lab = self.lab
        before = cpu_busy(GATEWAY_CPU)
        out = lab.ns(lab.client, "taskset", "-c", str(LOAD_CPU), "dnsperf", "-s", target, "-d", str(self.queries),
                     "-l", str(self.args.seconds), "-c", "16", "-q", "256", "-t", "2",
                     timeout=self.args.seconds + 60).stdout
        busy = cpu_busy(GATEWAY_CPU) - before
        completed = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
        qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
        lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))
        latency = lab.ns(lab.client, "taskset", "-c", str(LOAD_CPU), str(self.dir / "latency"), target, str(self.queries),
                         "5000").stdout.split()
        return {"qps": qps, "lost": lost, "us_per_query": busy / max(completed, 1) * 1e6,
                "p50": float(latency[0]), "p99": float(latency[1])}

    def run_once(self, name: str, start, target: str, run: int) -> dict:
        process = start()
        try:
            result = self.measure(target)
            result["rss"] = rss_mb(process.pid) if process is not None else 0.0
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
        print(f"  {name} run {run + 1}: {result['qps']:,.0f} q/s, {result['us_per_query']:.2f} µs/query, "
              f"p50 {result['p50']:.0f} µs, p99 {result['p99']:.0f} µs, lost {result['lost']}", flush=True)
        return result

    def no_queue(self):
        self.divert(False)
        return None

    def wait_for(self, predicate, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise RuntimeError("did not start")

    def start_floor(self):
        self.divert(True)
        return subprocess.Popen(["ip", "netns", "exec", self.lab.gateway, "taskset", "-c", str(GATEWAY_CPU),
                                 str(self.dir / "floor"), "0"], stderr=subprocess.DEVNULL)

    def address_list(self) -> Path:
        """100,000 prefixes (/24 and /32, seeded), none holding the responder's
        address, for the answer rules' variant."""
        path = self.dir / "nets.txt"
        if not path.exists():
            rng = random.Random(20261130)
            lines = [f"{rng.choice([1, 5, 23, 45, 62, 77, 91, 104, 151, 185])}.{rng.randrange(256)}.{rng.randrange(256)}."
                     + ("0/24" if i % 2 else str(rng.randrange(256))) for i in range(100_000)]
            path.write_text("\n".join(lines) + "\n")
        return path

    def start_dnsgate(self, threats: bool = False, answers: bool = False):
        self.divert(True)
        config = self.dir / "dnsgate.yaml"
        socket = self.dir / "dnsgate.sock"
        threat_rules = "".join(f", {{name: {name}, priority: {priority}, threat: {threat}, confidence: HIGH, action: BLOCK}}"
                               for priority, (name, threat) in enumerate([("dga", "DGA"), ("dict", "DICT_DGA"),
                                                                          ("tunnel", "DNS_TUNNELING")], start=2))
        answer_rules = (", {name: nets, priority: 5, ip_list: nets, action: BLOCK}"
                        ", {name: rebinding, priority: 6, rebinding_protection: true, action: BLOCK}")
        config.write_text(f"""queues: "0"
worker_cpus: [{GATEWAY_CPU}]
stats_socket: {socket}
query_log: {{path: {self.dir / 'queries.jsonl'}, actions: [BLOCK]}}
domain_lists: [{{name: big, file: {self.list_file}}}]
ip_lists: [{{name: nets, file: {self.address_list()}}}]
rule_groups:
  - {{name: g, priority: 1, rules: [{{name: block, priority: 1, domain_list: big, action: BLOCK}}{threat_rules if threats else ""}{answer_rules if answers else ""}]}}
""")
        if socket.exists():
            socket.unlink()
        process = subprocess.Popen(["ip", "netns", "exec", self.lab.gateway, "taskset", "-c", str(GATEWAY_CPU),
                                    str(self.lab.binary), "run", "--config", str(config)], stderr=subprocess.DEVNULL)
        self.wait_for(socket.exists)
        return process

    def start_unbound(self):
        self.divert(False)
        config = self.dir / "unbound.conf"
        if not config.exists():
            zones = "".join(f'local-zone: "{name}." always_nxdomain\n' for name in self.listed)
            config.write_text(unbound_forwarder_config(GATEWAY_LAN_V4, self.dir, UPSTREAM_V4, zones))
        process = subprocess.Popen(["ip", "netns", "exec", self.lab.gateway, "taskset", "-c", str(GATEWAY_CPU),
                                    "unbound", "-d", "-c", str(config)], stderr=subprocess.DEVNULL)
        probe = lambda: "NOERROR" in self.lab.dig("+short", "+tries=1", "+time=1", "warmup.example", server=GATEWAY_LAN_V4) \
            or self.lab.ns(self.lab.client, "dig", f"@{GATEWAY_LAN_V4}", "+tries=1", "+time=1", "warm.example",
                           check=False).stdout.count("status: NOERROR") > 0
        self.wait_for(probe, timeout=300)
        return process

    def run(self) -> None:
        floor_name = "C floor: accept-all NFQUEUE, batched"
        variants = [("kernel forwarding, no queue", "forwarding", self.no_queue, UPSTREAM_V4),
                    (floor_name, "floor", self.start_floor, UPSTREAM_V4),
                    ("dnsgate, 1M names, 10% forged NXDOMAIN", "dnsgate", self.start_dnsgate, UPSTREAM_V4)]
        if not self.args.skip_answer_rules:
            variants.append(("dnsgate, the same + ip list (100k) + rebinding", "dnsgate+answer-rules",
                             lambda: self.start_dnsgate(answers=True), UPSTREAM_V4))
        if not self.args.skip_threats:
            variants.append(("dnsgate, the same + DGA/DICT_DGA/TUNNEL rules", "dnsgate+threats",
                             lambda: self.start_dnsgate(threats=True), UPSTREAM_V4))
        if not self.args.skip_unbound:
            variants.append(("Unbound forwarder, 1M local-zones, warm cache", "unbound", self.start_unbound,
                             GATEWAY_LAN_V4))
        # Rounds, not one variant after another: this VM's speed drifts over
        # minutes, and a ratio is fair only between runs made side by side.
        runs: dict[str, list[dict]] = {label: [] for label, *_ in variants}
        for run in range(self.args.runs):
            print(f"round {run + 1} of {self.args.runs}", flush=True)
            for label, name, start, target in variants:
                runs[label].append(self.run_once(name, start, target, run))
        self.divert(False)
        results = {}
        for label, measured in runs.items():
            summary = {key: statistics.median(r[key] for r in measured) for key in ("qps", "us_per_query", "p50", "p99")}
            summary["lost"] = sum(r["lost"] for r in measured)
            summary["rss"] = max(r["rss"] for r in measured)
            summary["ratios"] = [r["us_per_query"] / f["us_per_query"] if f["us_per_query"] else 0
                                 for r, f in zip(measured, runs[floor_name])]
            summary["ratio"] = statistics.median(summary["ratios"])
            results[label] = summary
        floor = results[floor_name]
        queued = "queries only (--question-only)" if self.args.question_only else "queries and their answers"
        unit = "gw µs/q" if self.args.question_only else "µs/pair"
        print(f"\n{self.args.runs} rounds of {self.args.seconds} s runs (medians; × floor is the median of the rounds' "
              f"ratios to the floor run in the same round); gateway work on CPU {GATEWAY_CPU}, "
              f"load on CPU {LOAD_CPU}; {self.args.names:,}-name list; the floor and dnsgate queue {queued}"
              + ("" if self.args.question_only else "; gateway cost per query+response pair") + "\n")
        header = f"| {'path through the gateway':<46} | {'q/s':>9} | {'p50 µs':>7} | {'p99 µs':>7} | {unit:>7} | {'× floor':>7} | {'RSS MB':>7} | {'lost':>5} |"
        print(header)
        print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
        for name, r in results.items():
            rss = f"{r['rss']:.0f}" if r["rss"] else "-"
            print(f"| {name:<46} | {r['qps']:>9,.0f} | {r['p50']:>7.0f} | {r['p99']:>7.0f} | {r['us_per_query']:>7.2f} | "
                  f"{r['ratio']:>7.2f} | {rss:>7} | {r['lost']:>5} |")
        for name in ("dnsgate, 1M names, 10% forged NXDOMAIN", "dnsgate, the same + ip list (100k) + rebinding",
                     "dnsgate, the same + DGA/DICT_DGA/TUNNEL rules"):
            if name not in results:
                continue
            d = results[name]
            per = "query" if self.args.question_only else "query+response pair"
            rounds = ", ".join(f"{ratio:.2f}" for ratio in d["ratios"])
            print(f"\n{name} vs floor: cost per {per} {d['ratio']:.2f}× (rounds: {rounds}), "
                  f"p50 {d['p50'] / floor['p50']:.2f}×, p99 {d['p99'] / floor['p99']:.2f}×, q/s {d['qps'] / floor['qps']:.2f}×")

    def close(self) -> None:
        if self.responder.poll() is None:
            self.responder.terminate()
            self.responder.wait(timeout=10)
        self.lab.down()
        shutil.rmtree(self.dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--names", type=int, default=1_000_000)
    parser.add_argument("--skip-unbound", action="store_true")
    parser.add_argument("--skip-threats", action="store_true", help="leave out the run with threat rules")
    parser.add_argument("--skip-answer-rules", action="store_true",
                        help="leave out the run with rules on answers (an ip list and rebinding protection)")
    parser.add_argument("--question-only", action="store_true",
                        help="queue the queries only (the diversion before answer inspection), floor and dnsgate alike")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/run.py needs root (namespaces, iptables, NFQUEUE)", file=sys.stderr)
        return 1
    if os.cpu_count() < 2:
        print("bench/run.py needs two CPUs", file=sys.stderr)
        return 1
    if not args.skip_unbound and shutil.which("unbound") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "unbound"], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    bench = Bench(args)
    try:
        bench.run()
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
