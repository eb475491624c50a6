#!/usr/bin/env python3
"""The service of examples/vip-http: a tiny HTTP server that answers every
GET with the name of the node it runs on, the first line of a file from a
directory (the kind of file `sync_paths` keeps identical on the standby),
and a row read from the local hadr database with `psql -At`.

hadr supervises it (kind = "service"): it runs only on the writable
primary, SIGTERM stops it, and clients reach it at the virtual IP.
"""
import argparse
import http.server
import os
import subprocess


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True, help="the node's name, in every answer")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--www", required=True, help="directory holding index.txt")
    p.add_argument("--db", required=True, help="libpq conninfo of the local node")
    p.add_argument("--pidfile", help="write the pid here (tests kill it)")
    a = p.parse_args()
    if a.pidfile:
        with open(a.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            try:
                with open(os.path.join(a.www, "index.txt")) as f:
                    text = f.readline().strip()
            except OSError as e:
                text = f"(cannot read: {e.strerror})"
            try:
                r = subprocess.run(
                    ["psql", a.db, "-X", "-At", "-c", "SELECT msg FROM greeting WHERE id = 1"],
                    capture_output=True, text=True, timeout=3,
                )
                row = r.stdout.strip() if r.returncode == 0 else "(database: " + r.stderr.strip() + ")"
            except (OSError, subprocess.TimeoutExpired) as e:
                row = f"(database: {e})"
            body = f"node: {a.name}\nfile: {text}\nrow: {row}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            pass

    http.server.ThreadingHTTPServer.allow_reuse_address = True
    srv = http.server.ThreadingHTTPServer(("0.0.0.0", a.port), Handler)
    print(f"serving on 0.0.0.0:{a.port} as {a.name}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
