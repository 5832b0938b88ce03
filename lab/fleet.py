# SPDX-License-Identifier: GPL-2.0-or-later
"""A fleet in namespaces: one primary name server (Knot DNS, or NSD) serving a
Response Policy Zone, and gateways (each a `Lab`: client, gateway with its own
dnsgate, resolver) that follow it by zone transfer and NOTIFY.

    primary ns (203.0.113.53, 2001:db8:3::53) -- bridge -- p0 of each gateway (203.0.113.1+i)

The primary's configuration is written the way an operator writes it (see the
README's "Running a fleet"); `knot_config` and `nsd_config` are that text."""
import base64
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from lab import Lab, terminate, wait_until

PRIMARY_V4, PRIMARY_V6 = "203.0.113.53", "2001:db8:3::53"
NOTIFY_PORT = 5300
ZONE = "rpz.example"
KEY_NAME = "fleet-key"
# 32 random bytes, as `keymgr -t fleet-key hmac-sha256` prints them (a lab key).
SECRET = base64.b64encode(bytes(range(32))).decode()


def gateway_v4(index: int) -> str:
    return f"203.0.113.{1 + index}"


def zone_text(serial: int, records: list[str], refresh: int = 3, retry: int = 1, expire: int = 3600) -> str:
    """An RPZ master file: the SOA (timers in seconds), an NS, then `records`
    (relative owners, as operators write them)."""
    return (f"$ORIGIN {ZONE}.\n$TTL 60\n"
            f"@ SOA ns.{ZONE}. admin.{ZONE}. {serial} {refresh} {retry} {expire} 60\n"
            "@ NS localhost.\n" + "".join(line + "\n" for line in records))


def knot_config(directory: Path, gateways: int, secret: str = SECRET) -> str:
    """knotd's configuration: the zone served to the gateways with TSIG, a
    NOTIFY to each on port 5300, IXFR from the differences of each reload of
    the edited zone file."""
    remotes = "".join(f"  - id: gw{i}\n    address: {gateway_v4(i)}@{NOTIFY_PORT}\n    key: {KEY_NAME}\n"
                      for i in range(gateways))
    notify = ", ".join(f"gw{i}" for i in range(gateways))
    return f"""server:
    rundir: "{directory}"
    listen: [ {PRIMARY_V4}@53, {PRIMARY_V6}@53 ]

log:
  - target: "{directory}/knot.log"
    any: info

database:
    storage: "{directory}/db"

key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {secret}

remote:
{remotes}
acl:
  - id: gateways
    address: [ 203.0.113.0/24, 2001:db8:3::/64 ]
    key: {KEY_NAME}
    action: transfer

template:
  - id: default
    storage: "{directory}/zones"
    # Operators edit the zone file and run `knotc zone-reload`: Knot works out
    # the differences (served by IXFR) and raises the serial itself.
    zonefile-load: difference-no-serial
    serial-policy: increment
    journal-content: all
    zonefile-sync: -1

zone:
  - domain: {ZONE}
    file: "{ZONE}.zone"
    notify: [ {notify} ]
    acl: gateways
"""


def nsd_config(directory: Path, gateways: int, secret: str = SECRET) -> str:
    """nsd's configuration: the same zone, key and gateways. NSD (4.6) sends
    NOTIFY over UDP and answers IXFR with the whole zone; operators raise the
    serial in the file themselves and run `nsd-control reload`."""
    notify = "".join(f"    notify: {gateway_v4(i)}@{NOTIFY_PORT} {KEY_NAME}\n" for i in range(gateways))
    return f"""server:
    ip-address: {PRIMARY_V4}
    ip-address: {PRIMARY_V6}
    port: 53
    zonesdir: "{directory}/zones"
    pidfile: "{directory}/nsd.pid"
    xfrdfile: "{directory}/xfrd.state"
    zonelistfile: "{directory}/zone.list"
    database: ""
    logfile: "{directory}/nsd.log"
    username: ""
    verbosity: 2

remote-control:
    control-enable: yes
    control-interface: "{directory}/nsd.ctl"

key:
    name: {KEY_NAME}
    algorithm: hmac-sha256
    secret: "{secret}"

zone:
    name: {ZONE}
    zonefile: "{ZONE}.zone"
{notify}    provide-xfr: 203.0.113.0/24 {KEY_NAME}
    provide-xfr: 2001:db8:3::/64 {KEY_NAME}
"""


def bind_config(directory: Path, gateways: int, secret: str = SECRET) -> str:
    """named's configuration: the same zone, key and gateways. BIND sends
    NOTIFY over UDP and, with `ixfr-from-differences`, keeps the differences
    of each edit of the zone file for IXFR; operators raise the serial in the
    file and run `rndc reload rpz.example` (the tests send SIGHUP, which reloads
    the same way)."""
    notify = " ".join(f"{gateway_v4(i)} port {NOTIFY_PORT} key \"{KEY_NAME}\";" for i in range(gateways))
    return f"""options {{
    directory "{directory}/zones";
    pid-file "{directory}/named.pid";
    session-keyfile "{directory}/session.key";
    managed-keys-directory "{directory}";
    listen-on port 53 {{ {PRIMARY_V4}; }};
    listen-on-v6 port 53 {{ {PRIMARY_V6}; }};
    recursion no;
    dnssec-validation no;
    notify explicit;
    ixfr-from-differences yes;
    // BIND answers IXFR with the whole zone when the differences are larger
    // than the zone (max-ixfr-ratio, 100% by default): a lab zone is tiny.
    max-ixfr-ratio unlimited;
}};
controls {{ }};
logging {{
    channel primary {{ file "{directory}/named.log"; severity info; print-time yes; }};
    category default {{ primary; }};
    category xfer-out {{ primary; }};
    category notify {{ primary; }};
}};
key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{secret}"; }};
zone "{ZONE}" {{
    type primary;
    file "{ZONE}.zone";
    also-notify {{ {notify} }};
    allow-transfer {{ key "{KEY_NAME}"; }};
}};
"""


class Primary:
    """knotd (or nsd, or named) in a namespace of its own, bridged to the gateways."""

    def __init__(self, tag: str, directory: Path, server: str = "knot"):
        self.server = server
        self.namespace = f"{tag}-pri"
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "zones").mkdir(exist_ok=True)
        (self.dir / "db").mkdir(exist_ok=True)
        self.process: subprocess.Popen | None = None
        self.config = self.dir / "knot.conf"
        self.links: list[str] = []

    def ns(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.namespace, *args], check=check, capture_output=True,
                              text=True, timeout=timeout)

    def up(self) -> "Primary":
        subprocess.run(["ip", "netns", "add", self.namespace], check=True)
        self.ns("ip", "link", "set", "lo", "up")
        self.ns("ip", "link", "add", "br0", "type", "bridge")
        self.ns("ip", "addr", "add", f"{PRIMARY_V4}/24", "dev", "br0")
        self.ns("ip", "-6", "addr", "add", f"{PRIMARY_V6}/64", "dev", "br0", "nodad")
        self.ns("ip", "link", "set", "br0", "up")
        return self

    def attach(self, lab: Lab, index: int) -> None:
        """Links `lab`'s gateway to the bridge as 203.0.113.(1+index)."""
        port = f"b{index}"
        subprocess.run(["ip", "link", "add", port, "netns", self.namespace, "type", "veth", "peer", "name", "p0",
                        "netns", lab.gateway], check=True)
        self.ns("ip", "link", "set", port, "master", "br0", "up")
        lab.ns(lab.gateway, "ip", "addr", "add", f"{gateway_v4(index)}/24", "dev", "p0")
        lab.ns(lab.gateway, "ip", "-6", "addr", "add", f"2001:db8:3::{1 + index}/64", "dev", "p0", "nodad")
        lab.ns(lab.gateway, "ip", "link", "set", "p0", "up")

    def write_zone(self, text: str) -> None:
        path = self.dir / "zones" / f"{ZONE}.zone"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(text)
        os.replace(temporary, path)

    def start(self, gateways: int, secret: str = SECRET) -> None:
        if self.server == "nsd":
            self.config = self.dir / "nsd.conf"
            self.config.write_text(nsd_config(self.dir, gateways, secret))
            command = ["nsd", "-d", "-c", str(self.config)]
        elif self.server == "bind":
            self.config = self.dir / "named.conf"
            self.config.write_text(bind_config(self.dir, gateways, secret))
            command = ["named", "-f", "-n", "1", "-c", str(self.config)]  # -f: the logging statement applies
        else:
            self.config.write_text(knot_config(self.dir, gateways, secret))
            command = ["knotd", "-c", str(self.config)]
        self.process = subprocess.Popen(["ip", "netns", "exec", self.namespace, *command],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self.server == "bind":
            wait_until(lambda: self.serial() >= 0, timeout=30, step=0.2)
        else:
            wait_until(lambda: self.control("zonestatus" if self.server == "nsd" else "zone-status", ZONE).returncode == 0,
                       timeout=30, step=0.2)

    def control(self, *args: str) -> subprocess.CompletedProcess:
        program = "nsd-control" if self.server == "nsd" else "knotc"
        return self.ns(program, "-c", str(self.config), *args, check=False)

    def reload(self) -> None:
        """What an operator does after editing the zone file."""
        if self.server == "bind":
            self.process.send_signal(signal.SIGHUP)  # as `rndc reload`; `ip netns exec` execs named
            return
        result = self.control("reload" if self.server == "nsd" else "zone-reload", ZONE)
        assert result.returncode == 0, result.stdout + result.stderr

    def serial(self) -> int:
        out = self.ns("kdig", f"@{PRIMARY_V4}", "+short", ZONE, "SOA").stdout.split()
        return int(out[2]) if len(out) > 2 else -1

    def log(self) -> str:
        path = self.dir / {"nsd": "nsd.log", "bind": "named.log"}.get(self.server, "knot.log")
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            terminate(self.process, timeout=10)  # `ip netns exec` execs knotd: this is its PID
        self.process = None

    def down(self) -> None:
        self.stop()
        subprocess.run(["ip", "netns", "del", self.namespace], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def fleet_config(lab: Lab, index: int, secret_file: Path, refresh_note: str = "") -> str:
    """A gateway's dnsgate config: the RPZ from the primary, blocked as its records say."""
    return f"""queues: "0-1"
stats_socket: {lab.socket_path}
cache_dir: {lab.dir / 'cache'}
notify_listen: ["{gateway_v4(index)}:{NOTIFY_PORT}"]
domain_lists:
  - name: fleet
    zone:
      name: {ZONE}
      primaries: ["{PRIMARY_V4}", "[{PRIMARY_V6}]:53"]
      tsig: {{name: {KEY_NAME}, algorithm: hmac-sha256, secret_file: {secret_file}}}
rule_groups:
  - name: fleet
    priority: 1
    rules:
      - {{name: fleet-rpz, priority: 1, domain_list: fleet, action: BLOCK, block_response: NXDOMAIN}}
"""
