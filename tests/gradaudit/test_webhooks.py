"""gradaudit.webhooks: which URLs a webhook may reach (judged by the addresses they resolve to) and the signature."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from gradaudit.webhooks import (
    Target,
    WebhookRefused,
    check_url_form,
    non_public_reason,
    signature,
    signed_headers,
    signing_secret,
    webhook_target,
)

# Vectors computed with `openssl dgst -sha256 -hmac`, not with the code under test.
SIGNED = "sha256=8bb4f18a10513f1e489ca2fa2a101717de08d6dc6b0ad96dd6296f857924be38"
DERIVED = "whsec_f3c553ee5e5787e309c454cc1ab09d09e371865f02f9201d82ad4b1e8694fbc3"


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body():
    assert signature("whsec_test", "1700000000", b'{"event":"audit.finished"}') == SIGNED


def test_signed_headers_carry_the_timestamp_they_sign():
    headers = signed_headers("whsec_test", b'{"event":"audit.finished"}', 1700000000)
    assert headers["X-Gradaudit-Timestamp"] == "1700000000"
    assert headers["X-Gradaudit-Signature"] == SIGNED
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Gradaudit-Event"] == "audit.finished"


def test_a_changed_body_or_timestamp_changes_the_signature():
    body = b'{"event":"audit.finished"}'
    assert signature("whsec_test", "1700000001", body) != SIGNED
    assert signature("whsec_test", "1700000000", body + b" ") != SIGNED
    assert signature("whsec_other", "1700000000", body) != SIGNED


def test_each_key_gets_its_own_secret_derived_from_the_servers():
    assert signing_secret("server-secret-0123456789", "key123") == DERIVED
    assert signing_secret("server-secret-0123456789", "key124") != DERIVED
    assert signing_secret("another-server-secret-01", "key123") != DERIVED
    assert signing_secret("server-secret-0123456789", None) == signing_secret("server-secret-0123456789",
                                                                              "anonymous")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://10.1.2.3/hook", "http://172.16.0.1/", "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/", "http://[::1]/hook", "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:10.0.0.1]/", "http://[fe80::1]/", "http://[fc00::1]/", "http://0.0.0.0/",
    "http://localhost:9000/hook", "http://2130706433/", "http://0x7f.1/", "http://100.64.0.1/",
    "http://224.0.0.1/", "http://[64:ff9b::7f00:1]/", "http://[2002:7f00:1::]/",
])
def test_non_public_targets_are_refused(url):
    with pytest.raises(WebhookRefused, match="GRADAUDIT_WEBHOOK_ALLOW_PRIVATE"):
        webhook_target(url, allow_private=False)


def test_a_name_resolving_to_loopback_is_refused_by_its_address():
    with pytest.raises(WebhookRefused) as refused:
        webhook_target("http://localhost/hook", allow_private=False)
    assert refused.value.detail.startswith("localhost resolves to ")
    assert "loopback" in refused.value.detail


def test_the_reason_names_the_kind_of_address():
    reasons = {address: non_public_reason(ipaddress.ip_address(address))
               for address in ("127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "::ffff:192.168.0.1", "8.8.8.8")}
    assert reasons == {"127.0.0.1": "loopback", "10.0.0.1": "private", "169.254.169.254": "link-local",
                       "::1": "loopback", "::ffff:192.168.0.1": "private", "8.8.8.8": None}


def test_allow_private_lets_loopback_through():
    target = webhook_target("http://127.0.0.1:8080/hook?x=1", allow_private=True)
    assert target == Target(scheme="http", host="127.0.0.1", port=8080, path="/hook?x=1", address="127.0.0.1")
    assert target.host_header == "127.0.0.1:8080"
    assert webhook_target("http://[::1]/", allow_private=True).host_header == "[::1]"


def test_a_public_address_passes():
    target = webhook_target("https://8.8.8.8/hook", allow_private=False)
    assert (target.address, target.port, target.host_header) == ("8.8.8.8", 443, "8.8.8.8")


def test_one_non_public_answer_among_public_ones_refuses(monkeypatch):
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80)),
               (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 80))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answers)
    with pytest.raises(WebhookRefused, match="hooks.example resolves to 10.0.0.7, a private address"):
        webhook_target("http://hooks.example/", allow_private=False)


def test_the_checked_address_is_the_one_to_connect_to(monkeypatch):
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answers)
    target = webhook_target("https://hooks.example/in", allow_private=False)
    assert (target.host, target.address, target.host_header) == ("hooks.example", "93.184.216.34", "hooks.example")


def test_an_unresolvable_host_is_refused(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(WebhookRefused, match="does not resolve"):
        webhook_target("https://nowhere.example/", allow_private=True)


@pytest.mark.parametrize(("url", "says"), [
    ("ftp://example.com/", "http:// or https://"), ("file:///etc/passwd", "http:// or https://"),
    ("http:///path", "names a host"), ("http://user:pw@example.com/", "user:password"),
    ("http://exa mple.com/", "no spaces"), ("http://example.com:99999/", "not a valid URL"),
    ("http://example.com/" + "a" * 2048, "at most 2048"), ("example.com/hook", "http:// or https://"),
])
def test_malformed_urls_are_refused_before_any_lookup(monkeypatch, url, says):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: pytest.fail("looked up"))
    with pytest.raises(WebhookRefused, match=says):
        check_url_form(url)
