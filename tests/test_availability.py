"""Reachability probes: one short request per download source, none when offline or when nothing is missing."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.pytest_plugin.availability import (
    HUB,
    TORCH,
    ModelLocation,
    Probe,
    Reachability,
    find_missing,
    offline_reason_for,
    probe,
)


@dataclass
class Server:
    url: str
    status: int
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Server]:
    """A local HTTP server answering every request with ``server.status``, counting them."""
    state = Server("", 404)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # http.server's naming
            state.requests.append(self.path)
            self.send_response(state.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def silent_port() -> Iterator[str]:
    """A port that accepts connections and never answers (a black-holed link, a stuck proxy)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


@pytest.fixture
def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there once the socket is closed


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE unset, as on a user's machine (the suite sets it)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_any_answer_below_500_is_reachable(server: Server) -> None:
    assert probe(server.url) == Probe(True)
    server.status = 503
    assert probe(server.url) == Probe(False, f"{server.url} answered HTTP 503")
    assert len(server.requests) == 2  # one request each: no retries


def test_a_refused_connection_is_unreachable_at_once(closed_port: str) -> None:
    started = time.perf_counter()
    assert probe(closed_port) == Probe(False, f"{closed_port} did not answer: connection refused")
    assert time.perf_counter() - started < 1


def test_a_silent_server_is_unreachable_after_the_timeout(silent_port: str) -> None:
    started = time.perf_counter()
    assert probe(silent_port, timeout=0.3) == Probe(False, f"{silent_port} did not answer: no answer within 0.3 s")
    # The timeout, plus scheduling slack on a loaded 2-core machine.
    assert time.perf_counter() - started < 2


def test_each_source_is_probed_once_per_session(online: None, server: Server, closed_port: str) -> None:
    sources = Reachability()
    first = sources.of({HUB: server.url, TORCH: closed_port})
    assert first == {HUB: Probe(True), TORCH: Probe(False, f"{closed_port} did not answer: connection refused")}
    assert sources.of({HUB: server.url, TORCH: closed_port}) == first
    assert server.requests == ["/"]


def test_hf_hub_offline_means_unreachable_without_a_probe(monkeypatch: pytest.MonkeyPatch, server: Server) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert Reachability().of({HUB: server.url}) == {HUB: Probe(False, "HF_HUB_OFFLINE is set")}
    assert server.requests == []


def test_nothing_is_probed_when_every_model_is_on_disk(online: None, server: Server) -> None:
    on_disk = [ModelLocation("clip", "some-org/clip", True, HUB, server.url)]
    assert find_missing(on_disk, Reachability()) == {}
    assert server.requests == []
    not_there = [ModelLocation("clip", "some-org/clip", False, HUB, server.url)]
    assert find_missing(not_there, Reachability()) == {}  # reachable: loading will download it
    assert server.requests == ["/"]


def test_loading_a_hub_model_reads_the_cache_alone_when_the_hub_is_down(
    online: None, pytester: pytest.Pytester, closed_port: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", closed_port)
    config = pytester.parseconfig()
    assert offline_reason_for(config, "some-org/some-model") == f"{closed_port} did not answer: connection refused"
    assert offline_reason_for(config, str(tmp_path)) is None  # a local dir needs no hub
