# SPDX-License-Identifier: GPL-2.0-or-later
"""The README's demo: the shipped example config and rules in a throwaway
namespace lab, real dig queries through the gateway, then the counters."""
import re
import sys
from pathlib import Path

from lab import CLIENT_V4, CLIENT_V6, ROOT, UPSTREAM_V4, UPSTREAM_V6, Lab


def show(lab: Lab, title: str, *dig_args: str, server: str = UPSTREAM_V4) -> None:
    out = lab.dig("+nocmd", "+nostats", "+noquestion", *dig_args, server=server)
    status = re.search(r"status: (\w+)", out)
    lines = [line for line in out.splitlines()
             if line and not line.startswith((";; Got", ";; global", "; (", ";; ->>", ";; OPT", "; EDNS", ";; flags"))]
    verdict = status.group(1) if status else "no answer (dropped)"
    print(f"\n$ dig @{server} {' '.join(dig_args)}    # {title}\n  -> {verdict}")
    for line in lines:
        if "SECTION" in line or line.startswith("; EDE") or not line.startswith(";"):
            print("     " + line)


def main() -> int:
    lab = Lab("dgdemo")
    try:
        lab.up()
        config_text = (ROOT / "config" / "dnsgate.yaml").read_text()
        config_text = re.sub(r"(?m)^stats_socket: .*$", f"stats_socket: {lab.socket_path}", config_text)
        config_text = re.sub(r"(?m)^  path: /var/log/dnsgate/queries.jsonl$", f"  path: {lab.dir}/queries.jsonl",
                             config_text)
        config = lab.write_config(config_text)
        print("== dnsgate demo: client 192.0.2.10 -> gateway (dnsgate, shipped fail-open rules) -> resolver 198.51.100.53")
        print(lab.cli("check", "--config", str(config)).stdout.strip())
        lab.apply_rules()
        lab.start_dnsgate(config)
        show(lab, "not listed: the resolver answers", "-b", CLIENT_V4, "www.example.org")
        show(lab, "listed in 'malware': forged NXDOMAIN with SOA and EDE", "-b", CLIENT_V4, "c2.malware.example")
        show(lab, "the same over IPv6", "-b", CLIENT_V6, "malware.example", "AAAA", server=UPSTREAM_V6)
        show(lab, "over TCP: the same forged answer, in the stream", "+tcp", "-b", CLIENT_V4, "c2.malware.example")
        show(lab, "over TCP, not listed: relayed to the resolver", "+tcp", "-b", CLIENT_V4, "www.example.net")
        show(lab, "'ads': sinkholed with an A record", "-b", CLIENT_V4, "tracker.ads.example")
        show(lab, "'corp-allow': ALLOW wins", "-b", CLIENT_V4, "intranet.corp.example")
        show(lab, "TXT to anything: ALERT, passed and logged", "-b", CLIENT_V4, "exfil.example", "TXT")
        show(lab, "not listed, but its answer is a CNAME into 'malware': the answer is blocked",
             "-b", CLIENT_V4, "cloaked.lab.example")
        show(lab, "a public name answered with a private address: rebinding, blocked", "-b", CLIENT_V4,
             "rebind.lab.example")
        print("\n$ dnsgate explain c2.malware.example")
        print(lab.cli("explain", "c2.malware.example", "--config", str(config)).stdout.rstrip())
        print("\n$ dnsgate explain cloaked.lab.example --answer CNAME:c2.malware.example --answer A:203.0.113.66")
        explained = lab.cli("explain", "cloaked.lab.example", "--answer", "CNAME:c2.malware.example", "--answer",
                            "A:203.0.113.66", "--config", str(config)).stdout.rstrip().splitlines()
        print("\n".join(line for line in explained if line.startswith(("query:", "decision:", "answer", "  redirection",
                                                                        "  address"))))
        print("\n$ dnsgate stats")
        print(lab.cli("stats", "--socket", str(lab.socket_path)).stdout.rstrip())
        print("\n$ tail queries.jsonl")
        log = lab.dir / "queries.jsonl"
        print(log.read_text().rstrip() if log.exists() else "(empty)")
        print("\nqueries that reached the resolver:", ", ".join(q.split()[0] for q in lab.upstream_queries()))
        return 0
    finally:
        lab.down()
        print("\n(lab removed)")


if __name__ == "__main__":
    sys.exit(main())
