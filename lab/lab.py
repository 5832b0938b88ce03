# SPDX-License-Identifier: GPL-2.0-or-later
"""A throwaway three-namespace lab: client -- gateway (dnsgate) -- upstream.

    client  192.0.2.10, .20      2001:db8:1::10, ::20
       | c0 -- g0
    gateway 192.0.2.1 / 198.51.100.1   2001:db8:1::1 / 2001:db8:2::1   (forwarding, dnsgate)
       | g1 -- u0
    upstream 198.51.100.53        2001:db8:2::53   (lab/upstream.py)

Only documentation prefixes are used. Everything is removed by `down()`,
which also runs at interpreter exit.
"""
import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3"

CLIENT_V4, CLIENT2_V4 = "192.0.2.10", "192.0.2.20"
CLIENT_V6, CLIENT2_V6 = "2001:db8:1::10", "2001:db8:1::20"
GATEWAY_LAN_V4, GATEWAY_LAN_V6 = "192.0.2.1", "2001:db8:1::1"
UPSTREAM_V4, UPSTREAM_V6 = "198.51.100.53", "2001:db8:2::53"


def dnsgate_binary() -> Path:
    configured = os.environ.get("DNSGATE_BIN")
    if configured:
        return Path(configured)
    out = subprocess.run(["swift", "build", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True, check=True)
    return Path(out.stdout.strip()) / "dnsgate"


def release_binary() -> Path:
    """DNSGATE_RELEASE_BIN, or the release build (built here when missing or
    stale): for the tests that measure what ships (memory, a million-record
    swap), which a debug build's packet-path allocations and slower compiles
    would distort."""
    configured = os.environ.get("DNSGATE_RELEASE_BIN")
    if configured:
        return Path(configured)
    subprocess.run(["swift", "build", "-c", "release", "--product", "dnsgate"], cwd=ROOT, check=True,
                   capture_output=True, timeout=3600)
    out = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=600)
    return Path(out.stdout.strip()) / "dnsgate"


def unbound_forwarder_config(listen: str, directory: Path, upstream: str, extra: str = "") -> str:
    """An Unbound that listens on `listen` (IPv4 or IPv6), forwards every name
    to `upstream` and stays in the foreground; `extra` goes into `server:`."""
    ipv6 = ":" in listen or ":" in upstream
    return f"""server:
  interface: {listen}
  port: 53
  access-control: 0.0.0.0/0 allow
  access-control: ::/0 allow
  num-threads: 1
  do-daemonize: no
  use-syslog: no
  chroot: ""
  username: ""
  directory: "{directory}"
  pidfile: ""
  do-ip6: {"yes" if ipv6 else "no"}
  module-config: "iterator"
  verbosity: 0
{extra}forward-zone:
  name: "."
  forward-addr: {upstream}
"""


def named_forwarder_config(listen: str, directory: Path, upstream: str, tcp_only: bool = False,
                           extra: str = "") -> str:
    """A BIND that listens on `listen` (IPv4 or IPv6), forwards every name to
    `upstream` without validating, and keeps no files outside `directory`;
    `tcp_only` sends every query to the upstream over TCP; `extra` goes after
    the options."""
    v4, v6 = (listen, "none") if ":" not in listen else ("none", listen)
    tcp = f"server {upstream} {{ tcp-only yes; }};\n" if tcp_only else ""
    return f"""options {{
  directory "{directory}";
  pid-file none;
  session-keyfile none;
  listen-on port 53 {{ {v4}; }};
  listen-on-v6 port 53 {{ {v6}; }};
  recursion yes;
  allow-query {{ any; }};
  allow-recursion {{ any; }};
  forward only;
  forwarders {{ {upstream}; }};
  dnssec-validation no;
  max-cache-size 16m;
}};
{tcp}controls {{ }};
{extra}"""


def terminate(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, and SIGKILL when the process has not exited within `timeout` s."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def wait_until(predicate, timeout: float = 10.0, step: float = 0.1):
    """The predicate's first true value, polled every `step` for at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not reached in time")


class Lab:
    def __init__(self, name: str | None = None, upstream: bool = True):
        tag = name or f"dg{os.getpid() % 100000}"
        self.client, self.gateway, self.upstream = f"{tag}-cl", f"{tag}-gw", f"{tag}-up"
        self.dir = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
        self.upstream_log = self.dir / "upstream.log"
        self.processes: list[subprocess.Popen] = []
        self.dnsgate: subprocess.Popen | None = None
        self.feed: subprocess.Popen | None = None
        self.upstream_process: subprocess.Popen | None = None
        self.rules_applied: list[str] | None = None
        self.binary = dnsgate_binary()
        self.with_upstream = upstream
        atexit.register(self.down)

    # -- plumbing -------------------------------------------------------------
    def sh(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), check=check, capture_output=True, text=True, **kwargs)

    def ns(self, namespace: str, *args: str, check: bool = True, timeout: float = 30, **kwargs):
        return self.sh("ip", "netns", "exec", namespace, *args, check=check, timeout=timeout, **kwargs)

    def up(self) -> "Lab":
        for namespace in (self.client, self.gateway, self.upstream):
            self.sh("ip", "netns", "add", namespace)
            self.ns(namespace, "ip", "link", "set", "lo", "up")
            # No duplicate address detection: addresses (link-local too) are usable at once.
            for scope in ("all", "default"):
                self.ns(namespace, "sysctl", "-qw", f"net.ipv6.conf.{scope}.accept_dad=0")
        # getent and other glibc clients in the client namespace use the upstream.
        netns_etc = Path("/etc/netns") / self.client
        netns_etc.mkdir(parents=True, exist_ok=True)
        (netns_etc / "resolv.conf").write_text(f"nameserver {UPSTREAM_V4}\noptions timeout:2 attempts:1\n")
        self.sh("ip", "link", "add", "c0", "netns", self.client, "type", "veth", "peer", "name", "g0", "netns", self.gateway)
        self.sh("ip", "link", "add", "g1", "netns", self.gateway, "type", "veth", "peer", "name", "u0", "netns", self.upstream)
        plan = {
            self.client: ("c0", [f"{CLIENT_V4}/24", f"{CLIENT2_V4}/24"], [f"{CLIENT_V6}/64", f"{CLIENT2_V6}/64"]),
            self.upstream: ("u0", [f"{UPSTREAM_V4}/24"], [f"{UPSTREAM_V6}/64"]),
        }
        for namespace, (link, v4s, v6s) in plan.items():
            for address in v4s:
                self.ns(namespace, "ip", "addr", "add", address, "dev", link)
            for address in v6s:
                self.ns(namespace, "ip", "-6", "addr", "add", address, "dev", link, "nodad")
            self.ns(namespace, "ip", "link", "set", link, "up")
        for link, v4, v6 in (("g0", "192.0.2.1/24", "2001:db8:1::1/64"), ("g1", "198.51.100.1/24", "2001:db8:2::1/64")):
            self.ns(self.gateway, "ip", "addr", "add", v4, "dev", link)
            self.ns(self.gateway, "ip", "-6", "addr", "add", v6, "dev", link, "nodad")
            self.ns(self.gateway, "ip", "link", "set", link, "up")
        self.ns(self.client, "ip", "route", "add", "default", "via", GATEWAY_LAN_V4)
        self.ns(self.client, "ip", "-6", "route", "add", "default", "via", GATEWAY_LAN_V6)
        self.ns(self.upstream, "ip", "route", "add", "default", "via", "198.51.100.1")
        self.ns(self.upstream, "ip", "-6", "route", "add", "default", "via", "2001:db8:2::1")
        self.ns(self.gateway, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.ns(self.gateway, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        if self.with_upstream:
            self.start_upstream()
        return self

    def start_upstream(self) -> None:
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.upstream, PYTHON, str(ROOT / "lab" / "upstream.py"),
             str(self.upstream_log), UPSTREAM_V4, UPSTREAM_V6],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.processes.append(process)
        line = process.stdout.readline()
        if "ready" not in line:
            raise RuntimeError(f"upstream did not start: {line}")
        self.upstream_process = process

    def stop_upstream(self) -> bool:
        """Stops lab/upstream.py (by its PID), which frees port 53 on the
        upstream addresses for a real resolver; True when it was running.
        `start_upstream()` brings it back (its query log goes on)."""
        process, self.upstream_process = self.upstream_process, None
        if process is None or process.poll() is not None:
            return False
        terminate(process, timeout=5)  # `ip netns exec` execs python: this is its PID
        if process.stdout is not None:
            process.stdout.close()
        return True

    def start_feed_server(self, folder: Path, tls: bool = False) -> Path:
        """Serves `folder` from the resolver host: http://198.51.100.53:8080/NAME
        (and https on :8443 with a certificate the gateway trusts). Returns the
        request log. A feed server started earlier is stopped first."""
        if self.feed is not None and self.feed.poll() is None:
            self.feed.terminate()
            self.feed.wait(timeout=5)
        log = folder / "requests.jsonl.log"
        args = [PYTHON, str(ROOT / "lab" / "feedserver.py"), str(folder), str(log), UPSTREAM_V4, "8080"]
        if tls:
            certificate, key = self.dir / "feed.crt", self.dir / "feed.key"
            self.sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=feeds.lab",
                    "-addext", f"subjectAltName=IP:{UPSTREAM_V4}", "-keyout", str(key), "-out", str(certificate))
            self.trust_in_gateway(certificate)
            args += ["8443", str(certificate), str(key)]
        process = subprocess.Popen(["ip", "netns", "exec", self.upstream, *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        self.processes.append(process)
        self.feed = process
        if "ready" not in process.stdout.readline():
            raise RuntimeError("feed server did not start")
        return log

    def trust_in_gateway(self, certificate: Path) -> None:
        """The gateway namespace gets its own /etc/ssl (ip netns exec bind-mounts
        /etc/netns/NAME/ssl over /etc/ssl): the system bundle plus `certificate`."""
        ssl_dir = Path("/etc/netns") / self.gateway / "ssl"
        (ssl_dir / "certs").mkdir(parents=True, exist_ok=True)
        system = Path("/etc/ssl/certs/ca-certificates.crt")
        bundle = (system.read_text() if system.exists() else "") + certificate.read_text()
        (ssl_dir / "certs" / "ca-certificates.crt").write_text(bundle)
        if Path("/etc/ssl/openssl.cnf").exists():
            shutil.copy("/etc/ssl/openssl.cnf", ssl_dir / "openssl.cnf")

    # -- the firewall -----------------------------------------------------------
    def apply_rules(self, *options: str) -> None:
        self.remove_rules()
        self.ns(self.gateway, str(ROOT / "iptables" / "dnsgate-firewall"), "apply", *options)
        self.rules_applied = list(options)

    def remove_rules(self) -> None:
        if self.rules_applied is not None:
            self.ns(self.gateway, str(ROOT / "iptables" / "dnsgate-firewall"), "remove", check=False)
            self.rules_applied = None

    def write_config(self, text: str, name: str = "dnsgate.yaml") -> Path:
        path = self.dir / name
        path.write_text(text)
        return path

    @property
    def socket_path(self) -> Path:
        return self.dir / "dnsgate.sock"

    def start_dnsgate(self, config: Path, wait: float = 10, cwd: Path | None = None) -> subprocess.Popen:
        """Runs dnsgate with `config` (relative to `cwd` when given) until its
        stats socket answers."""
        self.stop_dnsgate()
        stderr = open(self.dir / "dnsgate.stderr", "a")
        self.dnsgate = subprocess.Popen(["ip", "netns", "exec", self.gateway, str(self.binary), "run", "--config", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=stderr, cwd=cwd)
        self.processes.append(self.dnsgate)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.dnsgate.poll() is not None:
                raise RuntimeError(f"dnsgate exited with {self.dnsgate.returncode}: {self.dnsgate_stderr()}")
            if self.socket_path.exists() and self.try_stats() is not None:
                return self.dnsgate
            time.sleep(0.05)
        raise RuntimeError(f"dnsgate did not come up: {self.dnsgate_stderr()}")

    def stop_dnsgate(self) -> None:
        if self.dnsgate is not None and self.dnsgate.poll() is None:
            self.dnsgate.send_signal(signal.SIGTERM)
            try:
                self.dnsgate.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.dnsgate.kill()
                self.dnsgate.wait()
        self.dnsgate = None

    def dnsgate_stderr(self) -> str:
        path = self.dir / "dnsgate.stderr"
        return path.read_text() if path.exists() else ""

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.sh(str(self.binary), *args, check=check, timeout=30)

    def try_stats(self) -> dict | None:
        result = self.cli("stats", "--json", "--socket", str(self.socket_path), check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def stats(self) -> dict:
        stats = self.try_stats()
        assert stats is not None, "stats socket did not answer"
        return stats

    # -- queries ------------------------------------------------------------------
    def dig(self, *args: str, server: str = UPSTREAM_V4, timeout: float = 30) -> str:
        return self.ns(self.client, "dig", f"@{server}", "+tries=1", "+time=2", *args, check=False, timeout=timeout).stdout

    def upstream_queries(self) -> list[str]:
        return self.upstream_log.read_text().splitlines() if self.upstream_log.exists() else []

    def down(self) -> None:
        self.stop_dnsgate()
        for process in self.processes:
            terminate(process, timeout=5)
        self.processes = []
        self.remove_rules()
        for namespace in (self.client, self.gateway, self.upstream):
            self.sh("ip", "netns", "del", namespace, check=False)
        shutil.rmtree(Path("/etc/netns") / self.client, ignore_errors=True)
        shutil.rmtree(Path("/etc/netns") / self.gateway, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)
