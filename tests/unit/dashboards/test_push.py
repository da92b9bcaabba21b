"""`wearmon dashboards push` against a small local HTTP server that answers as Grafana's
HTTP API does and records what it was sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from monitoring.dashboards.generate import builders
from monitoring.dashboards.push import annotate, push
from wearmon.errors import ConfigError, GrafanaError
from wearmon.settings import Settings

TOKEN = "glsa_test_token"


class FakeGrafana(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str, dict[str, Any] | None, str]]] = []
    folders: ClassVar[set[str]] = set()
    status = 200

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict[str, Any] | None:
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n)) if n else None
        self.requests.append((self.command, self.path, body, self.headers["Authorization"]))
        return body

    def do_GET(self) -> None:
        self._record()
        uid = self.path.rsplit("/", 1)[-1]
        if self.status != 200:
            self._reply(self.status, {"message": "invalid API key"})
        elif self.path.startswith("/api/folders/") and uid in self.folders:
            self._reply(200, {"uid": uid, "title": uid})
        else:
            self._reply(404, {"message": "folder not found"})

    def do_POST(self) -> None:
        body = self._record() or {}
        if self.path == "/api/folders":
            self.folders.add(body["uid"])
            self._reply(200, {"uid": body["uid"], "title": body["title"], "id": 1})
        elif self.path == "/api/dashboards/db":
            d = body["dashboard"]
            if not (d.get("uid") and d.get("title") and body.get("overwrite") is True):
                self._reply(400, {"message": "bad dashboard"})
                return
            self._reply(200, {"status": "success", "uid": d["uid"], "url": f"/d/{d['uid']}/x"})
        elif self.path == "/api/annotations":
            self._reply(200, {"id": 7, "message": "Annotation added"})
        else:
            self._reply(404, {"message": "not found"})


@pytest.fixture
def grafana() -> Iterator[str]:
    FakeGrafana.requests = []
    FakeGrafana.folders = set()
    FakeGrafana.status = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGrafana)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _settings(url: str, tmp_path: Any) -> Settings:
    return Settings(data_dir=tmp_path, grafana={"url": url, "token": TOKEN})


def test_push_creates_the_folder_and_posts_every_dashboard(grafana: str, tmp_path) -> None:
    urls = push(_settings(grafana, tmp_path))
    reqs = FakeGrafana.requests
    assert [(m, p) for m, p, _, _ in reqs[:2]] == [
        ("GET", "/api/folders/wearmon"),
        ("POST", "/api/folders"),
    ]
    posts = [b for m, p, b, _ in reqs if p == "/api/dashboards/db"]
    assert len(posts) == len(builders()) == len(urls)
    for body in posts:
        assert body["overwrite"] is True and body["folderUid"] == "wearmon"
        assert body["dashboard"]["id"] is None
        assert body["dashboard"]["uid"].startswith("wearmon-")
        assert body["dashboard"]["schemaVersion"] >= 39
    assert all(auth == f"Bearer {TOKEN}" for *_, auth in reqs)
    # a second push finds the folder and creates it no more
    FakeGrafana.requests = []
    push(_settings(grafana, tmp_path), ["drift"])
    assert [p for _, p, _, _ in FakeGrafana.requests] == [
        "/api/folders/wearmon",
        "/api/dashboards/db",
    ]


def test_annotation(grafana: str, tmp_path) -> None:
    annotate(_settings(grafana, tmp_path), "promoted v3", ["wearmon-model"], time_ms=1000)
    ((method, path, body, _),) = FakeGrafana.requests
    assert (method, path) == ("POST", "/api/annotations")
    assert body["text"] == "promoted v3" and body["tags"] == ["wearmon-model"]
    assert body["time"] == 1000


def test_refusal_is_one_line_error(grafana: str, tmp_path) -> None:
    FakeGrafana.status = 401
    with pytest.raises(GrafanaError, match="refused folder 'wearmon'"):
        push(_settings(grafana, tmp_path))


def test_unreachable_and_unconfigured(tmp_path) -> None:
    from wearmon.stack import free_port

    with pytest.raises(GrafanaError, match="unreachable"):
        push(_settings(f"http://127.0.0.1:{free_port()}", tmp_path))
    with pytest.raises(ConfigError, match="WEARMON_GRAFANA__URL"):
        push(Settings(data_dir=tmp_path))


def test_cli_push_and_generate_check(grafana: str, tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = dict(os.environ, WEARMON_GRAFANA__URL=grafana, WEARMON_GRAFANA__TOKEN=TOKEN)
    env["WEARMON_DATA_DIR"] = str(tmp_path)
    run = [sys.executable, "-m", "wearmon.cli.main", "dashboards"]
    out = subprocess.run([*run, "push"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("pushed /d/wearmon-") == len(builders())
    assert TOKEN not in out.stdout + out.stderr
    stale = tmp_path / "dash"
    stale.mkdir()
    (stale / "drift.json").write_text("{}")
    out = subprocess.run(
        [*run, "generate", "--check", "--out", str(stale)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("error: dashboards out of date")
