"""A small HTTP service for the role's retry_tasks tests, on 127.0.0.1 and a free port.

    python3 http_service.py PORTFILE

Writes its port to PORTFILE once it listens; the test stops it by pid (it also exits by
itself after ten minutes, so a crashed test leaves nothing running).
  GET /flaky/<name>/<n>  503 for the first n requests of <name>, then 200 {"ok": true, "n": k}
  GET /status/<code>     always <code>
  GET /stats             {"<path>": requests so far, ...}
"""
import http.server
import json
import os
import sys
import threading

counts = {}
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if parts == ["stats"]:
            with lock:
                return self.answer(200, dict(counts))
        with lock:
            counts[self.path] = counts.get(self.path, 0) + 1
            k = counts[self.path]
        if len(parts) == 3 and parts[0] == "flaky" and parts[2].isdigit():
            if k <= int(parts[2]):
                return self.answer(503, {"error": "service unavailable", "n": k})
            return self.answer(200, {"ok": True, "n": k})
        if len(parts) == 2 and parts[0] == "status" and parts[1].isdigit():
            return self.answer(int(parts[1]), {"status": int(parts[1]), "n": k})
        return self.answer(400, {"error": "unknown path"})

    def log_message(self, *args):
        pass


def main():
    portfile = sys.argv[1]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Timer(600, lambda: os._exit(0)).start()
    with open(portfile + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(portfile + ".tmp", portfile)
    srv.serve_forever()


if __name__ == "__main__":
    main()
