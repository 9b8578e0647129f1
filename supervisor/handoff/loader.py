"""Loading apprise once, on first use: it costs about 0.3 s (imports and plugin discovery), which
``pagent validate`` and every run without notification URLs should not pay."""

from __future__ import annotations

import threading
import warnings
from types import ModuleType

_LOCK = threading.Lock()
_loaded: ModuleType | None = None


def load_apprise() -> ModuleType:
    """The ``apprise`` module, with its plugins discovered; ``ImportError`` if it is missing.

    Thread-safe: the notification threads of one send may all ask at once.
    """
    global _loaded  # noqa: PLW0603 -- a process-wide cache of one module
    with _LOCK:
        if _loaded is None:
            with warnings.catch_warnings():
                # apprise 2.3 imports the stdlib's deprecated imghdr (for pgpy) while it discovers
                # its plugins, on Python < 3.13; with warnings as errors that would fail each send.
                warnings.filterwarnings("ignore", "'imghdr' is deprecated", DeprecationWarning)
                import apprise  # noqa: PLC0415

                # Plugin discovery happens on the first URL apprise parses; parsing sends nothing.
                apprise.Apprise.instantiate("json://localhost")
            _loaded = apprise
        return _loaded
