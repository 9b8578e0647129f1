"""A Claude-kind stand-in behind a rate-limited API: 429 until a deadline, then work and success.

Usage: ``python storm_agent.py STORM.json [claude's flags...]`` (the flags pagent adds are
ignored). ``STORM.json`` holds ``{"storm": s, "answer": s, "work": s}`` -- the state every attempt shares.
The storm begins with the first attempt (which writes its start time to ``STORM.json.began``,
atomically: a link, so no attempt reads it half-written) and lasts ``storm`` seconds, however
long the supervisor took to start. An attempt that starts before its end prints the real CLI's
stream-json of a plain 429 (``tests/transcripts/rate-limit-429.jsonl``) after ``answer``
seconds and exits 1; one that starts later works ``work`` seconds, prints the transcript of a
success and exits 0.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "tests" / "transcripts"


def began(state: Path, now: float) -> float:
    """When the storm began: now, if this is the first attempt, else what the first one wrote."""
    mark = state.with_name(state.name + ".began")
    draft = state.with_name(f"{state.name}.{os.getpid()}")
    draft.write_text(repr(now))
    try:
        os.link(draft, mark)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return float(mark.read_text())


def main() -> None:
    started = time.time()
    path = Path(sys.argv[1])
    state = json.loads(path.read_text())
    limited = started < began(path, started) + state["storm"]
    sys.stdin.read()  # the prompt, to its end, as the CLI does
    time.sleep(state["answer"] if limited else state["work"])
    name = "rate-limit-429" if limited else "success-write-tool"
    sys.stdout.buffer.write((TRANSCRIPTS / f"{name}.jsonl").read_bytes())
    sys.stdout.flush()
    raise SystemExit(1 if limited else 0)


if __name__ == "__main__":
    main()
