"""Real stand-ins for the hand-off tests: servers on 127.0.0.1 and a ``gh`` that records its calls.

``Webhook`` is an HTTP server that records every POST (apprise's ``json://`` target posts to it);
``hanging_server`` accepts connections and never answers; ``install_gh`` writes a stand-in for the
GitHub CLI (the GitHub API behind it is out of reach here: no network) that records its argv,
emulates ``gh pr create`` (prints the new URL; refuses a second pull request for a head, as gh
does) and ``gh pr list --head B --json url`` from its own record.
"""

from __future__ import annotations

import base64
import json
import socket
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from supervisor.handoff.notify import ATTACHMENT_NAME


class Webhook:
    """A real HTTP server on 127.0.0.1 that records every POST and answers 200."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(size))
                hook.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str = "hook", auth: str = "") -> str:
        return f"json://{auth}127.0.0.1:{self.port}/{path}"

    def payload(self, index: int = 0) -> dict[str, Any]:
        """The pagent payload attached to the ``index``-th request."""
        (attachment,) = self.requests[index]["body"]["attachments"]
        assert attachment["filename"] == ATTACHMENT_NAME
        data: dict[str, Any] = json.loads(base64.b64decode(attachment["base64"]))
        return data

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def payloads(self) -> list[dict[str, Any]]:
        """The pagent payload of every request so far, in order."""
        return [self.payload(index) for index in range(len(self.requests))]


@contextmanager
def hanging_server() -> Iterator[int]:
    """A port whose server accepts every connection and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def executable(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` and make it executable."""
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


STAND_IN_GH = """\
#!{python}
# A stand-in for the GitHub CLI: records argv, emulates `pr create` and `pr list --head --json url`.
import fcntl, json, os, sys
from pathlib import Path

record = Path({record!r})
calls = Path({calls!r})
# One call at a time, like GitHub's own serialisation: tasks that finish together call gh at once.
lock = open(str(record) + ".lock", "w")
fcntl.flock(lock, fcntl.LOCK_EX)
call = {{"argv": sys.argv[1:], "prompt_disabled": os.environ.get("GH_PROMPT_DISABLED")}}
with calls.open("a") as log:
    log.write(json.dumps(call) + "\\n")
prs = json.loads(record.read_text()) if record.exists() else []
args = sys.argv[1:]
def flag(name):
    return args[args.index(name) + 1]
if os.environ.get("GH_STAND_IN_FAIL"):
    sys.stderr.write("HTTP 401: Bad credentials (https://api.github.com/graphql)\\n")
    sys.exit(1)
if args[:2] == ["pr", "list"]:
    assert flag("--json") == "url"
    print(json.dumps([{{"url": pr["url"]}} for pr in prs if pr["head"] == flag("--head")]))
elif args[:2] == ["pr", "create"]:
    head, base = flag("--head"), flag("--base")
    for pr in prs:
        if pr["head"] == head:
            sys.stderr.write(f'a pull request for branch "{{head}}" into branch "{{base}}" already exists:')
            sys.stderr.write("\\n")
            sys.stderr.write(pr["url"] + "\\n")
            sys.exit(1)
    url = f"https://github.example/owner/repo/pull/{{len(prs) + 1}}"
    body = Path(flag("--body-file")).read_text()
    title, draft = flag("--title"), "--draft" in args
    prs.append({{"head": head, "base": base, "title": title, "body": body, "draft": draft, "url": url}})
    record.write_text(json.dumps(prs))
    print("Creating draft pull request for {{}} into {{}}".format(head, base), file=sys.stderr)
    print(url)
else:
    sys.exit(f"stand-in gh: unexpected {{args}}")
"""


def install_gh(bin_dir: Path, state: Path) -> dict[str, Path]:
    """Write the stand-in ``gh`` into ``bin_dir``; it keeps its pull requests in
    ``state/gh-prs.json`` and logs each call to ``state/gh-calls.jsonl`` (both returned)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    paths = {"record": state / "gh-prs.json", "calls": state / "gh-calls.jsonl"}
    text = STAND_IN_GH.format(python=sys.executable, record=str(paths["record"]), calls=str(paths["calls"]))
    executable(bin_dir / "gh", text)
    return paths


def gh_calls(gh: dict[str, Path]) -> list[dict[str, Any]]:
    """Every call the stand-in ``gh`` got so far."""
    path = gh["calls"]
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def gh_pull_requests(gh: dict[str, Path]) -> list[dict[str, Any]]:
    """The pull requests the stand-in ``gh`` opened."""
    path = gh["record"]
    data: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
    return data
