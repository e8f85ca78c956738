"""Webhooks on the floor: which URLs a webhook may reach, and how a delivery is signed.

Plain Python, read by the API (options.webhook_url at submit), the CLI (a key's default URL) and the worker (the
same check again just before sending, since DNS answers change). A URL is judged by every address its host
resolves to, never by its spelling, so `localhost`, `0x7f.1`, `[::ffff:127.0.0.1]` or a name that resolves to
10.0.0.5 are all the same loopback or private target; the sender then connects to the address that was checked.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Gradaudit-Signature"
TIMESTAMP_HEADER = "X-Gradaudit-Timestamp"
EVENT_HEADER = "X-Gradaudit-Event"
MAX_URL_CHARS = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
# Each key's signing secret is an HMAC of this label and the key's id under the server's secret: a receiver of one
# key cannot sign for another's, and the database holds nothing that signs.
_DERIVATION_LABEL = b"gradaudit webhook signing secret v1:"
SECRET_PREFIX = "whsec_"
ANONYMOUS = "anonymous"  # the audits made while auth was off belong to no key

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookRefused(ValueError):
    """The URL may not be a webhook target; `detail` says why, in words fit for a problem+json."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Target:
    """A checked webhook URL: where to connect (an address that passed the check) and what to ask for."""

    scheme: str
    host: str  # as written in the URL, for the Host header and TLS
    port: int
    path: str  # path and query, as sent on the request line
    address: str  # the resolved address to connect to

    @property
    def host_header(self) -> str:
        """The Host header: the host as written, with the port where it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def check_url_form(url: str) -> None:
    """Refuse what is no http(s) URL to a host, without resolving it: the shape options.webhook_url must have."""
    _split(url)


def webhook_target(url: str, *, allow_private: bool) -> Target:
    """The URL resolved and checked: WebhookRefused when it is malformed, does not resolve, or any address it
    resolves to is not public (unless allow_private)."""
    scheme, host, port, path = _split(url)
    addresses = _resolve(host, port)
    if not allow_private:
        for address in addresses:
            reason = non_public_reason(address)
            if reason:
                what = f"{address} is" if host.strip("[]") == str(address) else f"{host} resolves to {address},"
                raise WebhookRefused(f"{what} a {reason} address; webhooks go to public addresses only "
                                     "(GRADAUDIT_WEBHOOK_ALLOW_PRIVATE)")
    return Target(scheme=scheme, host=host, port=port, path=path, address=str(addresses[0]))


def _split(url: str) -> tuple[str, str, int, str]:
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        raise WebhookRefused(f"a webhook URL is a string of at most {MAX_URL_CHARS} characters")
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise WebhookRefused("a webhook URL holds no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as invalid:
        raise WebhookRefused(f"not a valid URL: {invalid}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise WebhookRefused("a webhook URL starts with http:// or https://")
    if not parts.hostname:
        raise WebhookRefused("a webhook URL names a host")
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused("a webhook URL carries no user:password@; put a token in its path or query instead")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme], path


def _resolve(host: str, port: int) -> list[IpAddress]:
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as failed:
        raise WebhookRefused(f"the webhook host {host!r} does not resolve ({failed})") from None
    addresses = []
    for _family, _type, _proto, _name, sockaddr in answers:
        address = ipaddress.ip_address(sockaddr[0].split("%")[0])  # an IPv6 zone (fe80::1%eth0) is not an address
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise WebhookRefused(f"the webhook host {host!r} does not resolve")
    return addresses


_REASONS = (("is_unspecified", "unspecified"), ("is_loopback", "loopback"), ("is_link_local", "link-local"),
            ("is_multicast", "multicast"), ("is_private", "private"), ("is_reserved", "reserved"))
# IPv6 prefixes that carry an IPv4 address a gateway may forward to: judge the IPv4 address inside.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def non_public_reason(address: IpAddress) -> str | None:
    """Why a webhook may not go to this address (loopback, private, link-local, ...), or None for a public one."""
    for embedded in _embedded_ipv4(address):
        reason = non_public_reason(embedded)
        if reason:
            return reason
    for attribute, reason in _REASONS:
        if getattr(address, attribute):
            return reason
    return None if address.is_global else "non-public"


def _embedded_ipv4(address: IpAddress) -> list[ipaddress.IPv4Address]:
    if address.version != 6:
        return []
    embedded = [address.ipv4_mapped, address.sixtofour, address.teredo[1] if address.teredo else None]
    if address in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [inner for inner in embedded if inner is not None]


def signing_secret(server_secret: str, key_id: str | None) -> str:
    """The secret a key's webhooks are signed with: derived from the server's secret and the key's id (None: the
    audits made while auth was off), so it is never stored and can be shown again by `gradaudit keys
    webhook-secret`."""
    digest = hmac.new(server_secret.encode(), _DERIVATION_LABEL + (key_id or ANONYMOUS).encode(), hashlib.sha256)
    return SECRET_PREFIX + digest.hexdigest()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256 of `{timestamp}.{body}` under the secret: X-Gradaudit-Signature."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def signed_headers(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The headers of one delivery of `body` at `timestamp` (Unix seconds)."""
    stamp = str(timestamp)
    return {"Content-Type": "application/json", "User-Agent": "gradaudit-webhook/1", EVENT_HEADER: "audit.finished",
            TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature(secret, stamp, body)}
