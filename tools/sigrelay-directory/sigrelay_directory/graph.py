"""Microsoft Graph over HTTPS: an app-only token from MSAL (OAuth2 client
credentials) and GETs that wait out throttling (429/503 with Retry-After),
take a fresh token once on 401, and follow links only to the Graph host."""
import email.utils
import re
import time
import urllib.parse

import msal
import requests

from . import ToolError, note

MAX_RETRIES = 6        # per request: 429, 502, 503, 504 and connection failures
MAX_WAIT = 600.0       # seconds; a longer Retry-After is cut to this
TIMEOUT = (15, 120)    # connect, read (seconds)
RETRIED = (429, 502, 503, 504)
KNOWN_AUTHORITY_HOSTS = {"login.microsoftonline.com", "login.microsoftonline.us",
                         "login-us.microsoftonline.com", "login.chinacloudapi.cn"}


class GraphError(ToolError):
    def __init__(self, message, status=None, code=None):
        super().__init__(message)
        self.status, self.code = status, code


def first_line(text, limit=300):
    text = (text or "").strip().splitlines()
    text = text[0] if text else ""
    return text if len(text) <= limit else text[:limit] + "..."


def transport_error(what, e):
    """One line for a requests exception (its text nests urllib3's and ssl's)."""
    text = str(e)
    if isinstance(e, requests.exceptions.SSLError):
        m = re.search(r"certificate verify failed: (.+?) \(_ssl", text)
        if m:
            return ToolError(f"{what}: TLS certificate not trusted ({m.group(1)}); see --ca-file")
        m = re.search(r"\[SSL: [A-Z_]+\] ([^(']+)", text)
        return ToolError(f"{what}: TLS error ({(m.group(1) if m else first_line(text, 200)).strip()})")
    if isinstance(e, requests.exceptions.Timeout):
        return ToolError(f"{what}: timed out")
    if isinstance(e, requests.exceptions.ConnectionError):
        m = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
        return ToolError(f"{what}: cannot connect ({m.group(1).strip() if m else first_line(text, 200)})")
    return ToolError(f"{what}: {first_line(text, 200)}")


class Session(requests.Session):
    """requests.Session whose CA file, when one is given, wins over
    $REQUESTS_CA_BUNDLE and $CURL_CA_BUNDLE (requests lets the environment
    override a session's `verify`, but not a request's), with a timeout."""

    def __init__(self, verify):
        super().__init__()
        self.ca_file = verify if verify is not True else None

    def request(self, method, url, **kwargs):
        kwargs.setdefault("timeout", TIMEOUT)
        if self.ca_file:
            kwargs["verify"] = self.ca_file
        return super().request(method, url, **kwargs)


def origin(url):
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), (parts.netloc or "").lower()


class Tokens:
    """App-only access tokens for `scope`, from MSAL."""

    def __init__(self, tenant_id, client_id, secret, authority, scope, verify):
        self.authority = authority or f"https://login.microsoftonline.com/{tenant_id}"
        self.client_id, self.secret, self.scope, self.verify = client_id, secret, scope, verify
        self.app = None
        self.token = None
        self.expires = 0.0

    def _app(self):
        if self.app is None:
            custom = urllib.parse.urlsplit(self.authority).hostname not in KNOWN_AUTHORITY_HOSTS
            kwargs = {"validate_authority": False, "instance_discovery": False} if custom else {}
            try:
                # OpenID discovery at <authority>/v2.0/.well-known/openid-configuration; for an
                # authority of one's own, no instance discovery at login.microsoftonline.com.
                self.app = msal.ConfidentialClientApplication(
                    self.client_id, client_credential=self.secret, authority=self.authority,
                    http_client=Session(self.verify), token_cache=msal.TokenCache(), **kwargs)
            except requests.RequestException as e:
                raise transport_error(f"authority {self.authority}", e) from None
            except ValueError as e:
                raise ToolError(f"authority {self.authority}: {first_line(str(e))}") from None
        return self.app

    def get(self):
        # Renewed shortly before it expires (a long sync outlives a token).
        if self.token is None or time.monotonic() >= self.expires:
            self._acquire()
        return self.token

    def refresh(self):
        """A new token, not one from MSAL's cache (after Graph answered 401)."""
        app = self._app()
        cache = app.token_cache
        for item in cache.find(cache.CredentialType.ACCESS_TOKEN):
            cache.remove_at(item)
        self.token = None
        self._acquire()
        return self.token

    def _acquire(self):
        app = self._app()
        try:
            result = app.acquire_token_for_client(scopes=[self.scope])
        except requests.RequestException as e:
            raise transport_error(f"token request to {self.authority}", e) from None
        except ValueError as e:
            raise ToolError(f"token request to {self.authority}: {first_line(str(e))}") from None
        if not result or "access_token" not in result:
            result = result or {}
            raise ToolError(f"token request refused: {result.get('error', 'no access token')}: "
                            f"{first_line(result.get('error_description'))}")
        try:
            lifetime = float(result.get("expires_in", 3599))
        except (TypeError, ValueError):
            lifetime = 3599.0
        self.token = result["access_token"]
        self.expires = time.monotonic() + lifetime - min(60.0, lifetime / 2)


def retry_after(response, attempt):
    value = response.headers.get("Retry-After")
    if value:
        value = value.strip()
        if value.isdigit():
            return min(float(value), MAX_WAIT)
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
            return max(0.0, min(when - time.time(), MAX_WAIT))
        except (TypeError, ValueError, OverflowError):
            pass
    return min(2.0 ** attempt, 60.0)


def error_of(response):
    """(code, message) from a Graph error body {"error": {"code", "message"}}."""
    try:
        err = response.json().get("error") or {}
        return err.get("code"), first_line(err.get("message"))
    except (ValueError, AttributeError):
        return None, first_line(response.text, 200)


class Graph:
    def __init__(self, base_url, tokens, verify, verbose=False):
        self.base = base_url.rstrip("/")
        self.tokens, self.verbose = tokens, verbose
        self.session = Session(verify)

    def check_link(self, url):
        if origin(url) != origin(self.base):
            raise ToolError(f"Graph sent a link to another host, not followed: {first_line(url, 200)}")

    def get_json(self, url):
        self.check_link(url)
        shown = url.split("?", 1)[0]
        attempt, refreshed = 0, False
        while True:
            token = self.tokens.get()
            try:
                r = self.session.get(url, headers={"Authorization": f"Bearer {token}",
                                                   "Accept": "application/json"})
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
                if isinstance(e, requests.exceptions.SSLError) or attempt >= MAX_RETRIES:
                    raise transport_error(f"GET {shown}", e) from None
                attempt += 1
                wait = min(2.0 ** attempt, 60.0)
                note(f"{transport_error(f'GET {shown}', e)}; retrying in {wait:.0f} s")
                time.sleep(wait)
                continue
            except requests.RequestException as e:
                raise transport_error(f"GET {shown}", e) from None
            if r.status_code == 200:
                if self.verbose:
                    note(f"GET {shown}: 200")
                try:
                    body = r.json()
                except ValueError:
                    raise GraphError(f"GET {shown}: the answer is not JSON", 200) from None
                if not isinstance(body, dict):
                    raise GraphError(f"GET {shown}: the answer is not a JSON object", 200)
                return body
            code, message = error_of(r)
            status = f"{r.status_code} {code}" if code else str(r.status_code)
            if r.status_code == 401 and not refreshed:
                refreshed = True  # expired or revoked: one fresh token, then give up
                if self.verbose:
                    note(f"GET {shown}: {status}; getting a new token")
                self.tokens.refresh()
                continue
            if r.status_code in RETRIED and attempt < MAX_RETRIES:
                attempt += 1
                wait = retry_after(r, attempt)
                note(f"GET {shown}: {status}; retrying in {wait:.0f} s")
                time.sleep(wait)
                continue
            hint = ""
            if r.status_code == 403:
                hint = " (does the app have the User.Read.All application permission, " \
                       "with admin consent?)"
            raise GraphError(f"GET {shown}: HTTP {status}: {message}{hint}", r.status_code, code)

