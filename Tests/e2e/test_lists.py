# SPDX-License-Identifier: GPL-2.0-or-later
"""Lists end to end: every format on the wire, remote lists with refresh and
outages, reload under load, and the top-talkers window."""
import json
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lab import CLIENT2_V4, CLIENT_V4, ROOT, UPSTREAM_V4, wait_until

SHARED = ROOT.parent / "shared" / "data" / "blocklists"

FORMATS = {
    "plain.txt": "# domains format\nplain.example\n*.wild.example\n",
    "hosts.txt": "127.0.0.1 localhost\n0.0.0.0 hosted.example also-hosted.example # two\n",
    "adblock.txt": "! adblock\n||adblocked.example^\n@@||fine.adblocked.example^\n||cdn.example^$third-party\n",
    "zone.rpz": """$TTL 300
$ORIGIN rpz.lab.
@ SOA ns.lab. admin.lab. 1 3600 600 86400 60
  NS ns.lab.
nx.rpz.example CNAME .
*.nx.rpz.example CNAME .
nodata.rpz.example CNAME *.
ok.nx.rpz.example CNAME rpz-passthru.
drop.rpz.example CNAME rpz-drop.
walled.rpz.example CNAME garden.example.net.
local.rpz.example A 192.0.2.99
""",
}


def policy(lab, lists: list[str], extra_lists: str = "", extra_rules: str = "", **top) -> Path:
    entries = "".join(f"  - {{name: l{i}, file: {name}}}\n" for i, name in enumerate(lists))
    rules = "".join(f"      - {{name: r{i}, priority: {i + 1}, domain_list: l{i}, action: BLOCK}}\n"
                    for i in range(len(lists)))
    head = "".join(f"{key}: {value}\n" for key, value in top.items())
    return lab.write_config(f"""queues: "0-1"
stats_socket: {lab.socket_path}
cache_dir: {lab.dir / 'cache'}
{head}domain_lists:
{entries}{extra_lists}rule_groups:
  - name: g
    priority: 1
    rules:
{rules}{extra_rules}""")


@pytest.fixture
def fresh(lab):
    lab.apply_rules()
    yield lab
    lab.stop_dnsgate()
    lab.remove_rules()


def rcode(client, name, qtype="A", source=CLIENT_V4, timeout=2.0):
    response = client.probe(name, qtype=qtype, source=source, timeout=timeout)
    return "TIMEOUT" if response["timeout"] else response["rcode"]


def test_every_list_format_on_the_wire(fresh, client):
    lab = fresh
    for name, text in FORMATS.items():
        (lab.dir / name).write_text(text)
    lab.start_dnsgate(policy(lab, list(FORMATS)))
    assert rcode(client, "plain.example") == "NXDOMAIN"
    assert rcode(client, "x.wild.example") == "NXDOMAIN" and rcode(client, "wild.example") == "NOERROR"
    assert rcode(client, "hosted.example") == "NXDOMAIN" and rcode(client, "also-hosted.example") == "NXDOMAIN"
    assert rcode(client, "sub.hosted.example") == "NOERROR"
    assert rcode(client, "adblocked.example") == "NXDOMAIN" and rcode(client, "deep.adblocked.example") == "NXDOMAIN"
    assert rcode(client, "fine.adblocked.example") == "NOERROR", "@@ exception"
    assert rcode(client, "cdn.example") == "NOERROR", "a rule with modifiers is skipped, not misread"
    # RPZ: each entry's own action.
    assert rcode(client, "nx.rpz.example") == "NXDOMAIN" and rcode(client, "a.nx.rpz.example") == "NXDOMAIN"
    nodata = client.probe("nodata.rpz.example")
    assert nodata["rcode"] == "NOERROR" and nodata["answer"] == [] and nodata["authority"][0]["type"] == "SOA"
    passed = client.probe("ok.nx.rpz.example")
    assert passed["answer"][0]["data"] == ["203.0.113.7"], "rpz-passthru lets it through"
    assert rcode(client, "drop.rpz.example", timeout=1.0) == "TIMEOUT"
    walled = client.probe("walled.rpz.example", qtype="AAAA")
    assert walled["answer"][0]["type"] == "CNAME" and walled["answer"][0]["data"] == ["garden.example.net."]
    assert client.probe("local.rpz.example")["answer"][0]["data"] == ["192.0.2.99"]
    stats = lab.stats()
    formats = {entry["file"].rsplit("/", 1)[-1]: (entry["format"], entry["entries"]) for entry in stats["lists"]}
    assert formats == {"plain.txt": ("domains", 2), "hosts.txt": ("hosts", 2), "adblock.txt": ("adblock", 2),
                       "zone.rpz": ("rpz", 7)}
    assert stats["verdicts"]["allow"] == 1, "passthru counts as allow"


def test_check_and_explain_report_lists(lab):
    for name, text in FORMATS.items():
        (lab.dir / name).write_text(text)
    config = policy(lab, list(FORMATS))
    out = lab.cli("check", "--config", str(config)).stdout
    assert re.search(r"list l2: adblock, 2 entries, 1 lines skipped \(1 modifiers\)", out), out
    assert re.search(r"list l3: rpz, 7 entries, 0 lines skipped", out), out
    explained = lab.cli("explain", "ok.nx.rpz.example", "--config", str(config)).stdout
    assert "decision: ALLOW by rule g/r3, list l3 (the list entry's own action)" in explained
    assert f"entry:   ok.nx.rpz.example (exact) at {lab.dir}/zone.rpz:8" in explained


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is absent: published-list tests skipped")
def test_published_lists_through_the_gateway(fresh, client):
    lab = fresh
    hagezi = SHARED / "hagezi_fake_2022-07-24"
    config = lab.write_config(f"""queues: "0-1"
stats_socket: {lab.socket_path}
domain_lists:
  - {{name: adblock, file: {hagezi / 'adblock_fake.txt'}}}
  - {{name: wildcard, file: {hagezi / 'wildcard_fake.txt'}, match_subdomains: true}}
  - {{name: adaway, file: {SHARED / 'adaway' / 'hosts.txt'}}}
  - {{name: rpz, file: {SHARED / 'powerdns_fuzz_rpz' / 'basic.rpz'}}}
rule_groups:
  - name: g
    priority: 1
    rules:
      - {{name: adblock, priority: 1, domain_list: adblock, action: BLOCK, block_response: NODATA}}
      - {{name: wildcard, priority: 2, domain_list: wildcard, action: BLOCK}}
      - {{name: adaway, priority: 3, domain_list: adaway, action: BLOCK}}
      - {{name: rpz, priority: 4, domain_list: rpz, action: BLOCK}}
""")
    lab.start_dnsgate(config)
    hosts = [line.split()[1] for line in (hagezi / "hosts_fake.txt").read_text().splitlines() if line.startswith("0.0.0.0 ")]
    for name in hosts[::1400]:
        response = client.probe(name)
        assert response["rcode"] == "NOERROR" and response["answer"] == [], name  # adblock rule answers NODATA
    assert client.probe("below." + hosts[7])["answer"] == []
    adaway = [line.split()[1] for line in (SHARED / "adaway" / "hosts.txt").read_text().splitlines()
              if line.startswith("127.0.0.1 ") and "localhost" not in line]
    assert rcode(client, adaway[len(adaway) // 2]) == "NXDOMAIN"
    assert rcode(client, "nxdomain.org") == "NXDOMAIN"
    assert client.probe("mail.nxdomain-apix.org")["answer"], "rpz passthru"
    entries = {entry["name"]: entry["entries"] for entry in lab.stats()["lists"]}
    assert entries["adblock"] == 7355 and entries["wildcard"] == 7355


def feed_policy(lab, url: str, refresh: str = "1s", extra: str = "") -> Path:
    return lab.write_config(f"""queues: "0-1"
stats_socket: {lab.socket_path}
cache_dir: {lab.dir / 'cache'}
domain_lists:
  - name: remote
    url: {url}
    refresh: {refresh}
    format: domains
{extra}rule_groups:
  - name: g
    priority: 1
    rules:
      - {{name: r, priority: 1, domain_list: remote, action: BLOCK}}
""", "feed.yaml")


def remote_status(lab) -> dict:
    return next(entry for entry in lab.stats()["lists"] if entry["name"] == "remote")


def test_remote_list_refresh_conditional_requests_and_outage(fresh, client):
    lab = fresh
    folder = lab.dir / "feed"
    folder.mkdir(exist_ok=True)
    (folder / "remote.txt").write_text("remote1.example\n")
    requests = lab.start_feed_server(folder)
    lab.start_dnsgate(feed_policy(lab, f"http://{UPSTREAM_V4}:8080/remote.txt"))
    # Start-up never waits on the network: the feed thread fetches, then reloads.
    wait_until(lambda: remote_status(lab)["entries"] == 1, timeout=10)
    assert rcode(client, "remote1.example") == "NXDOMAIN"
    status = remote_status(lab)
    assert status["url"].endswith("/remote.txt") and status["last_success"] and status["last_error"] is None
    generation = lab.stats()["policy"]["generation"]
    # Unchanged: conditional requests answered 304.
    wait_until(lambda: any(json.loads(l)["status"] == 304 for l in requests.read_text().splitlines()), timeout=8)
    log = [json.loads(l) for l in requests.read_text().splitlines()]
    assert log[0]["if_none_match"] is None and all(r["if_none_match"] for r in log[1:])
    assert lab.stats()["policy"]["generation"] == generation, "a 304 does not reload"
    # Changed: the new content is fetched and swapped in.
    (folder / "remote.txt").write_text("remote2.example\n")
    wait_until(lambda: lab.stats()["policy"]["generation"] > generation, timeout=8)
    assert rcode(client, "remote2.example") == "NXDOMAIN" and rcode(client, "remote1.example") == "NOERROR"
    # Outage: the previous copy stays in force and the error is reported.
    (folder / "FAIL").write_text("")
    wait_until(lambda: remote_status(lab)["last_error"] == "HTTP 503", timeout=15)
    assert rcode(client, "remote2.example") == "NXDOMAIN"
    # A restart during the outage starts from the cached copy.
    lab.stop_dnsgate()
    lab.start_dnsgate(feed_policy(lab, f"http://{UPSTREAM_V4}:8080/remote.txt"))
    assert rcode(client, "remote2.example") == "NXDOMAIN"
    wait_until(lambda: remote_status(lab)["last_error"] == "HTTP 503", timeout=8)
    # A download with nothing usable in it (a captive portal page, say) is refused.
    (folder / "FAIL").unlink()
    (folder / "remote.txt").write_text("<html><body>Please log in to the network first</body></html>\n")
    wait_until(lambda: "no usable entries" in (remote_status(lab)["last_error"] or ""), timeout=8)
    assert rcode(client, "remote2.example") == "NXDOMAIN"
    metrics = lab.cli("stats", "--metrics", "--socket", str(lab.socket_path)).stdout
    assert 'dnsgate_list_fetch_failing{list="remote"} 1' in metrics


def test_remote_list_behind_a_redirect_and_compressed(fresh, client):
    """A redirect is followed, with the conditional headers; a gzip body is
    decoded, and max_size counts the decoded bytes: a small download that
    inflates past it is refused."""
    lab = fresh
    folder = lab.dir / "feed-moved"
    folder.mkdir(exist_ok=True)
    (folder / "moved.txt.redirect").write_text("/remote.txt")
    (folder / "remote.txt").write_text("".join(f"name{i}.moved.example\n" for i in range(100)))
    (folder / "remote.txt.gzip").write_text("")
    (folder / "packed.txt").write_text("".join(f"name{i}.packed.example\n" for i in range(200)))  # 4490 bytes
    (folder / "packed.txt.gzip").write_text("")  # 487 bytes sent
    requests = lab.start_feed_server(folder)
    lab.start_dnsgate(feed_policy(lab, f"http://{UPSTREAM_V4}:8080/moved.txt", extra=f"""  - name: packed
    url: http://{UPSTREAM_V4}:8080/packed.txt
    max_size: 2K
"""))
    wait_until(lambda: remote_status(lab)["entries"] == 100, timeout=10)
    assert rcode(client, "name7.moved.example") == "NXDOMAIN"
    served = lambda: [json.loads(l) for l in requests.read_text().splitlines() if '"/remote.txt"' in l]
    wait_until(lambda: any(r["status"] == 304 for r in served()), timeout=8)
    assert served()[0]["status"] == 200 and served()[0]["content_encoding"] == "gzip"
    assert all(r["if_none_match"] for r in served()[1:]), "the conditional header follows the redirect"
    assert all(json.loads(l)["status"] == 302 for l in requests.read_text().splitlines() if '"/moved.txt"' in l)
    packed = wait_until(lambda: (s := next(e for e in lab.stats()["lists"] if e["name"] == "packed"))["last_error"]
                        and "max_size" in s["last_error"] and s, timeout=10)
    assert packed["entries"] == 0 and "aborted" in packed["last_error"], packed


def test_remote_list_over_https_and_the_size_cap(fresh, client):
    lab = fresh
    folder = lab.dir / "feed-tls"
    folder.mkdir(exist_ok=True)
    (folder / "secure.txt").write_text("secure.example\n")
    (folder / "big.txt").write_text("".join(f"name{i}.big.example\n" for i in range(200)))
    lab.start_feed_server(folder, tls=True)
    config = feed_policy(lab, f"https://{UPSTREAM_V4}:8443/secure.txt", refresh="100s", extra=f"""  - name: big
    url: https://{UPSTREAM_V4}:8443/big.txt
    max_size: 1K
""")
    lab.start_dnsgate(config)
    # The feed thread fetches the list over HTTPS once the daemon runs; should
    # that first handshake fail (once seen on a loaded CI machine), the failure
    # is reported and the feed thread retries within 10 s: say which, and wait.
    try:
        wait_until(lambda: remote_status(lab)["entries"] == 1, timeout=5)
    except AssertionError:
        print(f"\nfirst HTTPS fetch: {remote_status(lab)}\n{lab.dnsgate_stderr()[-2000:]}")
        wait_until(lambda: remote_status(lab)["entries"] == 1, timeout=20)
    assert rcode(client, "secure.example") == "NXDOMAIN"
    big = next(entry for entry in lab.stats()["lists"] if entry["name"] == "big")
    assert big["entries"] == 0 and "max_size" in big["last_error"]


def dnsperf(lab, queries: Path, seconds: int, rate: int) -> dict:
    out = lab.ns(lab.client, "dnsperf", "-s", UPSTREAM_V4, "-d", str(queries), "-l", str(seconds), "-Q", str(rate),
                 "-t", "2", "-c", "4", timeout=seconds + 30).stdout
    numbers = {key: int(value) for key, value in re.findall(r"Queries (sent|completed|lost):\s+(\d+)", out)}
    assert set(numbers) == {"sent", "completed", "lost"}, out
    return numbers


def test_reload_under_load_loses_no_query_and_bad_configs_change_nothing(fresh, client):
    lab = fresh
    (lab.dir / "load.txt").write_text("blocked.load.example\n")
    config = policy(lab, ["load.txt"])
    good = config.read_text()
    lab.start_dnsgate(config)
    queries = lab.dir / "queries.txt"
    queries.write_text("".join(f"{name} A\n" for name in ["ok1.load.example", "blocked.load.example",
                                                          "ok2.load.example", "x.other.example"] * 50))
    reloads = {"ok": 0, "failed": 0}
    stop = threading.Event()

    def reload_loop():
        flip = 0
        while not stop.is_set():
            flip += 1
            bad = flip % 3 == 0
            config.write_text(good + ("oops: [\n" if bad else ""))
            result = lab.cli("reload", "--socket", str(lab.socket_path), check=False)
            reloads["failed" if result.returncode else "ok"] += 1
            time.sleep(0.1)
        config.write_text(good)

    thread = threading.Thread(target=reload_loop)
    thread.start()
    try:
        numbers = dnsperf(lab, queries, seconds=8, rate=1500)
    finally:
        stop.set()
        thread.join()
    print(f"\nreload under load: {numbers}, reloads {reloads}")
    (lab.dir / "reload-under-load.json").write_text(json.dumps({"dnsperf": numbers, "reloads": reloads}))
    assert numbers["lost"] == 0 and numbers["completed"] == numbers["sent"] and numbers["sent"] > 5000
    assert reloads["ok"] >= 20 and reloads["failed"] >= 10
    stats = lab.stats()
    assert stats["errors"]["reload_failures"] == reloads["failed"]
    assert stats["policy"]["generation"] == 1 + reloads["ok"]
    assert stats["verdicts"]["block"] == stats["responses"]["nxdomain"] > 0


def test_the_first_query_after_a_swap_sees_the_new_policy(fresh, client):
    lab = fresh
    (lab.dir / "swap.txt").write_text("swap0.example\n")
    config = policy(lab, ["swap.txt"])
    lab.start_dnsgate(config)
    for i in range(1, 16):
        (lab.dir / "swap.txt").write_text(f"swap{i}.example\n")
        assert lab.cli("reload", "--socket", str(lab.socket_path)).stdout.startswith("ok")
        assert rcode(client, f"swap{i}.example") == "NXDOMAIN", i
        assert rcode(client, f"swap{i - 1}.example") == "NOERROR", i


def test_top_blocked_names_and_clients(fresh, client):
    lab = fresh
    (lab.dir / "top.txt").write_text("*.top.example\n")
    lab.start_dnsgate(policy(lab, ["top.txt"]))
    for _ in range(5):
        client.probe("a.top.example", source=CLIENT_V4)
    for _ in range(3):
        client.probe("b.top.example", source=CLIENT2_V4)
    client.probe("c.top.example", source=CLIENT2_V4)
    client.probe("allowed.example", source=CLIENT2_V4)

    def ranking():
        report = json.loads(lab.cli("stats", "--top", "--json", "--socket", str(lab.socket_path)).stdout)
        return report if sum(n["blocked"] for n in report["names"]) == 9 else None

    report = wait_until(ranking, timeout=5)
    assert report["window_seconds"] == 600
    assert [(n["name"], n["blocked"]) for n in report["names"]] == [("a.top.example", 5), ("b.top.example", 3),
                                                                     ("c.top.example", 1)]
    assert [(c["client"], c["blocked"]) for c in report["clients"]] == [(CLIENT_V4, 5), (CLIENT2_V4, 4)]
    table = lab.cli("stats", "--top", "--limit", "1", "--socket", str(lab.socket_path)).stdout
    assert "a.top.example" in table and "b.top.example" not in table
