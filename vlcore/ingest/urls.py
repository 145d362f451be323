"""URL vetting for URL lists: what the ingester may fetch, and why it refuses the rest.

A URL list is untrusted input (CC3M, Wukong and LAION-style lists are scraped), so every URL is
checked before anything is fetched. :func:`refusal_reason` says why a URL is refused, or
``None`` when it may be fetched:

- only ``http``/``https`` (plus ``file`` when ``allow_file_urls`` is set: local files are for
  tests and for data already on disk, never for a list from elsewhere);
- a host is required; Tor ``.onion`` hosts are refused;
- at most :data:`MAX_URL_LENGTH` characters, no whitespace or control characters inside.

:func:`fetchable_url` percent-encodes the non-ASCII characters of an accepted URL (IDNA for
the host), which ``urllib`` (and so img2dataset) cannot send as they are.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit, urlunsplit

MAX_URL_LENGTH = 2048
WEB_SCHEMES = ("http", "https")

_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_ASCII_PRINTABLE = "".join(chr(i) for i in range(0x21, 0x7F))  # left alone by fetchable_url


def refusal_reason(url: str | None, *, allow_file_urls: bool = False) -> str | None:
    """Why ``url`` must not be fetched, or ``None`` when it may be.

    >>> refusal_reason("https://example.com/cat.jpg") is None
    True
    >>> refusal_reason("ftp://example.com/cat.jpg")
    "scheme 'ftp' is not allowed (only http, https)"
    """
    if not url:
        return "empty URL"
    if len(url) > MAX_URL_LENGTH:
        return f"URL is {len(url)} characters long (limit {MAX_URL_LENGTH})"
    bad = _SPACE_OR_CONTROL.search(url)
    if bad:
        what = "whitespace" if bad.group().isspace() else "a control character"
        return f"URL contains {what} ({bad.group()!r} at position {bad.start()})"
    try:
        parts = urlsplit(url)
        port = parts.port  # parsed lazily; a bad port raises here
    except ValueError as e:
        return f"malformed URL ({e})"
    scheme = parts.scheme.lower()
    allowed = WEB_SCHEMES + (("file",) if allow_file_urls else ())
    if not scheme:
        return f"URL has no scheme (expected {', '.join(allowed)})"
    if scheme == "file":
        if not allow_file_urls:
            return "file:// URLs are not allowed (set allow_file_urls: true for local files)"
        if parts.netloc not in ("", "localhost"):
            return f"file:// URL names a remote host {parts.netloc!r}"
        if not parts.path or parts.path == "/":
            return "file:// URL has no path"
        return None
    if scheme not in allowed:
        return f"scheme {scheme!r} is not allowed (only {', '.join(allowed)})"
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return "URL has no host"
    if port == 0:
        return "URL has port 0"
    if host == "onion" or host.endswith(".onion"):
        return f"Tor .onion host {host!r} is refused"
    return None


def fetchable_url(url: str) -> str:
    """``url`` as ``urllib`` can send it: non-ASCII characters percent-encoded, host in IDNA.

    ASCII URLs come back unchanged (existing ``%xx`` escapes are kept as they are).
    """
    if url.isascii():
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    host = parts.hostname or ""
    if host and not host.isascii():
        try:
            ascii_host = host.encode("idna").decode("ascii")
        except UnicodeError:
            ascii_host = quote(host, safe="")  # unfetchable anyway; img2dataset reports why
        start = netloc.lower().find(host)
        if start >= 0:
            netloc = netloc[:start] + ascii_host + netloc[start + len(host) :]
    return urlunsplit(
        (
            parts.scheme,
            quote(netloc, safe=_ASCII_PRINTABLE),
            quote(parts.path, safe=_ASCII_PRINTABLE),
            quote(parts.query, safe=_ASCII_PRINTABLE),
            quote(parts.fragment, safe=_ASCII_PRINTABLE),
        )
    )
