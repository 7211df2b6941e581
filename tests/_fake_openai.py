"""A base for fake OpenAI-compatible servers in tests: JSON replies, a model list, no request log."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler


class FakeOpenAIHandler(BaseHTTPRequestHandler):
    """Subclasses answer POSTs; GET .../models lists ``model_id``."""

    model_id = "fake-judge"

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        if self.path.endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": self.model_id, "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def _answer(self, content: str, model: str | None = None) -> None:
        """A chat completion whose message is ``content``."""
        self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": model or self.model_id,
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": content}}]})
