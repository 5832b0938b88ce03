#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Looks names up one after another on one c-ares channel (pycares, c-ares
≥ 1.33, EDNS on, as applications using c-ares do) and prints, per name, the
outcome and how long it took, as JSON lines. c-ares remembers which servers
do DNS cookies, so a forged answer with a made-up server cookie would make it
drop every later answer from a cookie-less server.

    cares_client.py SERVER NAME [NAME ...] [--tcp]
"""
import json
import sys
import threading
import time

import pycares


def main() -> None:
    arguments = [a for a in sys.argv[1:] if not a.startswith("--")]
    server, names = arguments[0], arguments[1:]
    flags = pycares.ARES_FLAG_EDNS | (pycares.ARES_FLAG_USEVC if "--tcp" in sys.argv else 0)
    channel = pycares.Channel(servers=[server], timeout=2.0, tries=2, flags=flags)
    for name in names:
        done = threading.Event()
        outcome = {}

        def answered(result, error, outcome=outcome, done=done):
            if error:
                outcome["error"] = pycares.errno.errorcode.get(error, str(error))
            else:
                outcome["addresses"] = sorted(getattr(r.data, "addr", "") for r in result.answer)
            done.set()

        started = time.monotonic()
        channel.query(name, pycares.QUERY_TYPE_A, callback=answered)
        finished = done.wait(timeout=15)
        print(json.dumps({"name": name, "seconds": round(time.monotonic() - started, 3),
                          **(outcome if finished else {"error": "no callback"})}), flush=True)
    print(json.dumps({"c-ares": getattr(pycares, "ARES_VERSION", "?")}), flush=True)


if __name__ == "__main__":
    main()
