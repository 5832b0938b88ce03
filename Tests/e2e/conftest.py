# SPDX-License-Identifier: GPL-2.0-or-later
"""End-to-end fixtures: one namespace lab per test session, dnsgate restarted
per config. Needs root (namespaces, iptables, NFQUEUE)."""
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))
from lab import CLIENT_V4, CLIENT_V6, Lab  # noqa: E402

if os.geteuid() != 0:
    pytest.skip("end-to-end tests need root (network namespaces, iptables, NFQUEUE)", allow_module_level=True)


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
