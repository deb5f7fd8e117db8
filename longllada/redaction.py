"""Secrets in command-line arguments: kept out of every file, log line and error message, yet still used.

A Hugging Face token given as a model argument (``--model_args pretrained=ORG/NAME,token=hf_...``) would
otherwise be written wherever the arguments are recorded: lm-eval's log line "Initializing ... with arguments",
its results file (``config.model_args``) and the task configs it merges them into, our progress file and log
lines. The commands therefore take the secret keys out of the arguments before anything records them
(:func:`split_secrets`), hand a token to the Hub client through the environment variable it reads at every call
(``HF_TOKEN``, :func:`hub_token`), and scrub any value that still reaches a message (:func:`scrub`).

Standard library only: the command line imports it before torch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

# Argument names whose value is a credential (transformers' and huggingface_hub's, lm-eval's logger arguments,
# and the usual names of API keys).
SECRET_KEYS = frozenset(
    {"token", "use_auth_token", "hf_token", "auth_token", "access_token", "api_key", "apikey", "api_token",
     "password", "secret", "secret_key"}
)  # fmt: skip
REDACTED = "<redacted>"
# The variable huggingface_hub reads for every request (before the stored login).
HUB_TOKEN_ENV = "HF_TOKEN"


def is_secret_key(key: Any) -> bool:
    """Whether an argument named ``key`` holds a credential (case-insensitive)."""
    return isinstance(key, str) and key.strip().lower() in SECRET_KEYS


def redact(value: Any) -> Any:
    """A copy of ``value`` (dicts, lists and tuples nested in any way) with every secret key's value replaced by
    ``REDACTED``."""
    if isinstance(value, dict):
        return {key: REDACTED if is_secret_key(key) else redact(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(item) for item in value)
    return value


def split_secrets(arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(public, secrets)``: the arguments without their secret keys, and those keys with their values."""
    public = {key: value for key, value in arguments.items() if not is_secret_key(key)}
    secrets = {key: value for key, value in arguments.items() if is_secret_key(key)}
    return public, secrets


def secret_values(values: Iterable[Any]) -> list[str]:
    """The strings worth scrubbing among ``values`` (a bool such as ``use_auth_token=True`` is no secret)."""
    found = {str(value) for value in values if isinstance(value, str) and len(value.strip()) >= 4}
    return sorted(found, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``REDACTED``."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def hub_token(secrets: dict[str, Any]) -> str | None:
    """The Hugging Face token among the secret arguments (``token``, or the older ``use_auth_token``), when one is
    given as text; True/False/None mean the stored login, which needs nothing."""
    for key in ("token", "use_auth_token", "hf_token"):
        value = secrets.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


@contextmanager
def hub_token_environment(token: str | None) -> Iterator[None]:
    """Within the block, huggingface_hub authenticates with ``token`` (its ``HF_TOKEN`` variable, read at every
    request); afterwards the variable is as it was. None changes nothing."""
    if token is None:
        yield
        return
    before = os.environ.get(HUB_TOKEN_ENV)
    os.environ[HUB_TOKEN_ENV] = token
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(HUB_TOKEN_ENV, None)
        else:
            os.environ[HUB_TOKEN_ENV] = before


class ScrubSecrets(logging.Filter):
    """A logging filter that replaces the given secrets in every record's message (a last line of defence for
    a library that formats its arguments into a log line)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            cleaned = scrub(message, self.secrets)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


@contextmanager
def scrubbed_logs(secrets: Iterable[str]) -> Iterator[None]:
    """Within the block, every handler of the root logger and of the loggers that do not propagate (lm-eval's,
    ours) scrubs ``secrets`` from what it writes."""
    secrets = list(secrets)
    if not secrets:
        yield
        return
    scrubber = ScrubSecrets(secrets)
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    handlers = {id(handler): handler for logger in loggers for handler in logger.handlers}
    for handler in handlers.values():
        handler.addFilter(scrubber)
    try:
        yield
    finally:
        for handler in handlers.values():
            handler.removeFilter(scrubber)
