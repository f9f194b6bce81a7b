"""The feed URL: checked before a recorder creates anything, and never shown with its credentials.

A feed URL may carry credentials (``wss://user:password@host/socket.io/?EIO=4&token=...``).
Only the websocket connect sees the real URL. Whatever is printed or stored (stderr, the
``.ack`` file, lifecycle records and so ``ws_event`` / ``system_event``) gets ``shown``: the
userinfo and the value of each query parameter whose name looks secret read ``***``.
``scrub`` takes the same secrets out of any other text (an error message quoting the URL);
secrets under ``MIN_SCRUBBED`` characters are masked in the URL but not hunted in free text,
where they would mask unrelated characters ("HTTP 401").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from rugs_pipeline.errors import RugsError

MASK = "***"
MIN_SCRUBBED = 4
# Matched anywhere in a query parameter's name: access_token, apiKey, x-amz-signature, sessionid, passwd, ...
SECRET_NAME = re.compile(r"token|key|secret|pass|pwd|auth|sig|session|jwt|cred", re.IGNORECASE)


class FeedUrlError(RugsError, ValueError):
    """Not a usable feed URL; the message never quotes a secret."""


@dataclass(frozen=True)
class FeedUrl:
    real: str  # to connect with, nothing else
    shown: str
    secrets: tuple[str, ...]

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


def parse_feed_url(url: str) -> FeedUrl:
    """The URL, checked (ws:// or wss:// with a host), with its printable form."""
    try:
        parts = urlsplit(url)
        shown_netloc, found = parts.netloc, []
        if "@" in parts.netloc:
            userinfo, host = parts.netloc.rsplit("@", 1)
            shown_netloc = f"{MASK}@{host}"
            found += [userinfo, *userinfo.split(":", 1)]
        query = []
        for item in parts.query.split("&") if parts.query else []:
            name, eq, value = item.partition("=")
            if eq and value and SECRET_NAME.search(unquote(name)):
                found.append(value)
                item = f"{name}={MASK}"
            query.append(item)
        shown = urlunsplit((parts.scheme, shown_netloc, parts.path, "&".join(query), parts.fragment))
    except ValueError:
        raise FeedUrlError("bad feed URL: it cannot be parsed; set --url or RUGS_FEED_URL to a ws:// or wss:// URL") from None
    try:
        parse_uri(url)
    except InvalidURI as exc:
        why = exc.msg.replace(url, shown)
        raise FeedUrlError(f"bad feed URL {shown!r}: {why}; set --url or RUGS_FEED_URL to a ws:// or wss:// URL") from None
    secrets = {s for v in found for s in (v, unquote(v)) if len(s) >= MIN_SCRUBBED}
    return FeedUrl(url, shown, tuple(sorted(secrets, key=len, reverse=True)))
