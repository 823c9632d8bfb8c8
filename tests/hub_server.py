"""A local stand-in for huggingface.co: the part of the Hub's HTTP API that `from_pretrained` and
`datasets.load_dataset` use, serving repositories from a folder (`<root>/models/<org>/<name>/...`,
`<root>/datasets/<org>/<name>/...`). Pointed at with HF_ENDPOINT, it lets tests fetch Hub ids for real
on a machine with no network. Every request path is recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0" * 40


def _entry(repo: Path, path: Path) -> dict:
    relative = path.relative_to(repo).as_posix()
    if path.is_dir():
        return {"type": "directory", "path": relative, "oid": COMMIT}
    data = path.read_bytes()
    return {"type": "file", "path": relative, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}


class _Handler(BaseHTTPRequestHandler):
    root: Path
    requests: list[str]

    def _route(self, head: bool, body: bytes = b"") -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        self.requests.append(url.path)
        if parts[0] == "api" and len(parts) >= 4 and parts[1] in ("models", "datasets"):
            repo, rest = self.root / parts[1] / parts[2] / parts[3], parts[4:]
            if not repo.is_dir():
                return self._send(404, {"error": "Repository not found"}, head, {"X-Error-Code": "RepoNotFound"})
            if rest[:1] == ["tree"]:
                folder = repo.joinpath(*rest[2:])
                if not folder.is_dir():
                    return self._send(404, {"error": "not found"}, head, {"X-Error-Code": "EntryNotFound"})
                found = folder.rglob("*") if "recursive=true" in url.query else folder.iterdir()
                return self._send(200, [_entry(repo, p) for p in sorted(found)], head)
            if rest[:1] == ["paths-info"]:
                paths = urllib.parse.parse_qs(body.decode()).get("paths", [])
                return self._send(200, [_entry(repo, repo / p) for p in paths if (repo / p).exists()], head)
            files = [{"rfilename": p.relative_to(repo).as_posix()} for p in sorted(repo.rglob("*")) if p.is_file()]
            return self._send(200, {"id": f"{parts[2]}/{parts[3]}", "sha": COMMIT, "siblings": files}, head)
        kind, parts = ("datasets", parts[1:]) if parts[0] == "datasets" else ("models", parts)
        if len(parts) > 4 and parts[2] == "resolve":
            file = self.root / kind / parts[0] / parts[1] / "/".join(parts[4:])
            if file.is_file():
                data = file.read_bytes()
                etag = f'"{hashlib.sha256(data).hexdigest()}"'
                return self._send(200, data, head, {"ETag": etag, "X-Repo-Commit": COMMIT})
        return self._send(404, {"error": "not found"}, head, {"X-Error-Code": "EntryNotFound"})

    def _send(self, code: int, payload: object, head: bool, headers: dict | None = None) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(code)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_POST(self) -> None:
        self._route(head=False, body=self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_hub(root: Path) -> Iterator[tuple[str, list[str]]]:
    """(HF_ENDPOINT url, the request paths it received) while the block runs."""
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"root": Path(root), "requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
