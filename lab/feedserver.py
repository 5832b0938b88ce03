#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A list feed for the lab: serves the files of a folder over HTTP (and HTTPS
when given a certificate), with ETag / Last-Modified and 304 answers. Each
request is logged as JSON (path, conditional headers, status). A file named
FAIL in the folder makes every answer a 503, for outage tests. Two faults of a
feed, per file NAME:

- NAME.stall (exists): the request is read and nothing is sent for as long as
  that file exists (at most 5 minutes), then NAME is served as usual; logged
  as "stalling" when the stall begins.
- NAME.flood (holds a byte count N): a 200 without Content-Length, N bytes of
  list lines sent as fast as the socket takes them, then the connection is
  closed; logged with the bytes actually sent (less when the client gave up).

And two things a real feed does, per file NAME:

- NAME.redirect (holds a path): a 302 to that path.
- NAME.gzip (exists): NAME is sent gzip-compressed to a client that accepts it.

    feedserver.py FOLDER LOG ADDRESS HTTP_PORT [HTTPS_PORT CERT KEY]
"""
import gzip
import hashlib
import http.server
import json
import os
import ssl
import sys
import threading
import time
from email.utils import formatdate

FOLDER, LOG = sys.argv[1], sys.argv[2]
lock = threading.Lock()
STALL_LIMIT_SECONDS = 300
FLOOD_CHUNK = b"".join(b"flood%07d.example\n" % i for i in range(1 << 16))  # 1.4 MB of valid lines


def log(record: dict) -> None:
    with lock, open(LOG, "a") as out:
        out.write(json.dumps(record) + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    def stall(self, marker: str) -> None:
        log({"path": self.path, "status": "stalling"})
        deadline = time.monotonic() + STALL_LIMIT_SECONDS
        while os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.1)

    def flood(self, total: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        sent = 0
        try:
            while sent < total:  # bounded by the byte count
                piece = FLOOD_CHUNK[:total - sent]
                self.wfile.write(piece)
                sent += len(piece)
        except OSError:
            pass  # the client hung up: that is the point
        self.close_connection = True
        log({"path": self.path, "status": 200, "flood": total, "sent": sent})

    def do_GET(self):
        path = os.path.join(FOLDER, os.path.basename(self.path))
        if os.path.exists(path + ".stall"):
            self.stall(path + ".stall")
        if os.path.exists(path + ".flood"):
            self.flood(int(open(path + ".flood").read()))
            return
        if os.path.exists(path + ".redirect"):
            self.send_response(302)
            self.send_header("Location", open(path + ".redirect").read().strip())
            self.send_header("Content-Length", "0")
            self.end_headers()
            log({"path": self.path, "status": 302})
            return
        status, body, headers = 200, b"", {}
        if os.path.exists(os.path.join(FOLDER, "FAIL")):
            status = 503
        elif not os.path.isfile(path):
            status = 404
        else:
            body = open(path, "rb").read()
            headers["ETag"] = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            headers["Last-Modified"] = formatdate(os.path.getmtime(path), usegmt=True)
            if self.headers.get("If-None-Match") == headers["ETag"]:
                status, body = 304, b""
            elif os.path.exists(path + ".gzip") and "gzip" in self.headers.get("Accept-Encoding", ""):
                body = gzip.compress(body)
                headers["Content-Encoding"] = "gzip"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            return  # the client gave up (a stall it timed out)
        log({"path": self.path, "if_none_match": self.headers.get("If-None-Match"),
             "if_modified_since": self.headers.get("If-Modified-Since"), "status": status,
             "content_encoding": headers.get("Content-Encoding")})

    def log_message(self, *args):
        pass


def serve(server):
    server.serve_forever()


def main():
    address, port = sys.argv[3], int(sys.argv[4])
    servers = [http.server.ThreadingHTTPServer((address, port), Handler)]
    if len(sys.argv) > 5:
        secure = http.server.ThreadingHTTPServer((address, int(sys.argv[5])), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[6], sys.argv[7])
        secure.socket = context.wrap_socket(secure.socket, server_side=True)
        servers.append(secure)
    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
