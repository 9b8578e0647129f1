"""The registry of agent kinds, and the agents every plan knows without declaring them.

Adding a kind means writing its module in this package and listing it here; nothing outside
``agents/`` changes. The CLI hands ``KINDS`` to the plan loader (as a catalog) and to the engine.
"""

from __future__ import annotations

import sys
from types import MappingProxyType

from supervisor.agents.base import Kinds
from supervisor.agents.claude import ClaudeKind
from supervisor.agents.codex_kind import CodexKind
from supervisor.agents.gemini_kind import GeminiKind
from supervisor.agents.opencode_kind import OpencodeKind
from supervisor.agents.plain import PlainKind
from supervisor.plan.model import AgentSpec

# The built-in offline agent of the quickstart (a plain command: this Python, running
# ``supervisor.agents.demo``).
DEMO = AgentSpec("demo", (sys.executable, "-m", "supervisor.agents.demo"), MappingProxyType({}), "plain")

KINDS = Kinds([PlainKind(), ClaudeKind(), CodexKind(), GeminiKind(), OpencodeKind()], agents=[DEMO])
