"""A minimal client for any OpenAI-compatible chat-completions endpoint (standard library only).

`chat(prompt, cfg)` posts one user message to `{base_url}/chat/completions` and returns the reply text.
Transient failures (HTTP 429, 5xx, connection errors, timeouts) are retried with exponential backoff;
after `max_retries` retries `Transient` is raised so the caller can skip the item and carry on.
A reply that is not the expected shape raises `BadResponse`. Errors that no retry can fix (401, 403:
a wrong key; 404: a wrong base_url or model) are a `UserError` at once.

The API key is read from the environment variable named by `api_key_env` and is only ever put in the
Authorization header: never in a message, a log line or a file (messages are scrubbed of it too).
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .errors import UserError

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
MAX_FAILURES_IN_A_ROW = 3  # then the endpoint is down or misconfigured: stop instead of hammering it


class Transient(Exception):
    """The endpoint kept failing (429 / 5xx / network) after every retry."""


class BadResponse(Exception):
    """The endpoint answered, but not with a usable chat completion."""


def api_key(cfg: dict) -> str | None:
    """The key from the environment variable `cfg["api_key_env"]`; None when unset (local servers)."""
    name = cfg["api_key_env"]
    key = os.environ.get(name) if name else None
    return key or None


def _scrub(text: str, key: str | None) -> str:
    return text.replace(key, "***") if key else text


def _reply_text(body: bytes) -> str:
    """The assistant message of a chat-completions response body; BadResponse when malformed."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadResponse(f"malformed JSON ({e.__class__.__name__})") from None
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise BadResponse("no choices[0].message.content in the response") from None
    if not isinstance(content, str) or not content.strip():
        raise BadResponse("empty message content")
    return content


def chat(prompt: str, cfg: dict, *, backoff: float = 1.0, key: str | None = None) -> str:
    """One chat completion for `prompt`; `cfg` is params["ingest"]["llm"]. `backoff` is the first
    retry delay in seconds (doubled each retry, capped at a minute); tests pass a tiny one."""
    url = cfg["base_url"].rstrip("/") + "/chat/completions"
    payload = json.dumps({"model": cfg["model"], "temperature": cfg["temperature"],
                          "messages": [{"role": "user", "content": prompt}]}).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    retries = cfg["max_retries"]
    for attempt in range(retries + 1):
        delay = min(backoff * 2 ** attempt, MAX_BACKOFF)
        request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=cfg["timeout"]) as response:
                return _reply_text(response.read())
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                raise UserError(f"params.yaml: ingest.llm: {url} refused the request (HTTP {e.code}); "
                                f"check the API key in ${cfg['api_key_env']}") from None
            if e.code == 404:
                raise UserError(f"params.yaml: ingest.llm: {url} answered 404; check ingest.llm.base_url "
                                f"and ingest.llm.model ('{cfg['model']}')") from None
            if e.code != 429 and e.code < 500:
                raise BadResponse(f"HTTP {e.code}") from None  # e.g. 400 for one too-long passage
            reason = f"HTTP {e.code}"
            after = e.headers.get("Retry-After") if e.headers else None
            if after and after.strip().isdigit():  # the server says how long to wait
                delay = min(max(delay, float(after)), MAX_BACKOFF)
        except (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError,
                http.client.HTTPException) as e:
            reason = _scrub(str(getattr(e, "reason", e)), key)
        if attempt < retries:
            log.info("llm: %s from %s; retry %d/%d in %.2f s", reason, url, attempt + 1, retries, delay)
            time.sleep(delay)
    raise Transient(f"{reason} after {retries} retries")


def cached_reply(prompt: str, cfg: dict, cache_file: Path, parse: Callable[[str], dict], *,
                 backoff: float = 1.0, key: str | None = None) -> tuple[dict, bool]:
    """(entry, asked): the entry cached in `cache_file`, else `parse(chat(prompt))` (a BadResponse,
    or a parse that raises it, is cached as {"bad": why}) written atomically before it is returned.
    `Transient` propagates and caches nothing, so the item is asked again on the next run. A damaged
    cache file is asked again."""
    from .io import write_json

    if cache_file.is_file():
        try:
            return json.loads(cache_file.read_text(encoding="utf-8")), False
        except (OSError, json.JSONDecodeError):
            pass
    try:
        entry = parse(chat(prompt, cfg, backoff=backoff, key=key))
    except BadResponse as e:
        entry = {"bad": str(e)}
    write_json(cache_file, entry)  # atomic: an interrupted run leaves no half-written entry
    return entry, True


class FailureStreak:
    """Counts items given up on in a row (each after every retry). A streak of MAX_FAILURES_IN_A_ROW means
    the endpoint is down or misconfigured, not flaky: stop with one line saying a rerun resumes."""

    def __init__(self, cfg: dict, cache: Path, unit: str):
        self.cfg, self.cache, self.unit, self.in_a_row = cfg, cache, unit, 0

    def failed(self, error: Exception) -> None:
        self.in_a_row += 1
        if self.in_a_row >= MAX_FAILURES_IN_A_ROW:
            raise UserError(f"params.yaml: ingest.llm: {self.cfg['base_url']} kept failing ({error}) for "
                            f"{self.in_a_row} {self.unit} in a row; the answers so far are cached in "
                            f"{self.cache}, so a rerun resumes where this stopped") from None

    def succeeded(self) -> None:
        self.in_a_row = 0
