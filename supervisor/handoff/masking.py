"""Masking secrets in notification URLs, so none reaches a log, an event or a record.

Notification URLs carry their credentials inline: ``ntfy://user:pass@host/topic``,
``slack://TokenA/TokenB/TokenC``, ``discord://webhook_id/webhook_token``. ``mask_url`` keeps what
tells a person which target it is (the scheme, a host that names a machine, a numeric port) and
replaces everything else with ``***``; ``mask_text`` scrubs a URL's secret parts out of free text
such as an error message.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

MASK = "***"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Secret parts shorter than this are left in free text: replacing "a" or "12" everywhere would
# mangle the message and protect nothing.
_MIN_SECRET = 3


def _names_machine(host: str) -> bool:
    """Whether ``host`` names a machine (a DNS name with a dot, localhost, an IP address).

    Several apprise schemes put a token where a host would be (``slack://TokenA/...``,
    ``discord://ID/...``, ``ntfy://topic``): those hosts are secrets and are masked.
    """
    if host == "localhost" or ("." in host and not host.startswith(".")):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _split(url: str) -> SplitResult | None:
    """``urlsplit`` of ``url``, or ``None`` when it has no scheme or a malformed authority."""
    if not _SCHEME.match(url):
        return None
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a non-numeric port, e.g. "tgram://123:TOKEN/chat"
    except ValueError:
        return None
    return parts


def _raw_host(parts: SplitResult) -> str:
    """The host as written (``hostname`` lowercases it, and a token must match its own case)."""
    host = parts.netloc.rpartition("@")[2]
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.partition(":")[0]


def mask_url(url: str) -> str:
    """``url`` with its user, password, token-like host, path segments, query values and
    fragment replaced by ``***``; scheme, a real host name and a numeric port are kept.

    Never raises: text that does not parse as a URL becomes ``scheme://***`` (or ``***``).
    """
    parts = _split(url)
    if parts is None:
        scheme = _SCHEME.match(url)
        return f"{scheme[1]}://{MASK}" if scheme else MASK
    netloc = ""
    if parts.username is not None or parts.password is not None:
        netloc = MASK + (f":{MASK}" if parts.password is not None else "") + "@"
    host = _raw_host(parts)
    if host:
        netloc += host if _names_machine(host) else MASK
    if parts.port is not None:
        netloc += f":{parts.port}"
    path = "/".join(MASK if segment else "" for segment in parts.path.split("/"))
    text = f"{parts.scheme}://{netloc}{path}"
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        text += "?" + "&".join(f"{key}={MASK}" for key, _ in pairs) if pairs else f"?{MASK}"
    if parts.fragment:
        text += f"#{MASK}"
    return text


def secrets_of(url: str) -> list[str]:
    """The parts of ``url`` that ``mask_url`` hides, longest first, raw and percent-decoded."""
    parts = _split(url)
    if parts is None:
        rest = _SCHEME.sub("", url)
        found = {rest, *re.split(r"[/:@?&=#]+", rest)}
    else:
        found = {parts.username or "", parts.password or "", parts.fragment}
        host = _raw_host(parts)
        if host and not _names_machine(host):
            found.add(host)
        found.update(parts.path.split("/"))
        found.update(value for _, value in parse_qsl(parts.query, keep_blank_values=True))
    found |= {unquote(item) for item in found}
    return sorted((item for item in found if len(item) >= _MIN_SECRET), key=len, reverse=True)


def mask_text(text: str, urls: list[str] | tuple[str, ...]) -> str:
    """``text`` with each of ``urls`` written masked and every secret part of them replaced."""
    for url in urls:
        text = text.replace(url, mask_url(url))
        for secret in secrets_of(url):
            text = text.replace(secret, MASK)
    return text
