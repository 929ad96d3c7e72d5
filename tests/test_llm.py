import json
import socket

import pytest
from llm_stub import StubServer

from ragtune.errors import UserError
from ragtune.llm import BadResponse, Transient, api_key, chat
from ragtune.params import defaults


def _cfg(base_url, **kw):
    cfg = defaults()["ingest"]["llm"]
    cfg.update({"base_url": base_url, "max_retries": 3, "timeout": 5.0, **kw})
    return cfg


def test_success_sends_model_prompt_and_key():
    with StubServer() as srv:
        reply = chat("Write 2 queries. Passage: cats purr", _cfg(srv.base_url), backoff=0.001, key="sk-XYZ")
        assert reply.startswith("1. Which passage talks about cats purr")
        (req,) = srv.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sk-XYZ"
    body = json.loads(req["body"])
    assert body["model"] == "gpt-4o-mini" and body["messages"][0]["content"].endswith("cats purr")


def test_no_key_sends_no_authorization_header(monkeypatch):
    monkeypatch.delenv("RAGTUNE_TEST_KEY", raising=False)
    assert api_key({"api_key_env": "RAGTUNE_TEST_KEY"}) is None
    monkeypatch.setenv("RAGTUNE_TEST_KEY", "abc")
    assert api_key({"api_key_env": "RAGTUNE_TEST_KEY"}) == "abc"
    with StubServer() as srv:
        chat("Passage: x y", _cfg(srv.base_url), backoff=0.001)
        assert "Authorization" not in srv.requests[0]["headers"]


def test_429_is_retried_then_succeeds():
    with StubServer() as srv:
        reply = chat("FAIL429ONCE Passage: dogs bark", _cfg(srv.base_url), backoff=0.001)
        assert "dogs bark" in reply and len(srv.requests) == 2


def test_500_forever_gives_up_after_max_retries():
    with StubServer() as srv:
        with pytest.raises(Transient, match="HTTP 500 after 3 retries"):
            chat("FAIL500 Passage: x", _cfg(srv.base_url), backoff=0.001)
        assert len(srv.requests) == 4  # 1 + 3 retries


def test_connection_refused_is_transient():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Transient):
        chat("Passage: x", _cfg(f"http://127.0.0.1:{port}/v1", max_retries=1), backoff=0.001)


@pytest.mark.parametrize("marker, message", [("MALFORMED", "malformed JSON"), ("EMPTY", "empty message"),
                                             ("WRONGSHAPE", "no choices")])
def test_bad_responses_raise_bad_response(marker, message):
    with StubServer() as srv:
        with pytest.raises(BadResponse, match=message):
            chat(f"{marker} Passage: x", _cfg(srv.base_url), backoff=0.001)
        assert len(srv.requests) == 1  # not retried: asking again would pay again for the same answer


def test_404_is_a_user_error_naming_the_params():
    with StubServer() as srv:
        with pytest.raises(UserError, match="ingest.llm.base_url"):
            chat("Passage: x", _cfg(srv.base_url.replace("/v1", "/nope")), backoff=0.001, key="sk-secret")
