# SPDX-License-Identifier: GPL-2.0-or-later
"""A DNSSEC-signed authority behind the lab's gateway and validating
forwarders in front of it, all real programs.

`SignedAuthority(lab).start()` signs, at run time, with BIND's
dnssec-keygen / dnssec-signzone (Debian: bind9-utils):

    example.              signed (NSEC); its DS is the validators' only trust
                          anchor, a stand-in for the root-to-TLD chain
      other.example       A
    signed.example.       delegated with a DS, signed
      www, news, ads, x.ads, adsx   A / AAAA
      sub.signed.example. delegated with a DS, signed
    unsigned.example.     delegated without a DS (provably insecure), unsigned
      www, tracker        A / AAAA

and serves them from one authoritative BIND (named) in the lab's upstream
namespace on 198.51.100.60 / 2001:db8:2::60, with its query log on (what
crossed the gateway).

`UpstreamResolver(lab, authority).start()` runs a validating Unbound in the
upstream namespace on 198.51.100.61 / 2001:db8:2::61 that iterates from the
authority down: a resolver beyond the gateway, as an ISP's or a public one,
whose answers are not authoritative (AA=0), like a forged one.

`Validator(lab, kind, authority, upstream=..., mode=...).start()` runs a
validating resolver in the lab's client namespace on an address of its own
(its queries leave from that address and cross the gateway):

    unbound  192.0.2.60  2001:db8:1::60
    named    192.0.2.61  2001:db8:1::61
    kresd    192.0.2.62  2001:db8:1::62

Each validates with `example.`'s DS as its only trust anchor and, in mode
"forward", forwards `example.` and below to `upstream` (the upstream resolver
or the authority); in mode "recursive" (Unbound stub-zone, BIND static-stub)
it iterates from the authority down itself. It recurses nowhere else.
`stop()` ends every process by its PID and removes the addresses; each process
is also in `lab.processes`, so `Lab.down()` ends it.

Only documentation addresses are used.
"""
import re
import shutil
import subprocess
import time
from pathlib import Path

AUTH_V4, AUTH_V6 = "198.51.100.60", "2001:db8:2::60"
RESOLVER_V4, RESOLVER_V6 = "198.51.100.61", "2001:db8:2::61"
TLD = "example"                  # signed: the trust anchor (a stand-in for the root and a TLD)
ZONE = "signed.example"          # signed, delegated with a DS
INSECURE = "unsigned.example"    # delegated without a DS: provably insecure
WWW_V4, WWW_V6 = "203.0.113.80", "2001:db8:ff::80"
NEWS_V4 = "203.0.113.81"
ADS_V4, ADS_V6 = "203.0.113.82", "2001:db8:ff::82"
ADSX_V4 = "203.0.113.83"
SUB_V4 = "203.0.113.84"
UNSIGNED_V4 = "203.0.113.85"
TRACKER_V4, TRACKER_V6 = "203.0.113.87", "2001:db8:ff::87"
OTHER_V4 = "203.0.113.86"

VALIDATORS = {
    "unbound": ("192.0.2.60", "2001:db8:1::60"),
    "named": ("192.0.2.61", "2001:db8:1::61"),
    "kresd": ("192.0.2.62", "2001:db8:1::62"),
}
PROGRAMS = {"unbound": "unbound", "named": "named", "kresd": "kresd"}
READY_TIMEOUT = 20.0


def find_binary(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.exists()),
                                      None)


def missing_tools() -> list[str]:
    tools = ("named", "dnssec-keygen", "dnssec-signzone", "dnssec-dsfromkey")
    return [tool for tool in tools if find_binary(tool) is None]


def _run(*args: str, cwd: Path) -> str:
    return subprocess.run(list(args), cwd=cwd, check=True, capture_output=True, text=True, timeout=60).stdout


def _keys(directory: Path, zone: str) -> tuple[str, str]:
    """A KSK and a ZSK (ECDSA P-256: fast to make, small to send)."""
    ksk = _run("dnssec-keygen", "-q", "-a", "ECDSAP256SHA256", "-f", "KSK", "-K", str(directory), zone, cwd=directory)
    zsk = _run("dnssec-keygen", "-q", "-a", "ECDSAP256SHA256", "-K", str(directory), zone, cwd=directory)
    return ksk.strip(), zsk.strip()


def _sign(directory: Path, zone: str, text: str) -> tuple[Path, list[str]]:
    """Writes and signs `zone`; returns the signed file and the zone's DS records."""
    ksk, zsk = _keys(directory, zone)
    source = directory / f"{zone}.zone"
    source.write_text(text + f"$INCLUDE {directory / (ksk + '.key')}\n$INCLUDE {directory / (zsk + '.key')}\n")
    signed = directory / f"{zone}.zone.signed"
    _run("dnssec-signzone", "-q", "-K", str(directory), "-d", str(directory), "-o", zone, "-f", str(signed),
         str(source), ksk + ".private", zsk + ".private", cwd=directory)
    ds = _run("dnssec-dsfromkey", "-2", str(directory / (ksk + ".key")), cwd=directory)
    return signed, [line.strip() for line in ds.splitlines() if line.strip()]


def _wait_for(lab, namespace: str, server: str, name: str, rdtype: str, want: str, process: subprocess.Popen,
              timeout: float = READY_TIMEOUT) -> str | None:
    """None once `server` answers `name`/`rdtype` with `want` in the answer, else why not."""
    deadline = time.monotonic() + timeout
    last = ""
    for _ in range(400):
        if process.poll() is not None:
            return f"exited with {process.returncode}"
        if time.monotonic() > deadline:
            break
        out = lab.ns(namespace, "dig", f"@{server}", "+tries=1", "+time=1", name, rdtype, check=False).stdout
        if want in out:
            return None
        last = out
        time.sleep(0.2)
    return f"{server} did not answer {name} {rdtype} with {want!r} within {timeout:.0f} s:\n{last}"


def _add_addresses(lab, namespace: str, link: str, v4: str, v6: str) -> list[str]:
    """Puts `v4`/24 and `v6`/64 on `link` in `namespace`; returns the prefixes, for `_remove_addresses`."""
    prefixes = [f"{v4}/24", f"{v6}/64"]
    for prefix in prefixes:
        ipv6 = ":" in prefix
        lab.ns(namespace, "ip", *(["-6"] if ipv6 else []), "addr", "replace", prefix, "dev", link,
               *(["nodad"] if ipv6 else []))
    return prefixes


def _remove_addresses(lab, namespace: str, link: str, prefixes: list[str]) -> None:
    for prefix in prefixes:
        lab.ns(namespace, "ip", *(["-6"] if ":" in prefix else []), "addr", "del", prefix, "dev", link, check=False)
    prefixes.clear()


def _stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()  # `ip netns exec` execs the program: this is its PID
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)



def validating_unbound_server(v4: str, v6: str, directory: Path, trust_anchors: list[str], extra: str = "") -> str:
    """The `server:` clause of a validating Unbound on `v4` and `v6` that stays
    in the foreground and trusts `trust_anchors` (DS records); `extra` adds lines."""
    anchors = "".join(f'  trust-anchor: "{line}"\n' for line in trust_anchors)
    return f"""server:
  interface: {v4}
  interface: {v6}
  port: 53
  access-control: 0.0.0.0/0 allow
  access-control: ::/0 allow
  num-threads: 1
  do-daemonize: no
  use-syslog: no
  logfile: ""
  chroot: ""
  username: ""
  directory: "{directory}"
  pidfile: ""
  module-config: "validator iterator"
  verbosity: 1
  so-reuseport: no
{extra}{anchors}"""

class SignedAuthority:
    """An authoritative named for example., signed.example. and its children."""

    def __init__(self, lab, v4: str = AUTH_V4, v6: str = AUTH_V6):
        self.lab, self.v4, self.v6 = lab, v4, v6
        self.dir = lab.dir / "dnssec-authority"
        self.process: subprocess.Popen | None = None
        self.ds: list[str] = []
        self.addresses: list[str] = []
        self.mark = 0

    @property
    def query_log(self) -> Path:
        return self.dir / "queries.log"

    def queries(self, since_mark: bool = False) -> list[tuple[str, str, str]]:
        """(name, type, flags) of every query named received, in order (from
        the last `mark` with since_mark); flags as named logs them (+ RD,
        E(0) EDNS, D DO, C CD, S signed, T TCP, K cookie ...)."""
        if not self.query_log.exists():
            return []
        found = []
        for line in self.query_log.read_text(errors="replace").splitlines():
            match = re.search(r"query: (\S+) IN (\S+) (\S+)", line)
            if match:
                found.append((match.group(1).lower().rstrip("."), match.group(2), match.group(3)))
        return found[self.mark:] if since_mark else found

    def set_mark(self) -> None:
        """`queries(since_mark=True)` returns only what comes after this."""
        self.mark = len(self.queries())

    def start(self) -> "SignedAuthority":
        self.dir.mkdir(parents=True, exist_ok=True)
        soa = "ns.example. hostmaster.example. 1 3600 600 86400 300"
        sub, sub_ds = _sign(self.dir, f"sub.{ZONE}", f"""$TTL 300
@ IN SOA {soa}
@ IN NS ns.example.
@ IN A {SUB_V4}
www IN A {SUB_V4}
""")
        unsigned = self.dir / f"{INSECURE}.zone"
        unsigned.write_text(f"""$TTL 300
@ IN SOA {soa}
@ IN NS ns.example.
www IN A {UNSIGNED_V4}
tracker IN A {TRACKER_V4}
tracker IN AAAA {TRACKER_V6}
""")
        child_ds = "".join(line.replace(f"sub.{ZONE}.", "sub", 1) + "\n" for line in sub_ds)
        signed, signed_ds = _sign(self.dir, ZONE, f"""$TTL 300
@ IN SOA {soa}
@ IN NS ns.example.
@ IN A {WWW_V4}
www IN A {WWW_V4}
www IN AAAA {WWW_V6}
news IN A {NEWS_V4}
ads IN A {ADS_V4}
ads IN AAAA {ADS_V6}
x.ads IN A {ADS_V4}
adsx IN A {ADSX_V4}
sub IN NS ns.example.
{child_ds}""")
        zone_ds = "".join(line.replace(f"{ZONE}.", "signed", 1) + "\n" for line in signed_ds)
        parent, self.ds = _sign(self.dir, TLD, f"""$TTL 300
@ IN SOA {soa}
@ IN NS ns
ns IN A {self.v4}
ns IN AAAA {self.v6}
other IN A {OTHER_V4}
signed IN NS ns
{zone_ds}{INSECURE}. IN NS ns
""")
        config = self.dir / "named.conf"
        config.write_text(f"""options {{
    directory "{self.dir}";
    pid-file "{self.dir}/named.pid";
    lock-file "{self.dir}/named.lock";
    session-keyfile "{self.dir}/session.key";
    managed-keys-directory "{self.dir}";
    listen-on port 53 {{ {self.v4}; }};
    listen-on-v6 port 53 {{ {self.v6}; }};
    recursion no;
    allow-query {{ any; }};
    dnssec-validation no;
    notify no;
    minimal-responses no;
    querylog yes;
}};
controls {{ }};
logging {{
    channel queries {{ file "{self.query_log}"; print-time yes; }};
    channel rest {{ file "{self.dir}/named.log"; print-time yes; severity info; }};
    category queries {{ queries; }};
    category default {{ rest; }};
}};
zone "{TLD}" {{ type primary; file "{parent}"; }};
zone "{ZONE}" {{ type primary; file "{signed}"; }};
zone "sub.{ZONE}" {{ type primary; file "{sub}"; }};
zone "{INSECURE}" {{ type primary; file "{unsigned}"; }};
""")
        self.addresses = _add_addresses(self.lab, self.lab.upstream, "u0", self.v4, self.v6)
        log = open(self.dir / "named.out", "ab")
        # -f (not -g): in the foreground with the logging statement in force (the query log).
        self.process = subprocess.Popen(["ip", "netns", "exec", self.lab.upstream, find_binary("named"), "-f", "-n",
                                         "1", "-c", str(config)], stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, cwd=self.dir)
        log.close()
        self.lab.processes.append(self.process)  # Lab.down() ends it too
        problem = _wait_for(self.lab, self.lab.upstream, self.v4, f"www.{ZONE}", "A", WWW_V4, self.process)
        if problem:
            out = "".join((self.dir / f).read_text(errors="replace")[-2000:]
                          for f in ("named.out", "named.log") if (self.dir / f).exists())
            self.stop()
            raise RuntimeError(f"authoritative named: {problem}\n{out}")
        self.mark = len(self.queries())
        return self

    def stop(self) -> None:
        _stop(self.process)
        self.process = None
        _remove_addresses(self.lab, self.lab.upstream, "u0", self.addresses)


class UpstreamResolver:
    """A resolver on the far side of the gateway, as an ISP's or a public one
    is: Unbound in the upstream namespace on 198.51.100.61 / 2001:db8:2::61,
    validating with the same trust anchor and iterating from example.'s
    server down. Its answers are not authoritative (AA=0), like a forged one,
    so a LAN-side forwarder gives them the same trust in its cache."""

    def __init__(self, lab, authority: SignedAuthority, v4: str = RESOLVER_V4, v6: str = RESOLVER_V6):
        self.lab, self.authority, self.v4, self.v6 = lab, authority, v4, v6
        self.dir = lab.dir / "dnssec-upstream-resolver"
        self.process: subprocess.Popen | None = None
        self.addresses: list[str] = []

    def start(self) -> "UpstreamResolver":
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        config = self.dir / "unbound.conf"
        config.write_text(f"""{validating_unbound_server(self.v4, self.v6, self.dir, self.authority.ds)}stub-zone:
  name: "{TLD}."
  stub-addr: {self.authority.v4}
remote-control:
  control-enable: no
""")
        self.addresses = _add_addresses(self.lab, self.lab.upstream, "u0", self.v4, self.v6)
        log = open(self.dir / "output.log", "ab")
        self.process = subprocess.Popen(["ip", "netns", "exec", self.lab.upstream, find_binary("unbound"), "-d", "-c",
                                         str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=self.dir)
        log.close()
        self.lab.processes.append(self.process)  # Lab.down() ends it too
        problem = _wait_for(self.lab, self.lab.upstream, self.v4, f"other.{TLD}", "A", OTHER_V4, self.process)
        if problem:
            self.stop()
            raise RuntimeError(f"upstream resolver: {problem}")
        return self

    def stop(self) -> None:
        _stop(self.process)
        self.process = None
        _remove_addresses(self.lab, self.lab.upstream, "u0", self.addresses)


class Validator:
    """A validating forwarder in the client namespace (unbound, named or kresd)."""

    def __init__(self, lab, kind: str, authority: SignedAuthority, upstream: str | None = None,
                 mode: str = "forward"):
        # recursive: the validator iterates from example.'s server down the
        # delegations (Unbound stub-zone, BIND static-stub); kresd validates
        # only when forwarding (policy.STUB does not validate).
        assert mode == "forward" or (mode == "recursive" and kind != "kresd"), (kind, mode)
        self.lab, self.kind, self.authority, self.mode = lab, kind, authority, mode
        self.v4, self.v6 = VALIDATORS[kind]
        self.upstream = upstream or authority.v4
        self.dir = lab.dir / f"validator-{kind}-{mode}"
        self.process: subprocess.Popen | None = None
        self.addresses: list[str] = []

    @property
    def binary(self) -> str | None:
        return find_binary(PROGRAMS[self.kind])

    def _ds_parts(self) -> list[tuple[str, str, str, str]]:
        """(key tag, algorithm, digest type, digest) of each DS."""
        parts = []
        for line in self.authority.ds:
            fields = line.split()
            index = fields.index("DS")
            parts.append(tuple(fields[index + 1:index + 4]) + ("".join(fields[index + 4:]),))
        return parts

    def _unbound(self) -> list[str]:
        config = self.dir / "unbound.conf"
        extra = (f"  outgoing-interface: {self.v4}\n  outgoing-interface: {self.v6}\n  val-log-level: 2\n"
                 f"  prefer-ip6: {'yes' if ':' in self.upstream else 'no'}\n")
        config.write_text(f"""{validating_unbound_server(self.v4, self.v6, self.dir, self.authority.ds, extra)}{"forward" if self.mode == "forward" else "stub"}-zone:
  name: "example."
  {"forward" if self.mode == "forward" else "stub"}-addr: {self.upstream}
remote-control:
  control-enable: no
""")
        return [self.binary, "-d", "-c", str(config)]

    def _named(self) -> list[str]:
        anchors = "".join(f'    {TLD}. static-ds {tag} {alg} {dtype} "{digest}";\n'
                          for tag, alg, dtype, digest in self._ds_parts())
        if self.mode == "forward":
            zone = f'zone "{TLD}" {{ type forward; forward only; forwarders {{ {self.upstream}; }}; }};'
        else:
            zone = f'zone "{TLD}" {{ type static-stub; server-addresses {{ {self.upstream}; }}; }};'
        config = self.dir / "named.conf"
        config.write_text(f"""options {{
    directory "{self.dir}";
    pid-file "{self.dir}/named.pid";
    lock-file "{self.dir}/named.lock";
    session-keyfile "{self.dir}/session.key";
    managed-keys-directory "{self.dir}";
    listen-on port 53 {{ {self.v4}; }};
    listen-on-v6 port 53 {{ {self.v6}; }};
    query-source address {self.v4};
    query-source-v6 address {self.v6};
    recursion yes;
    allow-query {{ any; }};
    allow-recursion {{ any; }};
    dnssec-validation yes;
    notify no;
}};
trust-anchors {{
{anchors}}};
controls {{ }};
logging {{ category default {{ default_stderr; }}; category lame-servers {{ default_stderr; }};
           category dnssec {{ default_stderr; }}; }};
{zone}
""")
        return [self.binary, "-g", "-n", "1", "-c", str(config)]

    def _kresd(self) -> list[str]:
        anchors = "".join(f"trust_anchors.add('{line}')\n" for line in self.authority.ds)
        config = self.dir / "kresd.conf"
        config.write_text(f"""-- Knot Resolver in the dnsgate lab: a validating forwarder for example.
net.listen('{self.v4}', 53, {{ kind = 'dns' }})
net.listen('{self.v6}', 53, {{ kind = 'dns' }})
net.outgoing_v4('{self.v4}')
net.outgoing_v6('{self.v6}')
trust_anchors.remove('.')
{anchors}cache.size = 10 * MB
policy.add(policy.suffix(policy.FORWARD('{self.upstream}'), {{ todname('example.') }}))
policy.add(policy.all(policy.REFUSE))
""")
        return [self.binary, "-n", "-c", str(config), str(self.dir)]

    def start(self) -> "Validator":
        if self.binary is None:
            raise FileNotFoundError(f"{PROGRAMS[self.kind]} is not installed")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.addresses = _add_addresses(self.lab, self.lab.client, "c0", self.v4, self.v6)
        command = {"unbound": self._unbound, "named": self._named, "kresd": self._kresd}[self.kind]()
        log = open(self.dir / "output.log", "ab")
        self.process = subprocess.Popen(["ip", "netns", "exec", self.lab.client, *command], stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        log.close()
        self.lab.processes.append(self.process)  # Lab.down() ends it too
        # Ready once it answers a name outside the trust anchor (nothing under
        # signed.example is asked before the test asks it).
        problem = _wait_for(self.lab, self.lab.client, self.v4, "other.example", "A", OTHER_V4, self.process)
        if problem:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"validating {self.kind}: {problem}\n{tail}")
        return self

    def log_tail(self, lines: int = 30) -> str:
        path = self.dir / "output.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        _stop(self.process)
        self.process = None
        _remove_addresses(self.lab, self.lab.client, "c0", self.addresses)


class Answer:
    """The parts of a dig answer a test asserts on."""

    def __init__(self, text: str, seconds: float):
        self.text, self.seconds = text, seconds
        match = re.search(r"status: (\w+)", text)
        self.status = match.group(1) if match else "TIMEOUT"
        flags = re.search(r";; flags: ([a-z ]*);", text)
        self.flags = set(flags.group(1).split()) if flags else set()
        self.records = []
        section = None
        for line in text.splitlines():
            if line.startswith(";; ") and line.endswith("SECTION:"):
                section = line[3:].split()[0]
                continue
            if line.startswith(";") or not line.strip() or section is None:
                continue
            fields = line.split()
            if len(fields) >= 5:
                self.records.append((section, fields[0].lower().rstrip("."), int(fields[1]), fields[3],
                                     " ".join(fields[4:])))

    @property
    def ad(self) -> bool:
        return "ad" in self.flags

    def rrs(self, section: str, rdtype: str | None = None) -> list[tuple[str, int, str]]:
        return [(owner, ttl, data) for sect, owner, ttl, kind, data in self.records
                if sect == section and (rdtype is None or kind == rdtype)]

    def __repr__(self) -> str:
        return f"<{self.status} flags={sorted(self.flags)} {self.seconds:.2f}s>\n{self.text}"


def ask(lab, server: str, name: str, rdtype: str = "A", *options: str, source: str | None = None,
        timeout: int = 4) -> Answer:
    """dig +dnssec from the client namespace."""
    args = ["dig", f"@{server}", "+dnssec", "+tries=1", f"+time={timeout}", "+nocookie", name, rdtype, *options]
    if source:
        args[1:1] = ["-b", source]
    started = time.monotonic()
    out = lab.ns(lab.client, *args, check=False, timeout=timeout + 20).stdout
    return Answer(out, time.monotonic() - started)
