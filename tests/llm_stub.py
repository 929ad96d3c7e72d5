"""A stub OpenAI-compatible chat-completions server on 127.0.0.1 (random free port), for tests.

What it answers depends on a marker in the prompt:
  FAIL429ONCE  -> 429 the first time that prompt is seen, then a normal answer
  FAIL500      -> 500, always
  MALFORMED    -> a body that is not JSON
  EMPTY        -> a well-formed completion with empty content
  WRONGSHAPE   -> JSON without choices[0].message.content
  "Conversation:" (a rewrite prompt) -> "<last turn's text> (about: <first turn's text>)"
  otherwise    -> "1. <query>\n2. <query>..." with n queries naming the passage's first words
Every request is recorded (path, headers, JSON body) in `server.requests`.
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        srv = self.server
        with srv.lock:
            srv.requests.append({"path": self.path, "headers": dict(self.headers), "body": body.decode()})
        prompt = json.loads(body)["messages"][0]["content"]
        status, payload = 200, None
        if self.path != "/v1/chat/completions":
            status, payload = 404, b'{"error": "not found"}'
        elif "FAIL429ONCE" in prompt:
            with srv.lock:
                first = prompt not in srv.seen
                srv.seen.add(prompt)
            if first:
                status, payload = 429, b'{"error": "slow down"}'
        if status == 404:
            pass
        elif "FAIL500" in prompt:
            status, payload = 500, b'{"error": "boom"}'
        elif "MALFORMED" in prompt:
            payload = b'{"choices": [ this is not json'
        elif "EMPTY" in prompt:
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": ""}}]}).encode()
        elif "WRONGSHAPE" in prompt:
            payload = json.dumps({"result": "queries go here"}).encode()
        if payload is None and "Conversation:" in prompt:
            turns = [t.split(": ", 1)[-1] for t in prompt.split("Conversation:")[-1].strip().splitlines()]
            payload = json.dumps({"choices": [{"message": {"role": "assistant",
                                                           "content": f"{turns[-1]} (about: {turns[0]})"}}]}).encode()
        if payload is None:
            n = int(re.search(r"Write (\d+)", prompt).group(1)) if re.search(r"Write (\d+)", prompt) else 1
            words = prompt.split("Passage:")[-1].split()[:3]
            lines = [f"{k + 1}. Which passage talks about {' '.join(words)} variant {k}?" for k in range(n)]
            payload = json.dumps({"choices": [{"message": {"role": "assistant",
                                                           "content": "\n".join(lines)}}]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class StubServer:
    def __enter__(self) -> "StubServer":
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.requests, self.httpd.seen, self.httpd.lock = [], set(), threading.Lock()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def requests(self) -> list[dict]:
        return self.httpd.requests

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
