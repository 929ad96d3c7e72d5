import json

import pytest

from ragtune.conversations import read_conversations
from ragtune.errors import UserError
from ragtune.params import defaults

CORPUS = [{"_id": "d1", "title": "Reset", "text": "Open Settings and choose Reset password."},
          {"_id": "d2", "text": "On mobile, tap Profile, then Security."},
          {"_id": "d3", "text": "Invoices are emailed monthly."}]
CONV = {"id": "c1", "domain": "cloud", "turns": [
    {"speaker": "user", "text": "How do I reset my password?", "relevant": ["d1"]},
    {"speaker": "agent", "text": "Open Settings, then Reset password."},
    {"speaker": "user", "text": "And on mobile?", "rewrite": "How do I reset my password on mobile?",
     "relevant": [{"id": "d2", "score": 2}, {"id": "d1", "score": 0}]},
    {"speaker": "agent", "text": "Tap Profile, then Security."},
    {"speaker": "user", "text": "Thanks!"}]}


def _folder(tmp_path, convs, corpus=CORPUS):
    folder = tmp_path / "conv"
    folder.mkdir(exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "conversations.jsonl").write_text(
        "".join((c if isinstance(c, str) else json.dumps(c)) + "\n" for c in convs))
    return folder


def _cfg(**conv):
    cfg = defaults()["ingest"]
    cfg["conversation"].update(conv)
    return cfg


def test_judged_user_turns_become_queries_with_metadata(tmp_path):
    second = {"id": "c2", "turns": [{"speaker": "user", "text": "When are invoices sent?", "relevant": ["d3"]}]}
    corpus, queries, qrels, stats = read_conversations(_folder(tmp_path, [CONV, second]), _cfg())
    assert set(corpus) == {"d1", "d2", "d3"}
    assert queries == {
        "c1::1": {"text": "How do I reset my password?", "metadata": {"conversation_id": "c1", "turn": 1,
                                                                       "domain": "cloud"}},
        "c1::2": {"text": "And on mobile?", "metadata": {"conversation_id": "c1", "turn": 2, "domain": "cloud"}},
        "c2::1": {"text": "When are invoices sent?", "metadata": {"conversation_id": "c2", "turn": 1}}}
    assert qrels == {"all": {"c1::1": {"d1": 1}, "c1::2": {"d2": 2, "d1": 0}, "c2::1": {"d3": 1}}}
    assert stats["conversations"] == 2 and stats["user_turns"] == 4 and stats["unjudged_user_turns"] == 1


def test_query_modes(tmp_path):
    folder = _folder(tmp_path, [CONV])
    _, q, _, _ = read_conversations(folder, _cfg(query_mode="last_n_turns", last_n=3))
    assert q["c1::2"]["text"] == ("How do I reset my password?\nOpen Settings, then Reset password.\n"
                                  "And on mobile?")
    assert q["c1::1"]["text"] == "How do I reset my password?"  # fewer turns than last_n
    _, q, _, _ = read_conversations(folder, _cfg(query_mode="last_n_turns", last_n=1))
    assert q["c1::2"]["text"] == "And on mobile?"
    bad = json.loads(json.dumps(CONV))
    del bad["turns"][0]["relevant"]  # turn 1 unjudged: its missing rewrite does not matter
    _, q, _, _ = read_conversations(_folder(tmp_path, [bad]), _cfg(query_mode="rewrite"))
    assert q == {"c1::2": {"text": "How do I reset my password on mobile?",
                           "metadata": {"conversation_id": "c1", "turn": 2, "domain": "cloud"}}}


def test_rewrite_missing_names_line_and_field(tmp_path):
    other = {"id": "c0", "turns": [{"speaker": "user", "text": "x", "q": "standalone x", "relevant": ["d3"]}]}
    folder = _folder(tmp_path, [other, CONV])
    with pytest.raises(UserError, match=r"conversations.jsonl:2: field 'turns\[0\].q': missing or empty, "
                                        r"and ingest.conversation.query_mode is 'rewrite'"):
        read_conversations(folder, _cfg(query_mode="rewrite", rewrite_field="q"))


@pytest.mark.parametrize("line, message", [
    ('{"id": "c9", "turns": [', r":2: malformed JSON"),
    ({"turns": [{"speaker": "user", "text": "x"}]}, r":2: field 'id': missing or empty conversation id"),
    ({"id": "c1", "turns": [{"speaker": "user", "text": "x"}]}, r":2: field 'id': duplicate conversation id 'c1'"),
    ({"id": "c9", "turns": []}, r":2: field 'turns': expected a non-empty list"),
    ({"id": "c9", "turns": [{"speaker": "bot", "text": "x"}]}, r":2: field 'turns\[0\].speaker': expected 'user'"),
    ({"id": "c9", "turns": [{"speaker": "user", "text": " "}]}, r":2: field 'turns\[0\].text': missing or empty"),
    ({"id": "c9", "turns": [{"speaker": "user", "text": "x", "relevant": "d1"}]},
     r":2: field 'turns\[0\].relevant': expected a list"),
    ({"id": "c9", "turns": [{"speaker": "user", "text": "x", "relevant": [{"id": "d1", "score": "hi"}]}]},
     r":2: field 'turns\[0\].relevant\[0\].score': expected an integer grade"),
    ({"id": "c9", "turns": [{"speaker": "agent", "text": "x", "relevant": ["d1"]}]},
     r":2: field 'turns\[0\].relevant': only user turns"),
    ({"id": "c9", "domain": 3, "turns": [{"speaker": "user", "text": "x"}]}, r":2: field 'domain': expected a string"),
    ({"id": "c9", "turns": [{"speaker": "user", "text": "x", "relevant": ["nope"]}]},
     r":2: field 'turns\[0\].relevant': unknown document id 'nope'"),
])
def test_bad_conversations_name_file_line_and_field(tmp_path, line, message):
    with pytest.raises(UserError, match="conversations.jsonl" + message):
        read_conversations(_folder(tmp_path, [CONV, line]), _cfg())


def test_unknown_documents_dropped_and_counted_when_not_strict(tmp_path):
    conv = {"id": "c9", "turns": [{"speaker": "user", "text": "x y z", "relevant": ["nope", "d3"]},
                                  {"speaker": "user", "text": "only unknown", "relevant": ["nope"]}]}
    _, queries, qrels, stats = read_conversations(_folder(tmp_path, [conv]), _cfg(), strict=False)
    assert qrels == {"all": {"c9::1": {"d3": 1}}} and stats["dropped_judgments"] == 2
    assert stats["unjudged_user_turns"] == 1


def test_no_judged_turns_and_missing_files(tmp_path):
    conv = {"id": "c9", "turns": [{"speaker": "user", "text": "x"}]}
    with pytest.raises(UserError, match=r"conversations.jsonl: no judged user turns"):
        read_conversations(_folder(tmp_path, [conv]), _cfg())
    (tmp_path / "conv" / "conversations.jsonl").unlink()
    with pytest.raises(UserError, match=r"conversations.jsonl: file not found"):
        read_conversations(tmp_path / "conv", _cfg())


def _llm_cfg(srv, **conv):
    cfg = _cfg(query_mode="llm_rewrite", **conv)
    cfg["llm"].update(base_url=srv.base_url, max_retries=1, api_key_env="RAGTUNE_TEST_REWRITE_KEY")
    return cfg


def test_llm_rewrite_asks_once_per_judged_turn_and_caches(tmp_path, monkeypatch):
    from llm_stub import StubServer

    monkeypatch.setenv("RAGTUNE_TEST_REWRITE_KEY", "sk-rewrite-secret")
    folder, cache = _folder(tmp_path, [CONV]), tmp_path / "cache"
    with StubServer() as srv:
        _, q, qrels, stats = read_conversations(folder, _llm_cfg(srv), cache_dir=cache, backoff=0.001)
        assert len(srv.requests) == 2  # the two judged user turns; the unjudged "Thanks!" is not asked
        prompt = json.loads(srv.requests[1]["body"])["messages"][0]["content"]
        assert prompt.endswith("Conversation:\nuser: How do I reset my password?\nagent: Open Settings, then "
                               "Reset password.\nuser: And on mobile?")  # the conversation so far, nothing after
        assert srv.requests[0]["headers"]["Authorization"] == "Bearer sk-rewrite-secret"
        assert q["c1::2"]["text"] == "And on mobile? (about: How do I reset my password?)"
        assert stats["rewrite"] == {"turns": 2, "asked": 2, "cached": 0, "failed": 0, "bad_response": 0}
        _, again, _, stats = read_conversations(folder, _llm_cfg(srv), cache_dir=cache, backoff=0.001)
        assert len(srv.requests) == 2 and again == q and stats["rewrite"]["cached"] == 2  # from the cache
    files = list(cache.rglob("*.json"))
    assert len(files) == 2 and not any("sk-rewrite-secret" in f.read_text() for f in files)


def test_llm_rewrite_failures_are_left_out_and_counted(tmp_path):
    from llm_stub import StubServer

    bad = json.loads(json.dumps(CONV))
    bad["turns"][2]["text"] = "And on mobile? FAIL500"
    other = {"id": "c2", "turns": [{"speaker": "user", "text": "When are invoices sent? MALFORMED",
                                    "relevant": ["d3"]}]}
    with StubServer() as srv:
        _, q, qrels, stats = read_conversations(_folder(tmp_path, [bad, other]), _llm_cfg(srv),
                                                cache_dir=tmp_path / "cache", backoff=0.001)
    assert list(q) == ["c1::1"] and list(qrels["all"]) == ["c1::1"]
    assert stats["rewrite"]["failed"] == 1 and stats["rewrite"]["bad_response"] == 1


def test_llm_rewrite_prompt_must_name_the_conversation(tmp_path):
    from llm_stub import StubServer

    with StubServer() as srv, pytest.raises(UserError, match=r"^params.yaml: ingest.conversation.rewrite_prompt: "
                                                            r"must contain \{conversation\}"):
        read_conversations(_folder(tmp_path, [CONV]), _llm_cfg(srv, rewrite_prompt="Rewrite: {question}"),
                           cache_dir=tmp_path / "cache")
    # A bad line is reported before anything is asked.
    with StubServer() as srv, pytest.raises(UserError, match=r"conversations.jsonl:2: field 'turns\[0\].speaker'"):
        read_conversations(_folder(tmp_path, [CONV, {"id": "c2", "turns": [{"speaker": "bot", "text": "hi"}]}]),
                           _llm_cfg(srv), cache_dir=tmp_path / "cache")
    assert srv.requests == []
