"""Secrets never reach disk: config trees and texts are cleaned before a manifest, a card or a reject row is
written. Keys are read from the environment only; this is the defence in depth behind that rule."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

REDACTED = "<redacted>"

# Keys that may hold a secret. Numbers and booleans under such keys are settings (``max_tokens``), never secrets.
_SECRET_KEY = re.compile(r"key|token|secret|passw(?:or)?d|passphrase|credential|auth", re.I)
# Values that look like a credential, wherever they appear: Hugging Face, OpenAI, GitHub, Slack, AWS, JWT, bearer.
_TOKEN_PATTERN = re.compile(
    r"\b(?:hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_\-]{16,}|gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{16,}"
    r"|xox[abpr]-[A-Za-z0-9\-]{10,}|AKIA[0-9A-Z]{16}|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})"
    r"|(?i:bearer)\s+[A-Za-z0-9._\-]{8,}"
)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)[^/@\s]+@", re.I)
_URL_SECRET_PARAM = re.compile(r"(?P<name>[?&][^=&#\s]*(?:key|token|secret|sig|password)[^=&#\s]*=)[^&#\s]+", re.I)
# A long unbroken run of letters and digits mixing both is a random credential, not a setting or a name.
_RANDOM_LOOKING = re.compile(r"^(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9_\-+/=]{32,}$")
_HEX_DIGEST = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")  # git revisions and hashes are provenance, keep them


def redact_text(text: str) -> str:
    """Credentials inside a string (tokens, URL passwords, signed query parameters) become ``<redacted>``."""
    text = _TOKEN_PATTERN.sub(REDACTED, text)
    text = _URL_USERINFO.sub(lambda m: m.group("scheme"), text)
    text = _URL_SECRET_PARAM.sub(lambda m: m.group("name") + REDACTED, text)
    if _RANDOM_LOOKING.match(text) and not _HEX_DIGEST.match(text):
        return REDACTED
    return text


def redact(obj: Any) -> Any:
    """A copy of a config tree without secrets: keys named like a secret are dropped (unless their value is a
    number or a boolean), and values that look like credentials are replaced. The pipeline file only names
    environment variables, but a card is public forever, so this is defensive.

    >>> redact({"api_key": "x", "max_tokens": 9, "url": "https://u:p@h/v1"})
    {'max_tokens': 9, 'url': 'https://h/v1'}
    """
    if isinstance(obj, dict):
        return {
            k: redact(v)
            for k, v in obj.items()
            if not (_SECRET_KEY.search(str(k)) and not isinstance(v, bool | int | float))
        }
    if isinstance(obj, list | tuple):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def redact_secrets(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with every known secret (e.g. the API key in use) and anything that looks like a credential
    replaced. Clean the whole text before cutting it short: a secret cut in half would no longer match."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _TOKEN_PATTERN.sub(REDACTED, text)
