# SPDX-License-Identifier: GPL-2.0-or-later
"""The CPU affinity dnsgate is started with (taskset, systemd's CPUAffinity=)
is a bound no thread leaves: workers are pinned only within it, and a
`worker_cpus` outside it is refused by `check` and at start."""
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from lab import CLIENT_V4, UPSTREAM_V4

CONFIG = """
queues: "0-1"
stats_socket: {socket}
{extra}
domain_lists:
  - {{name: blocked, domains: ["*.pinned.example"]}}
rule_groups:
  - name: base
    priority: 1
    rules:
      - {{name: block, priority: 1, domain_list: blocked, action: BLOCK}}
"""

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 or 1 not in os.sched_getaffinity(0),
                                reason="needs CPUs 0 and 1")


def threads(pid: int) -> dict[str, str]:
    """Each thread's name and Cpus_allowed_list."""
    result = {}
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        name = (task / "comm").read_text().strip()
        allowed = re.search(r"^Cpus_allowed_list:\s*(\S+)", (task / "status").read_text(), re.M).group(1)
        result[f"{name}/{task.name}"] = allowed
    return result


def start_under_taskset(lab, config: Path, cpus: str) -> subprocess.Popen:
    stderr = open(lab.dir / "taskset.stderr", "w")
    # ip netns exec and taskset both exec: the pid is the daemon's.
    process = subprocess.Popen(["ip", "netns", "exec", lab.gateway, "taskset", "-c", cpus, str(lab.binary), "run",
                                "--config", str(config)], stderr=stderr, stdout=subprocess.DEVNULL)
    lab.processes.append(process)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, (lab.dir / "taskset.stderr").read_text()
        if lab.socket_path.exists() and lab.try_stats() is not None:
            return process
        time.sleep(0.05)
    raise AssertionError("dnsgate did not come up: " + (lab.dir / "taskset.stderr").read_text())


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=10)


def test_started_under_taskset_no_thread_leaves_the_inherited_cpus(lab, client):
    config = lab.write_config(CONFIG.format(socket=lab.socket_path, extra=""), "affinity.yaml")
    lab.apply_rules()
    process = start_under_taskset(lab, config, "1")
    try:
        assert client.probe("x.pinned.example", server=UPSTREAM_V4, source=CLIENT_V4)["rcode"] == "NXDOMAIN"
        seen = threads(process.pid)
        assert {name.split("/")[0] for name in seen} >= {"dnsgate-q0", "dnsgate-q1"}, seen
        assert set(seen.values()) == {"1"}, f"a thread left CPU 1: {seen}"
    finally:
        stop(process)
        lab.remove_rules()


def test_by_default_worker_i_runs_on_the_i_th_allowed_cpu(lab):
    config = lab.write_config(CONFIG.format(socket=lab.socket_path, extra=""), "affinity.yaml")
    process = start_under_taskset(lab, config, "0,1")
    try:
        seen = threads(process.pid)
        workers = {name.split("/")[0]: allowed for name, allowed in seen.items() if name.startswith("dnsgate-q")}
        assert workers == {"dnsgate-q0": "0", "dnsgate-q1": "1"}, seen
    finally:
        stop(process)


def test_worker_cpus_outside_the_inherited_cpus_are_refused(lab):
    config = lab.write_config(CONFIG.format(socket=lab.socket_path, extra="worker_cpus: [7]"), "cpu7.yaml")
    check = lab.ns(lab.gateway, "taskset", "-c", "1", str(lab.binary), "check", "--config", str(config), check=False)
    assert check.returncode == 1, check.stdout
    assert (f"{config}:4: error: worker_cpus: CPU 7 is outside the CPUs this process may run on (1); workers are "
            "pinned only within the affinity dnsgate is started with") in check.stdout, check.stdout
    run = subprocess.run(["ip", "netns", "exec", lab.gateway, "taskset", "-c", "1", str(lab.binary), "run",
                          "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 1 and "worker_cpus: CPU 7 is outside the CPUs this process may run on (1)" in run.stderr, \
        run.stderr
    # CPU 0 exists but is not among those given with taskset -c 1.
    config0 = lab.write_config(CONFIG.format(socket=lab.socket_path, extra="worker_cpus: [1, 0]"), "cpu0.yaml")
    check0 = lab.ns(lab.gateway, "taskset", "-c", "1", str(lab.binary), "check", "--config", str(config0), check=False)
    assert check0.returncode == 1 and "worker_cpus: CPU 0 is outside" in check0.stdout, check0.stdout
    within = lab.ns(lab.gateway, "taskset", "-c", "0,1", str(lab.binary), "check", "--config", str(config0), check=False)
    assert within.returncode == 0, within.stdout


def test_worker_cpus_within_the_inherited_cpus_pin_as_given(lab):
    config = lab.write_config(CONFIG.format(socket=lab.socket_path, extra="worker_cpus: [1, 1]"), "cpu11.yaml")
    process = start_under_taskset(lab, config, "0,1")
    try:
        workers = {name.split("/")[0]: allowed for name, allowed in threads(process.pid).items()
                   if name.startswith("dnsgate-q")}
        assert workers == {"dnsgate-q0": "1", "dnsgate-q1": "1"}
    finally:
        stop(process)
