"""Secrets scrubbed by their shape, never by looking up known values.

:func:`scrub` replaces with :data:`MARK` (``***``) everything in a text that *looks like* a secret:

- JWT-shaped tokens (``eyJ...``, one to three base64url segments: a token cut short still goes);
- credentials after ``Bearer``/``Basic``/``SharedKey``/``SharedAccessSignature``;
- values of fields whose name says secret (``access_token``, ``refresh_token``, ``id_token``,
  ``client_secret``, ``password``, ``token``, ``sig``, ``signature``, ``Authorization``, ``*_key``,
  ``webhook_url`` ...), quoted JSON (even cut off before its closing quote), Python reprs,
  ``key=value`` forms and query parameters, headers (``Name: value``);
- a long opaque value right after a secret word (``client secret 8Q~x9...``);
- Slack, Teams and Discord style webhook URLs (``hooks.slack.com/...``, ``/services/T.../B.../...``
  on any host, ``*.webhook.office.com/...``, ``/webhookb2/...``, ``/api/webhooks/...``);
- the userinfo of URLs (``https://user:pass@host`` -> ``https://***@host``).

Case does not matter, and neither does escaping: a stretch of text holding percent-encoding
(``%2F``, ``%252F``) or JSON escapes (``\\/``, ``\\u002f``) is decoded and scrubbed again, so an
encoded secret is caught as well as a plain one.

:class:`SecretFilter` applies :func:`scrub` to every log record a handler receives (message, args,
exception and stack text); :func:`scrub_handlers` puts it on a logger's handlers. The ``spotlake``
command installs it on the root logger's handlers, so third-party loggers (httpx, httpcore, azure,
botocore) are scrubbed too. Error messages built from HTTP bodies call :func:`scrub` where the body
text enters them, so typed errors carry no secret before they reach any channel.
"""

from __future__ import annotations

import logging
import re
from typing import Final
from urllib.parse import unquote

__all__ = ["MARK", "SecretFilter", "scrub", "scrub_handlers"]

#: What a secret is replaced with.
MARK: Final = "***"

# --- the shapes ----------------------------------------------------------------------------------

#: A field name that says its value is secret: it *ends* with one of these words.
_SECRET_NAME: Final = (
    r"(?:secret|token|password|passwd|passphrase|pwd|credential|sig|signature|assertion|"
    r"authorization|cookie|webhook|webhook[_-]?url|"
    r"(?:api|access|account|secret|private|signing|subscription|master|shared|storage|sharedaccess)[_-]?key)"
)
#: An HTTP auth scheme word in front of a credential.
_SCHEME: Final = r"(?:bearer|basic|digest|negotiate|sharedkey|sharedaccesssignature)"

# ``name = value`` / ``"name": "value"`` / ``'name': 'value'`` / ``name: value`` / ``\"name\":\"v``.
# The value is quoted (up to the same quote, or the end of the line when the text was cut off) or
# bare (up to a space or a delimiter). An optional auth scheme word stays visible. ``Secret(...)``
# and the mark itself are already redacted and left alone; so are null/true/false.
_FIELD: Final = re.compile(
    r"(?P<key>(?<![\w.$-])[\w.$-]{0,64}?" + _SECRET_NAME + r")"
    r"(?P<sep>(?:\\*[\"'])?\s*(?:=>|[:=])\s*)"
    r"(?P<scheme>" + _SCHEME + r"\s+)?"
    r"(?!Secret\(|\*\*\*|(?:null|true|false|none)\b)"
    r"(?:(?P<q>\\*[\"'])[^\n]*?(?:(?P<close>(?P=q))|$)|(?P<bare>[^\s\"'&,;{}\[\]()<>]+))",
    re.IGNORECASE | re.MULTILINE,
)
_JWT: Final = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}")
# A credential after a scheme word: long, and holding a digit or a token character, so prose
# ("the bearer token was rejected") is left alone.
_BEARER: Final = re.compile(
    r"\b(?P<scheme>" + _SCHEME + r")(?P<sp>\s+)(?!\*\*\*)(?=[\w.~+/=%:-]*[\d.~+/=%-])[\w.~+/=%:-]{8,}",
    re.IGNORECASE,
)
# A long opaque value right after a secret word without a separator ("client secret 8Q~x9...").
_OPAQUE: Final = re.compile(
    r"(?<![A-Za-z0-9])(?P<word>secret|token|password|passwd|signature|webhook)(?P<sp>\s+(?:is\s+|was\s+|of\s+)?[\"']?)"
    r"(?=[\w+/~.=-]*\d)(?=[\w+/~.=-]*[A-Za-z])[\w+/~.=-]{16,}",
    re.IGNORECASE,
)
_USERINFO: Final = re.compile(r"\b(?P<scheme>[a-z][a-z0-9+.-]*://)[^\s/?#@\"'<>]+@", re.IGNORECASE)
_SLASH: Final = r"(?:/|\\/)"
_REST: Final = r"[^\s\"'<>]*"
_WEBHOOKS: Final = (
    # Slack: the host says it, whatever the path.
    re.compile(r"(?P<keep>hooks\.slack(?:-gov)?\.com)" + _SLASH + _REST, re.IGNORECASE),
    # Slack's path shape on any host (a proxy, a relay, a test server).
    re.compile(
        r"(?P<keep>" + _SLASH + r"services)" + _SLASH + r"T[^/\s\\]*" + _SLASH + r"B" + _REST, re.IGNORECASE
    ),
    # Teams (Office 365 connectors and workflows), Discord.
    re.compile(r"(?P<keep>[\w.-]*webhook\.office\.com)" + _SLASH + _REST, re.IGNORECASE),
    re.compile(r"(?P<keep>outlook\.office(?:365)?\.com" + _SLASH + r"webhook)" + _REST, re.IGNORECASE),
    re.compile(r"(?P<keep>" + _SLASH + r"webhookb2)" + _SLASH + _REST, re.IGNORECASE),
    re.compile(r"(?P<keep>" + _SLASH + r"api" + _SLASH + r"webhooks)" + _SLASH + _REST, re.IGNORECASE),
)
# A stretch of text that may hold an escaped URL or field: no spaces, quotes or brackets.
_RUN: Final = re.compile(r"[^\s\"'<>()\[\]{}|,;]+")
_ESCAPED: Final = re.compile(r"%[0-9a-f]{2}|\\/|\\u00[0-9a-f]{2}", re.IGNORECASE)
_UNICODE_ESCAPE: Final = re.compile(r"\\u00([0-9a-f]{2})", re.IGNORECASE)


def _field(match: re.Match[str]) -> str:
    scheme = match["scheme"] or ""
    if match["q"] is not None:
        return f"{match['key']}{match['sep']}{scheme}{match['q']}{MARK}{match['close'] or ''}"
    return f"{match['key']}{match['sep']}{scheme}{MARK}"


def _plain(text: str) -> str:
    """Scrub every shape from ``text`` as it stands (no decoding)."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MARK}@", text)
    for pattern in _WEBHOOKS:
        text = pattern.sub(lambda m: f"{m['keep']}/{MARK}", text)
    text = _FIELD.sub(_field, text)
    text = _BEARER.sub(lambda m: f"{m['scheme']}{m['sp']}{MARK}", text)
    text = _JWT.sub(MARK, text)
    return _OPAQUE.sub(lambda m: f"{m['word']}{m['sp']}{MARK}", text)


def _decoded(run: str) -> str:
    """``run`` with percent-encoding and JSON escapes undone (nested encodings too, a few levels)."""
    for _ in range(4):
        nxt = unquote(_UNICODE_ESCAPE.sub(lambda m: chr(int(m[1], 16)), run.replace("\\/", "/")))
        if nxt == run:
            break
        run = nxt
    return run


def _escaped_run(match: re.Match[str]) -> str:
    run = match.group(0)
    if not _ESCAPED.search(run):
        return run
    decoded = _decoded(run)
    scrubbed = _plain(decoded)
    # Nothing secret once decoded: keep the original spelling.
    return run if scrubbed == decoded else scrubbed


def scrub(text: str) -> str:
    """``text`` with every secret-shaped part replaced by :data:`MARK` (see the module docstring)."""
    if not text:
        return text
    return _RUN.sub(_escaped_run, _plain(text))


# --- logging -------------------------------------------------------------------------------------


class SecretFilter(logging.Filter):
    """Scrubs each record it sees: the rendered message (its args merged in), the exception and the
    stack text. It never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose args do not fit its format: keep what can be shown
            message = f"{record.msg} {record.args!r}"
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def scrub_handlers(logger: logging.Logger) -> None:
    """Put a :class:`SecretFilter` on each of ``logger``'s handlers (once).

    On the root logger's handlers this covers every logger that propagates to them: a handler's
    filters see the records of all loggers, a logger's filters only its own."""
    for handler in logger.handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(SecretFilter())
