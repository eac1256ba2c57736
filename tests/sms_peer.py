"""A local HTTP server that answers as an SMSEagle LAN SMS gateway does (JSON-RPC
``sms.send_sms`` on ``/jsonrpc/sms``, the wire format Apprise's ``smseagle://`` plugin speaks):
the network boundary behind every test that sends a text (OTP, contacts, fire and flood plans).
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "sms-eagle-token-0042"


class SmsEagle:
    """A local HTTP server answering as an SMSEagle box: ``POST /jsonrpc/sms`` with
    ``{"method": "sms.send_sms", "params": {"access_token", "to", "message", ...}}``;
    ``{"result": {"message_id": n, "status": "ok"}}`` back, or HTTP 500 while ``failing``."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.failing = False
        self._lock = threading.Condition()
        eagle = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/jsonrpc/sms" or eagle.failing:
                    self.send_response(500)
                    self.end_headers()
                    return
                with eagle._lock:
                    eagle.messages.append(body)
                    number = len(eagle.messages)
                    eagle._lock.notify_all()
                answer = json.dumps({"result": {"message_id": number, "status": "ok"}})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"smseagle://{TOKEN}@127.0.0.1:{self.server.server_address[1]}/+86{{phone}}"

    def code(self, index: int) -> str:
        """The code in the ``index``-th text (waits for it)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.messages) > index, 30):
                raise AssertionError(f"only {len(self.messages)} texts arrived")
            params = self.messages[index]["params"]
        match = re.search(r"验证码 (\d{6})", params["message"])
        assert match, params["message"]
        return match[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
