# SPDX-License-Identifier: GPL-2.0-or-later
"""End-to-end fixtures: one namespace lab per test session, dnsgate restarted
per config. Needs root (namespaces, iptables, NFQUEUE)."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))
from lab import CLIENT_V4, CLIENT_V6, PYTHON, Lab  # noqa: E402

if os.geteuid() != 0:
    pytest.skip("end-to-end tests need root (network namespaces, iptables, NFQUEUE)", allow_module_level=True)

# Every program and Python module some end-to-end test runs (scripts/setup
# installs them all). Checked once before any test, so that a missing one is
# one clear message rather than failures scattered through the run.
TOOLS = ["ip", "sysctl", "iptables", "ip6tables", "iptables-save", "ip6tables-save", "iptables-restore",
         "ip6tables-restore", "nft", "dig", "kdig", "getent", "unbound", "named", "kresd", "dnsmasq", "dnsperf",
         "tcpreplay", "tcpdump", "openssl", "setpriv", "taskset", "logrotate", "systemd-analyze", "prometheus",
         "promtool", "knotd", "knotc", "nsd", "nsd-control",
         "fstrm_capture", "dnstap-ldns"]
MODULES = {"dns": "python3-dnspython", "scapy": "python3-scapy", "pycares": "pycares (PyPI)"}


def missing_tools() -> list[str]:
    # Daemons such as unbound and named live in sbin, which a user's PATH may lack.
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [tool for tool in TOOLS if shutil.which(tool, path=path) is None]


def missing_modules(python: str) -> list[str]:
    """Modules that `python` cannot import: the one running the tests imports
    some itself, and the lab runs its helpers with lab.PYTHON."""
    if Path(python).resolve() == Path(sys.executable).resolve():
        return [name for name in MODULES if importlib.util.find_spec(name) is None]
    code = "import importlib.util, sys; print(*[m for m in sys.argv[1:] if importlib.util.find_spec(m) is None])"
    result = subprocess.run([python, "-c", code, *MODULES], capture_output=True, text=True, timeout=60)
    return result.stdout.split() if result.returncode == 0 else list(MODULES)


def pytest_sessionstart(session):
    tools = missing_tools()
    interpreters = dict.fromkeys([sys.executable, PYTHON])
    modules = {python: missing_modules(python) for python in interpreters}
    if tools or any(modules.values()):
        lines = ["the end-to-end tests need what is missing here; run scripts/setup (as root) to install it,",
                 f"and run them with {PYTHON} -m pytest (as scripts/test does):"]
        if tools:
            lines.append("  programs: " + " ".join(tools))
        for python, names in modules.items():
            if names:
                lines.append(f"  Python modules for {python}: " + ", ".join(f"{n} ({MODULES[n]})" for n in names))
        pytest.exit("\n".join(lines), returncode=1)


@pytest.fixture(scope="session")
def lab():
    instance = Lab().up()
    yield instance
    instance.down()


class Client:
    """Queries from the client namespace."""

    def __init__(self, lab: Lab):
        self.lab = lab

    def probe(self, name: str, *, server: str = "198.51.100.53", source: str | None = None, qtype: str = "A",
              cookie: str | None = None, edns: bool = True, qid: int | None = None, timeout: float = 2.0) -> dict:
        args = ["/usr/bin/python3", str(Path(__file__).resolve().parents[2] / "lab" / "probe.py"), server, name,
                "--type", qtype, "--timeout", str(timeout)]
        if source:
            args += ["--source", source]
        if cookie:
            args += ["--cookie", cookie]
        if not edns:
            args += ["--no-edns"]
        if qid is not None:
            args += ["--id", str(qid)]
        result = self.lab.ns(self.lab.client, *args, timeout=timeout + 20)
        return json.loads(result.stdout)

    def send_raw(self, payload: bytes, *, server: str = "198.51.100.53", count: int = 1) -> None:
        """Sends UDP datagrams to port 53 without waiting for an answer."""
        family, source = ("AF_INET6", CLIENT_V6) if ":" in server else ("AF_INET", CLIENT_V4)
        code = (f"import socket; s = socket.socket(socket.{family}, socket.SOCK_DGRAM); s.bind(('{source}', 0)); "
                f"[s.sendto(bytes.fromhex('{payload.hex()}'), ('{server}', 53)) for _ in range({count})]")
        self.lab.ns(self.lab.client, "/usr/bin/python3", "-c", code)


@pytest.fixture(scope="session")
def client(lab):
    return Client(lab)
