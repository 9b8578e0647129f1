"""A Claude-kind stand-in behind a rate-limited API: 429 until a deadline, then work and success.

Usage: ``python storm_agent.py STORM.json [claude's flags...]`` (the flags pagent adds are
ignored). ``STORM.json`` holds ``{"until": epoch seconds, "answer": s, "work": s}`` -- the state every
attempt shares. An attempt that starts before ``until`` prints the real CLI's stream-json of a
plain 429 (``tests/transcripts/rate-limit-429.jsonl``) after ``answer`` seconds and exits 1; one
that starts later works ``work`` seconds, prints the transcript of a success and exits 0.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "tests" / "transcripts"


def main() -> None:
    started = time.time()
    state = json.loads(Path(sys.argv[1]).read_text())
    limited = started < state["until"]
    sys.stdin.read()  # the prompt, to its end, as the CLI does
    time.sleep(state["answer"] if limited else state["work"])
    name = "rate-limit-429" if limited else "success-write-tool"
    sys.stdout.buffer.write((TRANSCRIPTS / f"{name}.jsonl").read_bytes())
    sys.stdout.flush()
    raise SystemExit(1 if limited else 0)


if __name__ == "__main__":
    main()
