"""Keep credentials out of messages: every error, log line and report that shows a URI goes through :func:`redact`.

What is hidden (replaced by ``***``):

* the user information of a URL (``https://user:pass@host/x.mp4`` -> ``https://***@host/x.mp4``);
* the values of query parameters that carry credentials: signed-URL parameters
  (``X-Goog-Signature``, ``X-Goog-Credential``, ``X-Amz-Signature``, ``X-Amz-Credential``,
  ``X-Amz-Security-Token``, Azure ``sig``) and any parameter whose name contains ``token``,
  ``secret``, ``password``, ``passwd``, ``signature``, ``credential`` or ``key``;
* ``"private_key": "..."``-style JSON fields and ``key=value`` pairs with such names;
* the literal values of secret-bearing environment variables (``AWS_SECRET_ACCESS_KEY``,
  ``AWS_SESSION_TOKEN``, ``GOOGLE_APPLICATION_CREDENTIALS_JSON``, any variable whose name ends
  in ``_TOKEN``, ``_SECRET``, ``_PASSWORD``, ``_KEY``...) and the secret-named values of
  ``VW_STORAGE_OPTIONS``, wherever they appear.

Importable on a Ray worker: standard library only.
"""

from __future__ import annotations

import json
import os
import re

MASK = "***"
#: Parts of parameter / field / variable names that mark a credential.
SECRET_WORDS = ("token", "secret", "password", "passwd", "signature", "credential", r"private[_-]?key",
                r"api[_-]?key", r"access[_-]?key", r"account[_-]?key")
#: Parameter names that are credentials by themselves (``?sig=...`` of an Azure SAS, ``?key=...``).
SECRET_NAMES = ("sig", "key", "auth", "sas")
_NAME = (r"(?:[A-Za-z0-9_.\-]*(?:" + "|".join(SECRET_WORDS) + r")[A-Za-z0-9_.\-]*|"
         + "|".join(SECRET_NAMES) + r")(?![A-Za-z0-9_])")
# scheme://user[:pass]@host  (userinfo has no '/', '@' or whitespace)
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"]+)@")
# ?name=value / &name=value / name=value / name: value / "name": "value"
_PAIR = re.compile(
    r"(?P<name>(?<![A-Za-z0-9_])" + _NAME + r")(?P<sep>\"?\s*[=:]\s*\"?)(?P<value>[^&\s'\",}]+)",
    re.IGNORECASE,
)
# "name": "any JSON string" (a quoted value may hold spaces and escaped newlines)
_JSON_FIELD = re.compile(r'(?P<name>"' + _NAME + r'"\s*:\s*)"(?:[^"\\]|\\.)*"', re.IGNORECASE)
_MIN_SECRET_LEN = 6
_ENV_SECRET_SUFFIXES = ("_TOKEN", "_SECRET", "_PASSWORD", "_KEY", "_SECRET_ACCESS_KEY", "_CREDENTIALS_JSON",
                        "_SIGNATURE")
_ENV_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS_JSON",
                "GCS_OAUTH_TOKEN", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN", "HF_TOKEN")
_SECRET_NAME = re.compile("|".join(SECRET_WORDS), re.IGNORECASE)


def _is_secret_env(name: str) -> bool:
    upper = name.upper()
    return upper in _ENV_SECRETS or upper.endswith(_ENV_SECRET_SUFFIXES)


def secret_values() -> list[str]:
    """Literal secrets of this process's environment, longest first (see the module docstring)."""
    found: set[str] = set()
    for name, value in os.environ.items():
        if _is_secret_env(name) and len(value) >= _MIN_SECRET_LEN:
            found.add(value)
            found.update(_json_secrets(value))
    raw = os.environ.get("VW_STORAGE_OPTIONS")
    if raw:
        found.update(_json_secrets(raw))
    return sorted(found, key=len, reverse=True)


def _json_secrets(text: str) -> set[str]:
    """Values of secret-named keys of a JSON object (service-account files, storage options)."""
    try:
        data = json.loads(text)
    except ValueError:
        return set()
    if not isinstance(data, dict):
        return set()
    out = set()
    for key, value in data.items():
        if isinstance(value, str) and _SECRET_NAME.search(str(key)) and len(value) >= _MIN_SECRET_LEN:
            out.add(value)
            out.update(line for line in value.splitlines() if len(line) >= _MIN_SECRET_LEN and "-----" not in line)
    return out


def redact(text: object) -> str:
    """``text`` (any object, as ``str``) with credentials replaced by ``***``."""
    out = str(text)
    for secret in secret_values():
        out = out.replace(secret, MASK)
    out = _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", out)
    out = _JSON_FIELD.sub(lambda m: f'{m.group("name")}"{MASK}"', out)
    return _PAIR.sub(lambda m: f"{m.group('name')}{m.group('sep')}{MASK}", out)


_installed = False


def install_log_redaction() -> None:
    """Redact every log record of this process (any logger, any handler) as it is created.

    Libraries log URLs at debug level (fsspec's HTTP filesystem logs each one); the record's
    message is formatted and passed through :func:`redact` once, when the record is made.
    Idempotent.
    """
    import logging

    global _installed
    if _installed:
        return
    make = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is left to logging to report
            return record
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
