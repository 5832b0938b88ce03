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
from lab import Lab, wait_until  # noqa: E402

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
    def __init__(self, tmp: Path):
        self.primary = Primary(f"fl{id(self) % 10000}", tmp / "primary").up()
        self.gateways: list[Lab] = []
        self.serial = 1
        self.records: list[str] = []
        for index in range(GATEWAYS):
            lab = Lab(name=f"fl{index}x{id(self) % 1000}").up()
            self.primary.attach(lab, index)
            self.gateways.append(lab)

    def publish(self, records: list[str], reload: bool = True) -> float:
        """Edits the zone file as an operator does and reloads the primary;
        returns when it did."""
        self.records = records
        self.primary.write_zone(zone_text(1, records))
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
        instance.primary.start(GATEWAYS)
        for index in range(GATEWAYS):
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
