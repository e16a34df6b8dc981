"""The review server: 127.0.0.1 only, one token per session, a handful of fixed routes, decisions as JSON posts.

Why each rule: another page open in the same browser can send requests to 127.0.0.1, so every request must carry
the session's token (GETs in the query, which only the printed URL and the page itself know; posts in a header,
which a cross-site form cannot set); a Host header other than 127.0.0.1/localhost is a DNS-rebinding page and is
refused. Files are served only through routes that resolve them inside the run dir (the run's PNGs) or from the
image cache by a key the page itself links; nothing else on disk can be named. A decision is validated whole before
anything is written, and each write is atomic: Ctrl-C waits for a request in flight, then stops.
"""

from __future__ import annotations

import hmac
import io
import json
import re
import secrets
import sys
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from harness.reports.baseline import BaselineError
from harness.reports.reviewed_labels import LabelsError
from harness.review.review_state import ReviewState, parse_decisions

MAX_BODY = 16 * 2**20  # "accept all shown" on 100,000 units is about 8 MiB of JSON
_STATIC = {"review.js": "text/javascript; charset=utf-8", "review.css": "text/css; charset=utf-8"}
_SECURITY_HEADERS = {
    # The page loads its own script, style and images only, and can be framed by no one.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in URLs: never hand it to another site
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
_DIFF_ROUTE = re.compile(r"/diff/(\d{1,9})\.(png|json)\Z")
_CACHED_ROUTE = re.compile(r"/cached/([0-9a-f]{64})\.png\Z")


class ReviewServer(ThreadingHTTPServer):
    # A request in flight finishes before the server stops (server_close joins it): no decision is cut short.
    daemon_threads = False
    block_on_close = True

    def __init__(self, state: ReviewState, port: int = 0, log: Callable[[str], None] | None = None) -> None:
        self.state = state
        self.token = secrets.token_urlsafe(32)
        self.log = log or (lambda line: print(line, flush=True))
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    # One request per connection: a browser's idle keep-alive connection would otherwise hold its handler thread,
    # and stopping (which waits for every handler, so that no decision is cut short) would wait for it forever.
    protocol_version = "HTTP/1.0"
    timeout = 30  # a client that stops sending mid-request does not hold the server's stop either
    server_version = "t2i-review"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the terminal shows decisions, not every image request

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, route: Callable[[], tuple[bytes, str]]) -> None:
        try:
            self._check_host()
            body, content_type = route()
            status = HTTPStatus.OK
        except _Refused as refused:
            status, body, content_type = refused.status, str(refused).encode("utf-8"), "text/plain; charset=utf-8"
        except Exception as exc:  # one request's bug must not stop the review; say it, in the page and here
            self.server.log(f"t2i review: internal error on {self.command} {urlsplit(self.path).path}: {exc!r}")
            status, body, content_type = (
                HTTPStatus.INTERNAL_SERVER_ERROR,
                f"internal error: {exc!r}".encode(),
                "text/plain; charset=utf-8",
            )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in _SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _check_host(self) -> None:
        allowed = {f"127.0.0.1:{self.server.port}", f"localhost:{self.server.port}"}
        if self.headers.get("Host") not in allowed:
            raise _Refused(HTTPStatus.FORBIDDEN, "refused: this server answers requests for 127.0.0.1 only")

    def _check_token(self, given: str | None) -> None:
        if given is None or not hmac.compare_digest(given.encode("utf-8", "replace"), self.server.token.encode()):
            raise _Refused(
                HTTPStatus.FORBIDDEN,
                "refused: no or wrong session token; open the URL that `python -m harness review` printed",
            )

    # -- reading ------------------------------------------------------------------------------

    def _get(self) -> tuple[bytes, str]:
        url = urlsplit(self.path)
        if url.path == "/favicon.ico":  # the browser asks without the token; nothing to give either way
            raise _Refused(HTTPStatus.NOT_FOUND, "not found")
        self._check_token(parse_qs(url.query).get("token", [None])[0])
        path = unquote(url.path)
        state = self.server.state
        if path == "/":
            from harness.review.review_page import page

            with state.lock:
                return page(state, self.server.token).encode("utf-8"), "text/html; charset=utf-8"
        if path.startswith("/static/") and path[len("/static/") :] in _STATIC:
            name = path[len("/static/") :]
            return resources.files("harness.review").joinpath("static", name).read_bytes(), _STATIC[name]
        if path.startswith("/run/"):
            return self._run_image(path[len("/run/") :]), "image/png"
        if match := _CACHED_ROUTE.match(path):
            return self._cached_image(match.group(1)), "image/png"
        if match := _DIFF_ROUTE.match(path):
            return self._difference(int(match.group(1)), as_image=match.group(2) == "png")
        raise _Refused(HTTPStatus.NOT_FOUND, f"not found: {path}")

    def _run_image(self, relative: str) -> bytes:
        from harness.reports.run_images import ImageRefused, run_image

        try:
            return run_image(self.server.state.run.run_dir, relative).data
        except (ImageRefused, OSError) as exc:
            raise _Refused(HTTPStatus.NOT_FOUND, f"refused: the image {relative!r} {exc}") from None

    def _cached_image(self, key: str) -> bytes:
        state = self.server.state
        with state.lock:
            image = state.baseline_image(key)
        if image is None:
            raise _Refused(HTTPStatus.NOT_FOUND, f"refused: no baseline image {key} on this page")
        return _png(image)

    def _difference(self, index: int, as_image: bool) -> tuple[bytes, str]:
        """An item's image against the baseline's: the heatmap PNG, or its numbers in a sentence (computed alone,
        without drawing the heatmap, when the page asks for them)."""
        from harness.reports.image_diff import SizeMismatch, difference_stats, heatmap_png
        from harness.reports.run_images import ImageRefused, run_image

        state = self.server.state
        with state.lock:
            item = state.items_by_index.get(index)
            key = item.before_image if item is not None else None
            before = state.baseline_image(key) if key is not None else None
        if item is None or key is None or item.record.image is None:
            raise _Refused(HTTPStatus.NOT_FOUND, f"refused: no difference view {index} on this page")
        if before is None:
            raise _Refused(HTTPStatus.NOT_FOUND, f"refused: the baseline image {key} can no longer be read")
        try:
            now = run_image(state.run.run_dir, item.record.image).pixels
            if as_image:
                return heatmap_png(before, now), "image/png"
            stats = difference_stats(before, now).describe()
        except (ImageRefused, OSError) as exc:
            raise _Refused(HTTPStatus.NOT_FOUND, f"refused: the image {item.record.image!r} {exc}") from None
        except SizeMismatch as exc:  # a per-pixel difference of a resized image would measure the resizing
            raise _Refused(HTTPStatus.CONFLICT, f"no difference view: {exc}") from None
        return json.dumps({"stats": stats}).encode("utf-8"), "application/json"

    # -- deciding -----------------------------------------------------------------------------

    def _post(self) -> tuple[bytes, str]:
        from harness.common.json_input import loads

        if urlsplit(self.path).path != "/api/decisions":
            raise _Refused(HTTPStatus.NOT_FOUND, "not found")
        self._check_token(self.headers.get("X-T2I-Token"))
        origin = self.headers.get("Origin")
        if origin is not None and origin not in (
            f"http://127.0.0.1:{self.server.port}",
            f"http://localhost:{self.server.port}",
        ):
            raise _Refused(HTTPStatus.FORBIDDEN, f"refused: a request from another origin ({origin})")
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            raise _Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "refused: decisions are posted as application/json")
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > MAX_BODY:
            raise _Refused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"refused: a body of 1 byte to {MAX_BODY} bytes is needed"
            )
        raw = self.rfile.read(int(length))
        try:
            decisions = parse_decisions(loads(raw.decode("utf-8")))
            units = self.server.state.apply(decisions)
        except (UnicodeDecodeError, ValueError) as exc:  # DecisionError, ShapeError, JSON syntax: nothing written
            raise _Refused(HTTPStatus.BAD_REQUEST, f"refused, nothing written: {exc}") from None
        except (OSError, BaselineError, LabelsError) as exc:
            # The baseline is written first, then the labels, each file atomically: a file is old or new, never half.
            detail = f"{exc.strerror or exc} ({exc.filename})" if isinstance(exc, OSError) else str(exc)
            self.server.log(f"t2i review: could not write a decision: {detail}")
            raise _Refused(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                f"could not write the decision: {detail}. Files already written are whole; fix the cause and decide "
                "again.",
            ) from None
        from harness.review.review_page import unit_section

        for decision in decisions:
            what = decision.unit or f"{decision.item} ({decision.judge}{'' if decision.wrong else ', taken back'})"
            self.server.log(f"t2i review: {decision.action} {what}")
        with self.server.state.lock:
            answer = {"units": {unit.uid: unit_section(self.server.state, unit, self.server.token) for unit in units}}
        return json.dumps(answer).encode("utf-8"), "application/json"


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def serve(state: ReviewState, port: int = 0, open_browser: bool = True) -> int:
    """Serve until Ctrl-C; 0 when stopped that way."""
    from harness.common.atomic import remove_interrupted_writes

    server = ReviewServer(state, port)
    print(f"t2i review: {len(state.units)} review units of {state.run.path}, baseline {state.name!r}", flush=True)
    print(f"t2i review: open {server.url}  (Ctrl-C stops the server)", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("t2i review: stopping (waiting for a decision in flight, if any)", file=sys.stderr, flush=True)
    finally:
        server.server_close()  # joins handler threads: a write in progress completes
        remove_interrupted_writes()
    return 0
