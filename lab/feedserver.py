#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A list feed for the lab: serves the files of a folder over HTTP (and HTTPS
when given a certificate), with ETag / Last-Modified and 304 answers. Each
request is logged as JSON (path, conditional headers, status). A file named
FAIL in the folder makes every answer a 503, for outage tests.

    feedserver.py FOLDER LOG ADDRESS HTTP_PORT [HTTPS_PORT CERT KEY]
"""
import hashlib
import http.server
import json
import os
import ssl
import sys
import threading
from email.utils import formatdate

FOLDER, LOG = sys.argv[1], sys.argv[2]
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = os.path.join(FOLDER, os.path.basename(self.path))
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
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with lock, open(LOG, "a") as log:
            log.write(json.dumps({"path": self.path, "if_none_match": self.headers.get("If-None-Match"),
                                  "if_modified_since": self.headers.get("If-Modified-Since"), "status": status}) + "\n")

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
