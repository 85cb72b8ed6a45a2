"""A local HTTP server on 127.0.0.1 for download tests: serves bytes, honours Range, and can cut
the first response short to simulate an interrupted transfer."""
import contextlib
import http.server
import threading


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}
    cut_first: set = set()
    ranges: bool = True
    log: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        self.log.append((self.path, rng))
        if rng and self.ranges:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.cut_first:
            self.cut_first.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@contextlib.contextmanager
def serve(files: dict, *, cut_first=(), ranges=True):
    handler = type("H", (_Handler,), {"files": dict(files), "cut_first": set(cut_first),
                                      "ranges": ranges, "log": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
