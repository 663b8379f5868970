"""A stand-in for Microsoft Entra ID's token endpoint and Microsoft Graph's
`GET /v1.0/users/delta`, over HTTPS on 127.0.0.1 (an ephemeral port), for
tests/directory/directory_tool_test.py. Standard library only.

Serves, for one tenant:
  GET  /TENANT/v2.0/.well-known/openid-configuration   OpenID discovery (MSAL)
  POST /TENANT/oauth2/v2.0/token                        client credentials grant
  GET  /v1.0/users/delta                                 pages and delta pages

Scripted by the test:
  full_pages   [[user, ...], ...]: the initial sync, one list a page,
               linked by $skiptoken and ended by $deltatoken=initial_delta
  deltas       {deltatoken: ([[entry, ...], ...], next deltatoken)}; an unknown
               deltatoken is answered 410 syncStateNotFound
  faults       {n: fault} for the n-th Graph request (0-based, this server's
               life): "expire" (every token issued so far becomes invalid, so
               Graph answers 401 InvalidAuthenticationToken), or (status,
               headers, error code)
Recorded: graph_log (time, query, token, status) and token_log (form fields)."""
import json
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class GraphStandIn:
    def __init__(self, certs_dir, tenant="0b3c6f2e-7a1d-4f7e-9c55-fabrikam0001",
                 client_id="5f1a7c2e-0000-4bb1-8f00-sigrelay0001", secret="s3cret~Value.1",
                 token_lifetime=300):
        self.tenant, self.client_id, self.secret = tenant, client_id, secret
        self.token_lifetime = token_lifetime
        self.lock = threading.Lock()
        self.full_pages = [[]]
        self.initial_delta = "D1"
        self.deltas = {}
        self.faults = {}
        self.graph_log = []
        self.token_log = []
        self.other_log = []
        self.valid_tokens = set()
        self.issued = 0
        self.graph_requests = 0

        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.standin = self
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(f"{certs_dir}/relay.pem", f"{certs_dir}/relay.key")  # SAN 127.0.0.1
        # The handshake happens in the request's own thread, not in accept().
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True,
                                             do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self.base = f"https://127.0.0.1:{self.port}"
        self.authority = f"{self.base}/{self.tenant}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- what the test looks at
    def graph_statuses(self):
        with self.lock:
            return [entry["status"] for entry in self.graph_log]

    def expire_tokens(self):
        with self.lock:
            self.valid_tokens.clear()

    # ---- the handlers' side
    def openid_configuration(self):
        t = f"{self.base}/{self.tenant}"
        return {
            "token_endpoint": f"{t}/oauth2/v2.0/token",
            "authorization_endpoint": f"{t}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{t}/oauth2/v2.0/devicecode",
            "issuer": f"{t}/v2.0",
            "jwks_uri": f"{t}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "tenant_region_scope": "EU",
        }

    def token(self, form):
        with self.lock:
            self.token_log.append(dict(form))
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type",
                         "error_description": "AADSTS70003: The app requested an unsupported grant type."}
        if form.get("client_id") != self.client_id:
            return 400, {"error": "unauthorized_client",
                         "error_description": f"AADSTS700016: Application with identifier "
                                              f"'{form.get('client_id')}' was not found in the directory."}
        if form.get("client_secret") != self.secret:
            return 401, {"error": "invalid_client", "error_codes": [7000215],
                         "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the "
                                              "secret being sent in the request is the client secret value, "
                                              "not the client secret ID.\r\nTrace ID: 2b1e\r\n"
                                              "Correlation ID: 77aa\r\nTimestamp: 2026-01-01 00:00:00Z"}
        if form.get("scope") != f"{self.base}/.default":
            return 400, {"error": "invalid_scope",
                         "error_description": f"AADSTS1002012: The provided value for scope "
                                              f"{form.get('scope')} is not valid."}
        with self.lock:
            self.issued += 1
            token = f"access-token-{self.issued}"
            self.valid_tokens.add(token)
        return 200, {"token_type": "Bearer", "expires_in": self.token_lifetime,
                     "ext_expires_in": self.token_lifetime, "access_token": token}

    def delta(self, query, token):
        """(status, headers, body) for GET /v1.0/users/delta."""
        with self.lock:
            n = self.graph_requests
            self.graph_requests += 1
            fault = self.faults.get(n)
            if fault == "expire":
                self.valid_tokens.clear()
            authorised = token in self.valid_tokens
        if not authorised:
            return 401, {}, _error("InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
        if fault not in (None, "expire"):
            status, headers, code = fault
            return status, headers, _error(code, f"stand-in fault {status}")
        link = f"{self.base}/v1.0/users/delta"
        if "$skiptoken" in query:
            source, _, index = query["$skiptoken"].rpartition(".")
            index = int(index)
            pages, after = (self.full_pages, self.initial_delta) if source == "full" \
                else self.deltas[source]
        elif "$deltatoken" in query:
            source, index = query["$deltatoken"], 0
            if source not in self.deltas:
                return 410, {}, _error("syncStateNotFound", "The sync state generation is not found.")
            pages, after = self.deltas[source]
        else:
            if "$select" not in query:
                return 400, {}, _error("Request_BadRequest", "the stand-in wants a $select")
            source, index = "full", 0
            pages, after = self.full_pages, self.initial_delta
        body = {"@odata.context": f"{self.base}/v1.0/$metadata#users", "value": pages[index]}
        if index + 1 < len(pages):
            body["@odata.nextLink"] = f"{link}?$skiptoken={source}.{index + 1}"
        else:
            body["@odata.deltaLink"] = f"{link}?$deltatoken={after}"
        return 200, {}, body


def _error(code, message):
    return {"error": {"code": code, "message": message,
                      "innerError": {"date": "2026-01-01T00:00:00", "request-id": "0000"}}}


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):  # a refused handshake is a test's point
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        s = self.server.standin
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        if url.path == f"/{s.tenant}/v2.0/.well-known/openid-configuration":
            with s.lock:
                s.other_log.append(self.path)
            return self.answer(200, s.openid_configuration())
        if url.path == "/v1.0/users/delta":
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else None
            t = time.monotonic()
            status, headers, body = s.delta(query, token)
            with s.lock:
                s.graph_log.append({"time": t, "query": query, "token": token, "status": status})
            return self.answer(status, body, headers)
        with s.lock:
            s.other_log.append(self.path)
        self.answer(404, _error("Request_ResourceNotFound", f"no {url.path} here"))

    def do_POST(self):
        s = self.server.standin
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(length).decode()).items()}
        if urllib.parse.urlsplit(self.path).path == f"/{s.tenant}/oauth2/v2.0/token":
            status, body = s.token(form)
            return self.answer(status, body)
        with s.lock:
            s.other_log.append("POST " + self.path)
        self.answer(404, {"error": "not_found"})
