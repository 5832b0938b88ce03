# SPDX-License-Identifier: GPL-2.0-or-later
"""Operating dnsgate: the CLI's exit codes and messages, reload, running with
only two capabilities, and the shipped nftables and systemd files."""
import grp
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lab import CLIENT_V4, ROOT, UPSTREAM_V4

GOOD = """
queues: "0-1"
stats_socket: {socket}
domain_lists:
  - name: bad
    file: bad.txt
rule_groups:
  - name: base
    priority: 1
    rules:
      - {{name: block-bad, priority: 1, domain_list: bad, action: BLOCK}}
"""


def test_check_accepts_the_shipped_example(lab):
    result = lab.cli("check", "--config", str(ROOT / "config" / "dnsgate.yaml"), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid; 1 rule groups, 9 rules" in result.stdout
    # Its threat rules (ALERT) load the model and the suffix list, and check says which.
    assert "threat detection (DGA, DICT_DGA, DNS_TUNNELING): model /" in result.stdout


def test_check_lists_every_problem_with_file_and_line(lab):
    (lab.dir / "bad.txt").write_text("good.example\nbad..name\n*.also-good.example\n")
    config = lab.write_config("queues: \"0-1\"\nfail_mode: maybe\ndomain_lists:\n  - name: bad\n    file: bad.txt\n"
                              "rule_groups:\n  - name: g\n    priority: 1\n    rules:\n"
                              "      - {name: r, priority: 1, domain_list: nope, action: BLOCK}\n", "broken.yaml")
    result = lab.cli("check", "--config", str(config), check=False)
    assert result.returncode == 1
    assert f"{config}:2: error: fail_mode: 'maybe' is not one of open, closed" in result.stdout
    assert f"{config}:10: error: rule 'g/r' uses domain list 'nope', which is not defined" in result.stdout
    assert f"{lab.dir}/bad.txt:2: warning: 'bad..name' is not a valid domain name" in result.stdout
    assert "list bad: domains, 2 entries, 1 lines skipped" in result.stdout


def test_usage_errors_exit_2(lab):
    assert lab.cli("explain", check=False).returncode == 2
    assert lab.cli("explain", "x.example", "--type", "NOPE", check=False).returncode == 2
    assert lab.cli("frobnicate", check=False).returncode == 2
    help_text = lab.cli("run", "--help").stdout
    assert "--config" in help_text
    for sub in ("check", "explain", "stats", "reload"):
        assert lab.cli(sub, "--help").returncode == 0


def test_runtime_failures_exit_1(lab):
    assert lab.cli("stats", "--socket", str(lab.dir / "absent.sock"), check=False).returncode == 1
    assert lab.cli("check", "--config", str(lab.dir / "absent.yaml"), check=False).returncode == 1


def test_explain_names_group_rule_list_and_entry(lab):
    (lab.dir / "bad.txt").write_text("# list\nbad.example\n*.bad.example\n")
    config = lab.write_config(GOOD.format(socket=lab.socket_path))
    out = lab.cli("explain", "Www.Bad.Example", "--type", "AAAA", "--client", "2001:db8:1::10",
                  "--config", str(config)).stdout
    assert "decision: BLOCK (NXDOMAIN) by rule base/block-bad, list bad" in out
    assert f"entry:   *.bad.example (wildcard) at {lab.dir}/bad.txt:3" in out
    out = lab.cli("explain", "fine.example", "--config", str(config)).stdout
    assert "no rule matches" in out


def probe_rcode(lab, client, name):
    return client.probe(name, server=UPSTREAM_V4, source=CLIENT_V4)["rcode"]


def test_reload_swaps_the_policy_and_a_bad_config_keeps_the_old_one(lab, client):
    (lab.dir / "bad.txt").write_text("first.example\n")
    config = lab.write_config(GOOD.format(socket=lab.socket_path))
    lab.apply_rules()
    lab.start_dnsgate(config)
    try:
        assert probe_rcode(lab, client, "first.example") == "NXDOMAIN"
        assert probe_rcode(lab, client, "second.example") == "NOERROR"
        (lab.dir / "bad.txt").write_text("second.example\n")
        result = lab.cli("reload", "--socket", str(lab.socket_path))
        assert result.stdout.startswith("ok: policy generation 2")
        assert probe_rcode(lab, client, "second.example") == "NXDOMAIN"
        assert probe_rcode(lab, client, "first.example") == "NOERROR"
        config.write_text(config.read_text() + "bogus_key: 1\n")
        failed = lab.cli("reload", "--socket", str(lab.socket_path), check=False)
        assert failed.returncode == 1 and "unknown key 'bogus_key'" in failed.stdout
        assert probe_rcode(lab, client, "second.example") == "NXDOMAIN"
        stats = lab.stats()
        assert stats["policy"]["generation"] == 2 and stats["errors"]["reload_failures"] == 1
        assert [r["hits"] for r in stats["rules"]] == [3], "hits carry over reloads by rule name"
        config.write_text(GOOD.format(socket=lab.socket_path))
        (lab.dir / "bad.txt").write_text("third.example\n")
        lab.dnsgate.send_signal(1)  # SIGHUP
        deadline = time.monotonic() + 5
        while lab.stats()["policy"]["generation"] != 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert probe_rcode(lab, client, "third.example") == "NXDOMAIN"
    finally:
        lab.stop_dnsgate()
        lab.remove_rules()


def test_runs_unprivileged_with_only_net_admin_and_net_raw(lab, client):
    """The systemd unit's privilege model, without systemd: setpriv drops to nobody."""
    run_dir = lab.dir / "unprivileged"
    run_dir.mkdir()
    shutil.chown(run_dir, "nobody", "nogroup")
    (lab.dir / "bad.txt").write_text("priv.example\n")
    lab.dir.chmod(0o755)
    (lab.dir / "bad.txt").chmod(0o644)
    config = lab.write_config(GOOD.format(socket=run_dir / "dnsgate.sock"), "unprivileged.yaml")
    config.chmod(0o644)
    lab.apply_rules()
    process = subprocess.Popen(
        ["ip", "netns", "exec", lab.gateway, "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         "--inh-caps=-all,+net_admin,+net_raw", "--ambient-caps=-all,+net_admin,+net_raw",
         "--bounding-set=-all,+net_admin,+net_raw", "--no-new-privs", str(lab.binary), "run", "--config", str(config)],
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not (run_dir / "dnsgate.sock").exists() and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.05)
        # `ip netns exec` and setpriv both exec, so the pid is the daemon's own.
        status = Path(f"/proc/{process.pid}/status").read_text()
        assert re.search(r"^Uid:\s+65534", status, re.M)
        effective = int(re.search(r"^CapEff:\s+(\w+)", status, re.M).group(1), 16)
        assert effective == (1 << 12) | (1 << 13), hex(effective)  # CAP_NET_ADMIN | CAP_NET_RAW
        assert probe_rcode(lab, client, "priv.example") == "NXDOMAIN"
        assert probe_rcode(lab, client, "fine.example") == "NOERROR"
    finally:
        process.terminate()
        process.wait(timeout=10)
        lab.remove_rules()


def test_nftables_rules_load(lab):
    probe = subprocess.run(["ip", "netns", "exec", lab.gateway, "nft", "add table inet dgprobe; "
                            "add chain inet dgprobe c; add rule inet dgprobe c queue num 9 bypass"],
                           capture_output=True, text=True)
    subprocess.run(["ip", "netns", "exec", lab.gateway, "nft", "delete table inet dgprobe"], capture_output=True)
    if probe.returncode != 0:
        # Structure still checked: the file loads with the queue statement replaced.
        text = (ROOT / "iptables" / "dnsgate.nft").read_text().replace("queue flags bypass,fanout to 0-1", "counter")
        staged = lab.dir / "structure.nft"
        staged.write_text(text)
        lab.ns(lab.gateway, "nft", "-f", str(staged))
        listed = lab.ns(lab.gateway, "nft", "list", "table", "inet", "dnsgate").stdout
        lab.ns(lab.gateway, "nft", "delete", "table", "inet", "dnsgate")
        assert "meta mark 0x00444e53 fib saddr type local return" in listed and "hook forward" in listed and "hook input" in listed
        pytest.skip(f"this kernel cannot load an nft queue statement ({probe.stderr.strip()[:80]}); "
                    "checked the file's structure only")
    for variant in ("dnsgate.nft", "dnsgate.closed.nft"):
        lab.ns(lab.gateway, "nft", "-f", str(ROOT / "iptables" / variant))
        lab.ns(lab.gateway, "nft", "-f", str(ROOT / "iptables" / variant))  # idempotent
        listed = lab.ns(lab.gateway, "nft", "list", "table", "inet", "dnsgate").stdout
        assert ("bypass" in listed) == (variant == "dnsgate.nft")
        lab.ns(lab.gateway, str(ROOT / "iptables" / "dnsgate-firewall"), "remove", "--nft")


def test_shipped_iptables_variants_differ_only_in_bypass():
    for family in ("v4", "v6"):
        open_rules = (ROOT / "iptables" / f"dnsgate.rules.{family}").read_text()
        closed_rules = (ROOT / "iptables" / f"dnsgate.closed.rules.{family}").read_text()
        assert "--queue-bypass" in open_rules and "--queue-bypass" not in closed_rules
        strip = lambda text: [l for l in text.splitlines() if not l.startswith("#")]  # noqa: E731
        assert [l.replace(" --queue-bypass", "") for l in strip(open_rules)] == strip(closed_rules)


def test_systemd_units_verify_and_keep_two_capabilities(lab):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (ROOT / "systemd" / "dnsgate.service").read_text()
    assert re.search(r"^CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW$", unit, re.M)
    assert re.search(r"^AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW$", unit, re.M)
    # The rules are the other unit's (Tests/e2e/test_unit_transitions.py replays both).
    assert "Requires=dnsgate-firewall.service" in unit and "dnsgate-firewall" not in unit.split("[Service]")[1]
    staged = lab.dir / "units"
    staged.mkdir(exist_ok=True)
    for name in ("dnsgate.service", "dnsgate-firewall.service"):
        text = (ROOT / "systemd" / name).read_text()
        (staged / name).write_text(text.replace("/usr/local/bin/dnsgate", str(lab.binary))
                                   .replace("/usr/local/share/dnsgate/iptables", str(ROOT / "iptables")))
    # verify also opens each Documentation= man page: dnsgate(1) from docs/.
    manual = lab.dir / "man" / "man1"
    manual.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "docs" / "dnsgate.1", manual / "dnsgate.1")
    environment = dict(os.environ, MANPATH=f"{lab.dir / 'man'}:")
    verify = subprocess.run(["systemd-analyze", "verify", str(staged / "dnsgate.service"),
                             str(staged / "dnsgate-firewall.service")], capture_output=True, text=True, env=environment)
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(staged / "dnsgate.service")],
                              capture_output=True, text=True)
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout).group(1))
    assert score <= 2.0, security.stdout


def test_stats_socket_group_reads_but_only_root_reloads(lab):
    run_dir = lab.dir / "sockets"
    run_dir.mkdir(exist_ok=True)
    run_dir.chmod(0o755)
    lab.dir.chmod(0o755)
    (lab.dir / "bad.txt").write_text("x.example\n")
    config = lab.write_config(GOOD.format(socket=run_dir / "dnsgate.sock") + "stats_socket_group: nogroup\n", "group.yaml")
    socket_path = run_dir / "dnsgate.sock"
    process = subprocess.Popen(["ip", "netns", "exec", lab.gateway, str(lab.binary), "run", "--config", str(config)],
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        info = socket_path.stat()
        assert oct(info.st_mode & 0o777) == "0o660" and info.st_gid == grp.getgrnam("nogroup").gr_gid

        def as_user(user: str, group: str, command: str) -> subprocess.CompletedProcess:
            return subprocess.run(["setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups", str(lab.binary),
                                   command, "--socket", str(socket_path)], capture_output=True, text=True, timeout=20)

        member = as_user("nobody", "nogroup", "stats")
        assert member.returncode == 0 and "policy generation 1" in member.stdout
        refused = as_user("nobody", "nogroup", "reload")
        assert refused.returncode == 1 and "reload is not permitted for this user" in refused.stdout
        outsider = as_user("daemon", "daemon", "stats")
        assert outsider.returncode == 1 and "Permission denied" in outsider.stderr
        assert lab.cli("reload", "--socket", str(socket_path)).stdout.startswith("ok"), "root may reload"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_started_as_root_it_drops_to_a_user_with_two_capabilities(lab, client):
    lab.dir.chmod(0o755)
    (lab.dir / "bad.txt").write_text("dropped.example\n")
    (lab.dir / "bad.txt").chmod(0o644)
    config = lab.write_config(GOOD.format(socket=lab.socket_path) + "user: nobody\n", "drop.yaml")
    config.chmod(0o644)
    lab.apply_rules()
    lab.start_dnsgate(config)
    try:
        status = Path(f"/proc/{lab.dnsgate.pid}/status").read_text()
        assert re.search(r"^Uid:\s+65534\s+65534\s+65534\s+65534", status, re.M)
        assert re.search(r"^Groups:\s*$", status, re.M)
        caps = {name: int(re.search(rf"^{name}:\s+(\w+)", status, re.M).group(1), 16)
                for name in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb")}
        two = (1 << 12) | (1 << 13)  # CAP_NET_ADMIN | CAP_NET_RAW
        assert caps == {"CapEff": two, "CapPrm": two, "CapBnd": two, "CapInh": 0, "CapAmb": 0}, caps
        # Every thread of dnsgate's own keeps the two: the relay and the CNAME
        # chaser set SO_MARK (CAP_NET_ADMIN) on the sockets they open.
        for task in Path(f"/proc/{lab.dnsgate.pid}/task").iterdir():
            name = (task / "comm").read_text().strip()
            if name.startswith(("dnsgate", "NIO-ELT")):
                effective = int(re.search(r"^CapEff:\s+(\w+)", (task / "status").read_text(), re.M).group(1), 16)
                assert effective == two, f"thread {name} has capabilities {effective:#x}"
        tcp = lab.ns(lab.client, "dig", f"@{UPSTREAM_V4}", "+tcp", "+tries=1", "+time=2", "tcp-kept.example",
                     check=False).stdout
        assert "status: NOERROR" in tcp, "the relay connects upstream with its mark as the user"
        assert probe_rcode(lab, client, "dropped.example") == "NXDOMAIN", "forged answers still go out"
        assert probe_rcode(lab, client, "kept.example") == "NOERROR"
        (lab.dir / "bad.txt").write_text("kept.example\n")
        assert lab.cli("reload", "--socket", str(lab.socket_path)).stdout.startswith("ok"), "reload as the user"
        assert probe_rcode(lab, client, "kept.example") == "NXDOMAIN"
    finally:
        lab.stop_dnsgate()
        lab.remove_rules()


def test_query_log_no_match_logs_unmatched_queries_and_check_names_bad_actions(lab, client):
    (lab.dir / "bad.txt").write_text("*.nx.example\n")
    log = lab.dir / "nomatch.jsonl"
    config = lab.write_config(GOOD.format(socket=lab.socket_path).replace(
        "domain_lists:", f"query_log: {{path: {log}, actions: [BLOCK, NO_MATCH]}}\ndomain_lists:"), "nomatch.yaml")
    lab.apply_rules()
    lab.start_dnsgate(config)
    try:
        client.probe("unlisted.nomatch.example")
        client.probe("x.nx.example")
        time.sleep(0.5)
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        unmatched = [line for line in lines if line["query_name"] == "unlisted.nomatch.example."]
        assert unmatched and "firewall_rule" not in unmatched[0], lines
        assert any(line.get("firewall_rule_action") == "BLOCK" for line in lines)
    finally:
        lab.stop_dnsgate()
        lab.remove_rules()
    bad = lab.write_config(GOOD.format(socket=lab.socket_path).replace(
        "domain_lists:", "query_log: {path: /tmp/x.jsonl, actions: [NOPE]}\ndomain_lists:"), "badactions.yaml")
    result = lab.cli("check", "--config", str(bad), check=False)
    assert result.returncode == 1 and "'NOPE' is not one of ALLOW, BLOCK, ALERT, NO_MATCH" in result.stdout


# The jumps of the shipped rules as `iptables -S` / `ip6tables -S` print them (issue #12: answers too).
JUMPS = {
    "-A FORWARD -p udp -m udp --dport 53 -j DNSGATE", "-A FORWARD -p tcp -m tcp --dport 53 -j DNSGATE",
    "-A FORWARD -p udp -m udp --sport 53 -j DNSGATE", "-A FORWARD -p tcp -m tcp --sport 53 -j DNSGATE",
    "-A INPUT -p udp -m udp --dport 53 -j DNSGATE", "-A INPUT -p tcp -m tcp --dport 53 -j DNSGATE",
    "-A OUTPUT -p udp -m udp --sport 53 -m mark ! --mark 0x444e53 -m connmark ! --mark 0x444e53 -j DNSGATE",
    "-A OUTPUT -p udp -m udp ! --sport 53 --dport 53 -m mark --mark 0x444e53 -m conntrack --ctstate NEW"
    " --ctdir ORIGINAL -j CONNMARK --set-xmark 0x444e53/0xffffffff",
    "-A PREROUTING -p tcp -m tcp --dport 53 -j DNSGATE_TCP",
    "-A OUTPUT -p udp -m udp --sport 53 -m mark --mark 0x444e53 -m conntrack --ctstate NEW"
    " -j CONNMARK --set-xmark 0x444e54/0xffffffff",
}
OUTPUT_JUMPS = {
    "-A OUTPUT -p udp -m udp --dport 53 -m mark ! --mark 0x444e53 -j DNSGATE",
    "-A OUTPUT -p tcp -m tcp --dport 53 -m mark ! --mark 0x444e53 -j DNSGATE",
    "-A INPUT ! -i lo -p udp -m udp --sport 53 -m connmark ! --mark 0x444e53 -j DNSGATE",
    "-A OUTPUT -p tcp -m tcp --dport 53 -m mark ! --mark 0x444e53 -j DNSGATE_TCP",
}
CONNTRACK = "-m conntrack --ctstate INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED -j NFQUEUE --queue-balance 0:1"
# Answers: only packets of a flow seen both ways (or untracked), never a packet nobody asked for.
REPLIES = "-m conntrack --ctstate ESTABLISHED"


def installed(lab) -> dict[str, list[str]]:
    """Per tool, every jump and CONNMARK rule of dnsgate's in the built-in chains, as printed."""
    found = {}
    for tool in ("iptables", "ip6tables"):
        lines = []
        for table, chains in (("filter", ("FORWARD", "INPUT", "OUTPUT")), ("nat", ("PREROUTING", "OUTPUT"))):
            for chain in chains:
                lines += [line for line in lab.ns(lab.gateway, tool, "-w", "-t", table, "-S", chain).stdout.splitlines()
                          if "DNSGATE" in line or "CONNMARK" in line]
        found[tool] = lines
    return found


def leftovers(lab) -> list[str]:
    saved = "\n".join(lab.ns(lab.gateway, *command).stdout for command in
                      (["iptables-save"], ["ip6tables-save"], ["nft", "list", "ruleset"]))
    return [line for line in saved.splitlines() if re.search(r"dnsgate|444e53|nfqueue|5053", line, re.I)]


@pytest.mark.parametrize("options", [[], ["--output"], ["--closed"], ["--closed", "--output"]],
                         ids=["open", "open-output", "closed", "closed-output"])
def test_shipped_iptables_rules_divert_answers_and_go_in_one_remove(lab, options):
    firewall = str(ROOT / "iptables" / "dnsgate-firewall")
    lab.stop_dnsgate()
    try:
        # The CONNMARK rule of earlier releases (it marked the flow of a client asking from
        # port 53 whose question was blocked) is replaced by apply, not left beside the new one
        # (apply alone: remove would take it away first).
        lab.remove_rules()
        for tool in ("iptables", "ip6tables"):
            lab.ns(lab.gateway, tool, "-w", "-I", "OUTPUT", "-p", "udp", "--dport", "53", "-m", "mark", "--mark",
                   "0x444e53", "-m", "conntrack", "--ctstate", "NEW", "--ctdir", "ORIGINAL", "-j", "CONNMARK",
                   "--set-mark", "0x444e53")
        for _ in range(2):  # applying again replaces, never duplicates
            lab.apply_rules(*options)
            expected = JUMPS | (OUTPUT_JUMPS if "--output" in options else set())
            for tool, lines in installed(lab).items():
                assert sorted(lines) == sorted(expected), (tool, lines)
                chain = lab.ns(lab.gateway, tool, "-w", "-S", "DNSGATE").stdout.splitlines()
                bypass = "" if "--closed" in options else " --queue-bypass"
                assert chain[1:] == [
                    "-A DNSGATE -m mark --mark 0x444e53 -m addrtype --src-type LOCAL -j RETURN",
                    f"-A DNSGATE -p udp -m udp --dport 53 {CONNTRACK}{bypass}",
                    f"-A DNSGATE -p udp -m udp --sport 53 {REPLIES} -j NFQUEUE --queue-balance 0:1{bypass}",
                    f"-A DNSGATE -p udp -m udp --sport 53 -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-balance 0:1{bypass}",
                    f"-A DNSGATE -p udp -m udp --sport 53 -m connmark --mark 0x444e54 -j NFQUEUE --queue-balance 0:1{bypass}",
                    "-A DNSGATE -p tcp -m tcp --dport 53 -j REJECT --reject-with tcp-reset",
                    f"-A DNSGATE -p tcp -m tcp --sport 53 {REPLIES} -j REJECT --reject-with tcp-reset"], (tool, chain)
        # Switching --output off takes its jumps away again.
        lab.apply_rules(*[option for option in options if option != "--output"])
        assert all(sorted(lines) == sorted(JUMPS) for lines in installed(lab).values()), installed(lab)
        lab.ns(lab.gateway, firewall, "remove")
        lab.rules_applied = None
        assert leftovers(lab) == []
    finally:
        lab.remove_rules()


@pytest.mark.parametrize("options", [[], ["--output"], ["--closed"], ["--closed", "--output"]],
                         ids=["open", "open-output", "closed", "closed-output"])
def test_shipped_nft_rules_divert_answers_and_go_in_one_remove(lab, options):
    """The nftables rules' jumps, from a copy whose queue statements are counters
    (test_nftables_rules_load loads the statement itself where the kernel has it)."""
    staged = lab.dir / "staged-nft"
    staged.mkdir(exist_ok=True)
    for name in ("dnsgate.nft", "dnsgate.closed.nft", "dnsgate-output.nft"):
        (staged / name).write_text(re.sub(r"queue flags [a-z,]+ to 0-1", "counter",
                                          (ROOT / "iptables" / name).read_text()))
    firewall = str(ROOT / "iptables" / "dnsgate-firewall")
    try:
        for _ in range(2):
            lab.ns(lab.gateway, "env", f"DNSGATE_RULES_DIR={staged}", firewall, "apply", "--nft", *options)
            listed = lab.ns(lab.gateway, "nft", "list", "table", "inet", "dnsgate").stdout
            chains = dict(re.findall(r"chain (\w+) \{(.*?)\n\t\}", listed, re.S))
            assert "th sport 53 jump divert" in chains["forward"] and "th dport 53 jump divert" in chains["forward"]
            assert "sport" not in chains["input"]
            assert ("meta mark 0x00444e53 udp sport != 53 udp dport 53 ct state new ct direction original"
                    " ct mark set 0x00444e53" in chains["output"]), chains["output"]
            assert "meta mark != 0x00444e53 ct mark != 0x00444e53 udp sport 53 jump divert" in chains["output"]
            assert "meta mark 0x00444e53 udp sport 53 ct state new ct mark set 0x00444e54" in chains["output"]
            assert "ct mark 0x00444e54 udp sport 53 counter" in chains["divert"], chains["divert"]
            assert chains["divert"].strip().splitlines()[0].strip() == "meta mark 0x00444e53 fib saddr type local return"
            assert "ct state established udp sport 53 counter" in chains["divert"]
            assert "ct state untracked udp sport 53 counter" in chains["divert"]
            assert "ct state established tcp sport 53 reject with tcp reset" in chains["divert"]
            if "--output" in options:
                assert "meta mark != 0x00444e53 meta l4proto { tcp, udp } th dport 53 jump divert" in chains["output_own"]
                assert 'iifname != "lo" ct mark != 0x00444e53 udp sport 53 jump divert' in chains["input_own"]
                assert "tcp dport 53 redirect to :5053" in chains["output_redirect_tcp"]
            else:
                assert not {"output_own", "input_own", "output_redirect_tcp"} & set(chains), chains
        lab.ns(lab.gateway, firewall, "remove", "--nft")
        assert leftovers(lab) == []
    finally:
        lab.ns(lab.gateway, firewall, "remove", "--nft", check=False)


def test_the_rule_files_check(lab):
    for variant in ("dnsgate", "dnsgate.closed"):
        for tool, family in (("iptables-restore", "v4"), ("ip6tables-restore", "v6")):
            with open(ROOT / "iptables" / f"{variant}.rules.{family}") as rules:
                result = subprocess.run(["ip", "netns", "exec", lab.gateway, tool, "--test", "--noflush"], stdin=rules,
                                        capture_output=True, text=True)
            assert result.returncode == 0, (variant, family, result.stderr)
