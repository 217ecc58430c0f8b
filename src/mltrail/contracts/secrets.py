"""Tracker URIs without their secrets: what may be written down, shown and logged.

A tracker spec can hold a password (``postgresql+psycopg://user:PW@host/db``) or a token in
its query (``...?password=PW``, ``?token=...``). Everything mltrail records about a run is
read by people and programs that must not learn it: stage and run names, model folders, the
manifest (served on ``/version``), model versions (in every answer and telemetry row), journals
and export states, logs. So the spec is redacted where it is parsed
(:func:`mltrail.contracts.tasks.tracker_name` for names, :func:`mltrail.tracking.registry.parse`
for the backends' targets), with :func:`redact_uri`: the user is kept, the password and any
secret query value become ``***``. Only the process that connects sees the real URI (see
:func:`mltrail.tracking.registry.connect_uri`).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

REDACTED = "***"

SECRET_PARAMS = frozenset(
    {"password", "passwd", "pwd", "pass", "token", "access_token", "api_key", "apikey", "secret"}
)
"""Query parameters whose value is a credential (compared in lower case)."""


def redact_uri(uri: str) -> str:
    """``uri`` with its password and secret query values replaced by ``***``; anything that
    is not a URI with credentials comes back unchanged."""
    try:
        parts = urlsplit(uri)
    except ValueError:  # not a URI at all (a bracketed host that is not an address, ...)
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if has_password else netloc
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(key.lower() in SECRET_PARAMS for key, _ in pairs):
        redacted = [(k, REDACTED if k.lower() in SECRET_PARAMS else v) for k, v in pairs]
        query = urlencode(redacted, safe="*", quote_via=quote)
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_spec(spec: str) -> str:
    """A tracker spec (comma-separated names and URIs) with each URI redacted."""
    return ",".join(redact_uri(part.strip()) for part in spec.split(","))


def without_secrets(uri: str) -> str:
    """``uri`` with no password and no secret query parameter at all: what is left for a
    driver to complete from its own sources (``PGPASSWORD``, ``~/.pgpass``, MLflow's
    ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}@{host}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if k.lower() not in SECRET_PARAMS]
    query = urlencode(kept, quote_via=quote) if len(kept) != len(pairs) else parts.query
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def secrets_of(uri: str) -> list[str]:
    """The credentials in ``uri``: its password and secret query values (as written and
    decoded), longest first."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return []
    found: set[str] = set()
    if parts.password:
        found |= {parts.password, unquote(parts.password)}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in SECRET_PARAMS and value:
            found |= {value, quote(value, safe="")}
    return sorted((s for s in found if s), key=len, reverse=True)


def hide_secrets(text: str, uri: str) -> str:
    """``text`` with every credential of ``uri`` replaced by ``***``."""
    for secret in secrets_of(uri):
        text = text.replace(secret, REDACTED)
    return text
