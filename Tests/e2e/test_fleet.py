# SPDX-License-Identifier: GPL-2.0-or-later
"""A fleet: three gateways, each with its own dnsgate, follow a Response Policy
Zone on a Knot DNS primary by AXFR, then NOTIFY and IXFR, with TSIG; the copy
on disk carries them through a primary outage and a restart."""
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))
from fleet import KEY_NAME, NOTIFY_PORT, SECRET, ZONE, Primary, fleet_config, zone_text  # noqa: E402
from lab import Lab, release_binary, wait_until  # noqa: E402

GATEWAYS = 3


def status(lab: Lab, name: str) -> str:
    out = lab.dig(name, "A")
    found = re.search(r"status: (\w+)", out)
    return found.group(1) if found else "TIMEOUT"


def zone_stats(lab: Lab) -> dict:
    zones = lab.stats()["zones"]
    assert len(zones) == 1, zones
    return zones[0]


class Fleet:
    def __init__(self, tmp: Path, server: str = "knot", gateways: int = GATEWAYS):
        self.primary = Primary(f"fl{id(self) % 10000}", tmp / "primary", server).up()
        self.size = gateways
        self.gateways: list[Lab] = []
        self.serial = 0
        self.records: list[str] = []
        # The release build: the 5 s bars and the million-record swap measure what ships.
        binary = release_binary()
        for index in range(gateways):
            lab = Lab(name=f"fl{index}x{id(self) % 1000}").up()
            lab.binary = binary
            self.primary.attach(lab, index)
            self.gateways.append(lab)

    def publish(self, records: list[str], reload: bool = True) -> float:
        """Edits the zone file as an operator does and reloads the primary;
        returns when it did."""
        self.records = records
        self.serial += 1  # Knot raises it itself; NSD takes the file's
        self.primary.write_zone(zone_text(self.serial, records))
        if reload:
            self.primary.reload()
        return time.monotonic()

    def start_gateway(self, index: int, secret: str = SECRET) -> None:
        lab = self.gateways[index]
        key = lab.dir / "fleet.key"
        key.write_text(f'key "{KEY_NAME}" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n')
        lab.apply_rules()
        lab.start_dnsgate(lab.write_config(fleet_config(lab, index, key)))

    def down(self) -> None:
        for lab in self.gateways:
            lab.down()
        self.primary.down()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    instance = Fleet(tmp_path_factory.mktemp("fleet"))
    try:
        instance.publish(["bad1.fleet.example CNAME .", "*.bad1.fleet.example CNAME .",
                          "bad3.fleet.example CNAME ."], reload=False)
        instance.primary.start(instance.size)
        for index in range(instance.size):
            instance.start_gateway(index)
        yield instance
    finally:
        instance.down()


def enforced_everywhere(fleet: Fleet, expected: dict[str, str]) -> bool:
    return all(status(lab, name) == want for lab in fleet.gateways for name, want in expected.items())


def test_every_gateway_transfers_the_zone_and_enforces_it(fleet):
    for lab in fleet.gateways:
        wait_until(lambda: zone_stats(lab)["serial"] is not None, timeout=20)
        zone = zone_stats(lab)
        assert zone["transfers"]["axfr"] >= 1 and zone["last_error"] is None, zone
        assert zone["records"] == 4, zone  # NS and the three triggers
    assert enforced_everywhere(fleet, {"bad1.fleet.example": "NXDOMAIN", "x.bad1.fleet.example": "NXDOMAIN",
                                       "bad3.fleet.example": "NXDOMAIN", "good.fleet.example": "NOERROR"})
    # The zone's series, as the shipped alerts and dashboard read them, in a form promtool accepts.
    metrics = fleet.gateways[0].cli("stats", "--metrics", "--socket", str(fleet.gateways[0].socket_path)).stdout
    for line in (f'dnsgate_zone_serial{{zone="{ZONE}."}} 1', f'dnsgate_zone_failing{{zone="{ZONE}."}} 0',
                 f'dnsgate_zone_expired{{zone="{ZONE}."}} 0', f'dnsgate_zone_transfers_total{{zone="{ZONE}.",kind="axfr"}} 1'):
        assert line in metrics, line
    assert re.search(rf'dnsgate_zone_last_success_timestamp_seconds{{zone="{ZONE}\."}} \d+', metrics)
    check = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_change_on_the_primary_reaches_all_three_by_notify_and_ixfr_within_5_seconds(fleet):
    before = [zone_stats(lab) for lab in fleet.gateways]
    # A name added, one removed, an action changed (bad3 now passes: rpz-passthru).
    reloaded = fleet.publish(["bad2.fleet.example CNAME .", "bad3.fleet.example CNAME rpz-passthru."])
    expected = {"bad1.fleet.example": "NOERROR", "x.bad1.fleet.example": "NOERROR",
                "bad2.fleet.example": "NXDOMAIN", "bad3.fleet.example": "NOERROR"}
    wait_until(lambda: enforced_everywhere(fleet, expected), timeout=5, step=0.1)
    took = time.monotonic() - reloaded
    print(f"\nall {GATEWAYS} gateways enforce the change {took:.2f} s after the primary's reload")
    for lab, earlier in zip(fleet.gateways, before):
        zone = zone_stats(lab)
        assert zone["notifies"] > earlier["notifies"], "the change came by NOTIFY"
        assert zone["transfers"]["ixfr"] > earlier["transfers"]["ixfr"], zone
        assert zone["transfers"]["axfr"] == earlier["transfers"]["axfr"], "by IXFR, not by a new AXFR"
    log = fleet.primary.log()
    assert re.search(r"IXFR, outgoing", log), log[-2000:]


def test_with_notify_blocked_a_change_arrives_by_the_soa_refresh(fleet):
    # Knot sends NOTIFY over TCP, others over UDP: both are blocked.
    for lab in fleet.gateways:
        for protocol in ("udp", "tcp"):
            lab.ns(lab.gateway, "iptables", "-I", "INPUT", "-p", protocol, "--dport", str(NOTIFY_PORT), "-j", "DROP")
    try:
        before = [zone_stats(lab)["notifies"] for lab in fleet.gateways]
        reloaded = fleet.publish(fleet.records + ["bad4.fleet.example CNAME ."])
        # The SOA says refresh 3 s: within it and a check's time.
        wait_until(lambda: enforced_everywhere(fleet, {"bad4.fleet.example": "NXDOMAIN"}), timeout=8, step=0.2)
        print(f"\nwithout NOTIFY: enforced {time.monotonic() - reloaded:.2f} s after the reload (SOA refresh 3 s)")
        assert [zone_stats(lab)["notifies"] for lab in fleet.gateways] == before, "no NOTIFY got through"
    finally:
        for lab in fleet.gateways:
            for protocol in ("udp", "tcp"):
                lab.ns(lab.gateway, "iptables", "-D", "INPUT", "-p", protocol, "--dport", str(NOTIFY_PORT), "-j", "DROP")


def test_a_wrong_tsig_key_is_refused_and_reported(fleet):
    lab = fleet.gateways[2]
    wrong = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI="
    try:
        lab.stop_dnsgate()
        subprocess.run(["rm", "-rf", str(lab.dir / "cache")], check=True)
        fleet.start_gateway(2, secret=wrong)
        wait_until(lambda: zone_stats(lab)["last_error"] is not None, timeout=15)
        zone = zone_stats(lab)
        assert zone["serial"] is None and zone["transfers"]["failed"] >= 1, zone
        assert re.search(r"TSIG|NOTAUTH|key", zone["last_error"]), zone["last_error"]
        assert "no copy yet" in zone["last_error"]
        # Nothing transferred: the zone's names are not enforced by this gateway.
        assert status(lab, "bad2.fleet.example") == "NOERROR"
        print(f"\nwith a wrong key: {zone['last_error']}")
        metrics = lab.cli("stats", "--metrics", "--socket", str(lab.socket_path)).stdout
        assert f'dnsgate_zone_failing{{zone="{ZONE}."}} 1' in metrics
    finally:
        lab.stop_dnsgate()
        fleet.start_gateway(2)
        wait_until(lambda: zone_stats(lab)["serial"] is not None, timeout=20)
    assert status(lab, "bad2.fleet.example") == "NXDOMAIN"


def test_a_primary_outage_and_a_gateway_restart_keep_the_last_copy(fleet):
    lab = fleet.gateways[0]
    fleet.primary.stop()
    try:
        lab.stop_dnsgate()
        fleet.start_gateway(0)
        wait_until(lambda: zone_stats(lab)["last_error"] is not None, timeout=15)
        zone = zone_stats(lab)
        assert "stays in force" in zone["last_error"], zone
        assert status(lab, "bad2.fleet.example") == "NXDOMAIN", "the copy on disk is enforced"
        assert status(lab, "good.fleet.example") == "NOERROR"
    finally:
        fleet.primary.start(GATEWAYS)
    wait_until(lambda: zone_stats(lab)["last_error"] is None, timeout=15)


def test_a_million_record_zone_transfers_and_swaps_without_losing_a_query(fleet, tmp_path):
    lab = fleet.gateways[1]
    before = zone_stats(lab)
    names = 1_000_000
    queries = tmp_path / "queries.txt"
    queries.write_text("".join(f"q{i}.load.example A\n" for i in range(1000)))
    load = subprocess.Popen(["ip", "netns", "exec", lab.client, "dnsperf", "-s", "198.51.100.53", "-d", str(queries),
                             "-l", "120", "-Q", "2000", "-t", "2"], stdout=subprocess.PIPE, text=True)
    try:
        started = time.monotonic()
        fleet.publish(fleet.records + [f"n{i}.big.example CNAME ." for i in range(names)])
        wait_until(lambda: zone_stats(lab)["records"] > names, timeout=90, step=0.5)
        arrived = time.monotonic() - started
        wait_until(lambda: status(lab, f"n{names - 1}.big.example") == "NXDOMAIN", timeout=90, step=0.5)
        swapped = time.monotonic() - started
        assert swapped < 110, "the swap happened while dnsperf was sending"
        out = load.communicate(timeout=150)[0]
    finally:
        if load.poll() is None:
            load.kill()
    zone = zone_stats(lab)
    print(f"\n{names} records: transferred {arrived:.1f} s and enforced {swapped:.1f} s after the primary's reload; "
          f"transfers {zone['transfers']}")
    assert zone["transfers"]["ixfr"] + zone["transfers"]["axfr"] > before["transfers"]["ixfr"] + before["transfers"]["axfr"]
    sent = int(re.search(r"Queries sent:\s+(\d+)", out).group(1))
    lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))
    print(f"dnsperf through the gateway meanwhile: {sent} sent, {lost} lost")
    assert sent > 200_000 and lost == 0, out
    earlier = fleet.records[0].split()[0]  # a name the zone blocked before, still blocked
    assert status(lab, "n0.big.example") == "NXDOMAIN" and status(lab, earlier) == "NXDOMAIN"


@pytest.fixture(scope="module", params=["nsd", "bind"])
def other_fleet(request, tmp_path_factory):
    instance = Fleet(tmp_path_factory.mktemp(request.param), server=request.param, gateways=1)
    try:
        instance.publish(["bad1.fleet.example CNAME ."], reload=False)
        instance.primary.start(instance.size)
        instance.start_gateway(0)
        yield instance
    finally:
        instance.down()


def test_nsd_and_bind_primaries_are_followed_too(other_fleet):
    fleet = other_fleet
    lab = fleet.gateways[0]
    wait_until(lambda: zone_stats(lab)["serial"] == 1, timeout=20)
    assert status(lab, "bad1.fleet.example") == "NXDOMAIN"
    before = zone_stats(lab)
    reloaded = fleet.publish(["bad2.fleet.example CNAME ."])
    wait_until(lambda: status(lab, "bad2.fleet.example") == "NXDOMAIN" and status(lab, "bad1.fleet.example") == "NOERROR",
               timeout=5, step=0.1)
    print(f"\n{fleet.primary.server}: enforced {time.monotonic() - reloaded:.2f} s after the reload")
    zone = zone_stats(lab)
    assert zone["serial"] == 2 and zone["notifies"] > before["notifies"], zone
    if fleet.primary.server == "nsd":
        # NSD 4.6 has no IXFR out: its answer is the whole zone, taken as such.
        assert zone["transfers"]["axfr"] == before["transfers"]["axfr"] + 1, zone
    else:
        assert zone["transfers"]["ixfr"] == before["transfers"]["ixfr"] + 1, zone
        assert re.search(r"IXFR", fleet.primary.log()), fleet.primary.log()[-2000:]
