"""A real JWKS endpoint on 127.0.0.1 for tests of external OIDC issuers (unit and e2e)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    document = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**document, "kid": kid, "alg": "RS256", "use": "sig"}


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    document = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {**document, "kid": kid, "alg": "ES256", "use": "sig"}


class JwksServer:
    """Serves a JWKS whose document, status and body can change between requests; counts requests."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.status = 200
        self.body: bytes | None = None  # served instead of the document when set
        self._requests = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server._requests += 1
                    status = server.status
                    body = server.body if server.body is not None else json.dumps(server.document).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="jwks-server", daemon=True
        )
        self._thread.start()
        self._stopped = False
        self.url = f"http://127.0.0.1:{self._httpd.server_port}/.well-known/jwks.json"

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    def publish(self, *keys: dict[str, Any]) -> None:
        with self._lock:
            self.document = {"keys": list(keys)}

    def stop(self) -> None:
        """Stop serving and close the socket: connections to the port are refused from now on."""
        if not self._stopped:
            self._stopped = True
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
