"""Secrets stay out of what is shown, shared or stored for display.

A camera URL often carries its password (``rtsp://admin:pw@10.0.0.7/stream``, or
``?password=pw`` in its query) and the MQTT settings carry one too. Wherever a source or a
configuration is shown or recorded (the live page, JSONL, MQTT, the store's sources, gaps,
errors and run records, reports, log lines) it goes through :func:`mask_text` or
:func:`mask_config` first; only the code that opens the stream or the broker sees the secret.

Example:
    >>> mask_text("cannot open rtsp://admin:s3cret@10.0.0.7:554/live?token=abc&ch=1")
    'cannot open rtsp://admin:***@10.0.0.7:554/live?token=***&ch=1'
    >>> mask_config({"mqtt": {"host": "broker", "password": "pw"}})
    {'mqtt': {'host': 'broker', 'password': '***'}}
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

SECRET_NAMES = frozenset({"password", "passwd", "pwd", "pass", "secret", "token", "access_token",
                          "api_key", "apikey", "key", "auth", "authorization", "signature", "sig",
                          "credentials", "client_secret"})
"""Settings and URL query parameters whose value is a secret (compared lower-case)."""

# scheme://user:password@host -> the password; scheme://secret@host (a bare token) is kept as a
# user name, which it usually is.
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*):(?P<secret>[^/\s@]*)@")
_QUERY = re.compile(r"(?P<head>[?&;](?P<name>[A-Za-z_][A-Za-z0-9_.-]*)=)(?P<value>[^&;#\s]*)")


def mask_text(text: str) -> str:
    """``text`` with every URL password and secret query value replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _QUERY.sub(lambda m: m["head"] + (MASK if m["name"].lower() in SECRET_NAMES and m["value"]
                                             else m["value"]), text)


def mask_config(value: Any) -> Any:
    """A copy of a configuration (dicts, lists, strings) with secret settings and URL secrets masked."""
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and k.lower() in SECRET_NAMES and value[k] not in (None, "")
                    else mask_config(value[k])) for k in value}
    if isinstance(value, list | tuple):
        return type(value)(mask_config(v) for v in value)
    if isinstance(value, str):
        return mask_text(value)
    return value
