"""The pages: report.html and Accept: text/html on the report URL, errors as pages for browsers, the index at /
with the caller's own audits and an upload form, the key form's cookie, and cookie-authenticated requests refused
unless this service's own pages sent them."""

from __future__ import annotations

import io

import pytest

from api import create_app
from api.auth import KEY_COOKIE
from api.negotiation import CONTENT_SECURITY_POLICY
from models import api_keys
from models import audits as audit_rows
from tests.support.api_rows import store_result
from tests.support.html_pages import parse
from tests.support.reports import NETWORK, SETUP, finding, layer

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}
LAYERS = [layer("/0/Gemm", 0, grad_norm=1e-6, output_grad_norm=1e-6),
          layer("/1/Sigmoid", 1, kind="Sigmoid", parameters=0, output_grad_norm=1e-5, saturated_fraction=0.3),
          layer("/2/Gemm", 2, grad_norm=1e-3, output_grad_norm=1e-3)]
FINDINGS = [finding("saturated_activation", "warning", layers=("/1/Sigmoid",))]


def succeed(services, audit_id: str) -> None:
    """Claim the audit and store a report of LAYERS and FINDINGS."""
    store_result(services, audit_id, {"network": NETWORK, "setup": SETUP, "findings": FINDINGS, "verdict": "warning"},
                 LAYERS)


def page(response, status: int = 200):
    """The page's tree, after checking its status and that it is a page with the content security policy."""
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["Cache-Control"] == "no-store"
    return parse(response.get_data(as_text=True))


def test_report_html_is_the_report_as_a_page(client, services, new_audit):
    audit_id = new_audit()
    succeed(services, audit_id)

    tree = page(client.get(f"/v1/audits/{audit_id}/report.html"))

    assert tree.by_id("verdict").text == "warning"
    assert [g.attrs["data-layer"] for g in tree.by_id("gradient-flow").find_all("g", "layer")] == \
        ["/0/Gemm", "/1/Sigmoid", "/2/Gemm"]
    assert [g.attrs["data-layer"] for g in tree.by_id("gradient-flow").find_all("g", "flagged")] == ["/1/Sigmoid"]


@pytest.mark.parametrize(("accept", "html"), [
    (BROWSER["Accept"], True), ("text/html", True), ("application/json;q=0.5, text/html", True),
    ("*/*", False), ("application/json", False), ("text/html, application/json", False), (None, False),
])
def test_the_report_url_answers_html_only_to_a_request_that_prefers_it(client, services, new_audit, accept, html):
    audit_id = new_audit()
    succeed(services, audit_id)

    response = client.get(f"/v1/audits/{audit_id}/report", headers={"Accept": accept} if accept else {})

    assert response.status_code == 200 and "Accept" in response.headers["Vary"]
    if html:
        assert page(response).by_id("verdict").text == "warning"
    else:
        assert response.mimetype == "application/json" and response.get_json()["verdict"] == "warning"


def test_an_unfinished_audits_page_reloads_until_it_has_finished(client, new_audit):
    audit_id = new_audit()

    tree = page(client.get(f"/v1/audits/{audit_id}/report.html", headers=BROWSER), 409)

    assert tree.by_id("problem").attrs["data-code"] == "audit_not_finished"
    assert tree.find_all("meta", http_equiv="refresh")[0].attrs["content"] == "2"


def test_errors_are_pages_for_browsers_and_problem_json_for_everyone_else(client, services, new_audit):
    audit_id = new_audit()
    with services.sessions() as db_session:
        audit_rows.fail_audit(db_session=db_session, audit_id=audit_id, code="input_shape_required",
                              detail="give <input_shapes>")

    failed = page(client.get(f"/v1/audits/{audit_id}/report", headers=BROWSER), 422)
    missing = page(client.get("/v1/audits/nope/report.html", headers=BROWSER), 404)
    unknown_route = page(client.get("/nowhere", headers=BROWSER), 404)

    assert failed.by_id("problem").attrs["data-code"] == "input_shape_required"
    assert "give <input_shapes>" in failed.text and not failed.find_all("input_shapes")
    assert missing.by_id("problem").attrs["data-code"] == "audit_not_found"
    assert unknown_route.by_id("problem").attrs["data-code"] == "not_found"
    # A program that fetches the page (Accept: */* or none) still reads the error's code.
    for path in ("/v1/audits/nope/report", "/v1/audits/nope/report.html"):
        for_programs = client.get(path, headers={"Accept": "*/*"})
        assert for_programs.mimetype == "application/problem+json" and for_programs.json["code"] == "audit_not_found"


def test_the_upload_form_posts_to_the_api_and_a_browser_is_sent_on_to_the_audits_page(client, torchscript_bytes):
    form = parse(client.get("/").get_data(as_text=True)).by_id("upload")
    fields = {element.attrs["name"] for element in form.find_all("input")}

    # As a browser sends the form: the optional fields left empty, the inputs file field without a file.
    response = client.post(form.attrs["action"], data={"model": (io.BytesIO(torchscript_bytes), "net.pt"),
                                                       "options": "", "inputs": (io.BytesIO(b""), "")},
                           content_type=form.attrs["enctype"], headers={**BROWSER, **SAME_ORIGIN})

    assert (form.attrs["method"], form.attrs["action"]) == ("post", "/v1/audits") and fields == {"model", "options", "inputs"}
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/report.html") and "/v1/audits/" in response.headers["Location"]


def test_with_auth_off_the_index_lists_every_audit_without_a_key(client, services, new_audit):
    audit_ids = [new_audit(), new_audit()]
    succeed(services, audit_ids[0])

    tree = page(client.get("/"))

    rows = tree.by_id("audits").find_all("tr")[1:]
    assert {row.attrs["data-audit"] for row in rows} == set(audit_ids)
    links = {row.attrs["data-audit"]: row.find_all("a")[0].attrs["href"] for row in rows}
    assert links[audit_ids[0]] == f"/v1/audits/{audit_ids[0]}/report.html"
    assert not tree.find_all("form", action="/session/end")


class TestWithKeys:
    """Auth on: the key form, the cookie, its scope and the cross-site guard."""

    @pytest.fixture
    def app(self, make_settings, sqlite_url):
        return create_app(make_settings(database_url=sqlite_url, auth=True))

    @pytest.fixture
    def keys(self, services):
        """Two keys' (id, secret)."""
        with services.sessions() as db_session:
            return [(key.id, secret) for key, secret in
                    (api_keys.create_key(db_session=db_session, name=name) for name in ("mine", "theirs"))]

    @pytest.fixture
    def owned_audit(self, services):
        def insert(key_id: str) -> str:
            with services.sessions() as db_session:
                return audit_rows.create_audit(db_session=db_session, owner_key_id=key_id, artifact_sha256="ab" * 32,
                                               artifact_format="onnx", artifact_size=10, filename="<b>net</b>.onnx",
                                               options={}).id
        return insert

    def sign_in(self, client, secret: str):
        return client.post("/session", data={"api_key": secret}, headers=SAME_ORIGIN)

    def test_without_a_key_the_index_is_the_key_form(self, client):
        tree = page(client.get("/"))

        form = tree.by_id("key-form")
        assert (form.attrs["method"], form.attrs["action"]) == ("post", "/session")
        assert not tree.find_all("form", id="upload")

    def test_the_key_form_keeps_a_valid_key_in_a_strict_http_only_cookie(self, client, keys):
        refused = self.sign_in(client, "ga_not-a-key")
        kept = self.sign_in(client, keys[0][1])

        assert "unknown or revoked" in page(refused, 401).by_id("message").text
        assert "Set-Cookie" not in refused.headers
        assert kept.status_code == 303 and kept.headers["Location"] == "/"
        cookie = kept.headers["Set-Cookie"]
        assert cookie.startswith(f"{KEY_COOKIE}={keys[0][1]};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie

    def test_the_cookie_shows_the_keys_own_audits_and_their_pages_only(self, client, services, keys, owned_audit):
        mine, theirs = owned_audit(keys[0][0]), owned_audit(keys[1][0])
        succeed(services, mine)
        succeed(services, theirs)
        self.sign_in(client, keys[0][1])

        index = page(client.get("/"))

        assert [row.attrs["data-audit"] for row in index.by_id("audits").find_all("tr")[1:]] == [mine]
        assert "<b>net</b>.onnx" in index.by_id("audits").text and not index.by_id("audits").find_all("b")
        assert index.find_all("form", action="/session/end")
        assert page(client.get(f"/v1/audits/{mine}/report.html")).by_id("verdict").text == "warning"
        assert page(client.get(f"/v1/audits/{theirs}/report.html", headers=BROWSER), 404) \
            .by_id("problem").attrs["data-code"] == "audit_not_found"

    def test_a_page_without_a_key_says_where_to_enter_one(self, client, keys, owned_audit):
        audit_id = owned_audit(keys[0][0])

        tree = page(client.get(f"/v1/audits/{audit_id}/report.html", headers=BROWSER), 401)

        assert tree.by_id("problem").attrs["data-code"] == "unauthorized"
        assert any(link.attrs["href"] == "/" and "API key" in link.text for link in tree.find_all("a"))

    def test_a_revoked_key_in_the_cookie_brings_back_the_form(self, client, services, keys):
        self.sign_in(client, keys[0][1])
        with services.sessions() as db_session:
            api_keys.revoke_key(db_session=db_session, key_id=keys[0][0])

        assert "unknown or revoked" in page(client.get("/")).by_id("message").text

    @pytest.mark.parametrize(("headers", "status"), [
        ({"Sec-Fetch-Site": "same-origin"}, 202),
        ({"Origin": "http://localhost"}, 202),
        ({"Sec-Fetch-Site": "same-origin", "Origin": "https://proxy.example"}, 202),  # the browser's word decides
        ({"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 403),
        ({"Sec-Fetch-Site": "same-site"}, 403),  # another port of the same host is another origin
        ({"Origin": "https://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({}, 403),  # the cookie alone: a browser says where a POST comes from, so this is none of our pages
    ])
    def test_a_cookie_authenticated_post_must_come_from_our_pages(self, client, keys, torchscript_bytes, headers,
                                                                  status):
        self.sign_in(client, keys[0][1])

        response = client.post("/v1/audits", data={"model": (io.BytesIO(torchscript_bytes), "net.pt")},
                               content_type="multipart/form-data", headers=headers)

        assert response.status_code == status, response.get_data(as_text=True)
        if status == 403:
            assert response.json["code"] == "cross_site_request"

    def test_a_bearer_key_is_refused_only_where_a_browser_says_another_site_sent_it(self, client, keys,
                                                                                   torchscript_bytes):
        def post(headers):
            return client.post("/v1/audits", data={"model": (io.BytesIO(torchscript_bytes), "net.pt")},
                               content_type="multipart/form-data",
                               headers={"Authorization": f"Bearer {keys[0][1]}", **headers})

        assert post({}).status_code == 202  # curl, requests, the CLI: no Origin, no Sec-Fetch-Site
        assert post({"Sec-Fetch-Site": "cross-site"}).status_code == 403

    def test_forgetting_the_key_clears_the_cookie(self, client, keys):
        self.sign_in(client, keys[0][1])

        forgotten = client.post("/session/end", headers=SAME_ORIGIN)
        cross_site = client.post("/session/end", headers={"Sec-Fetch-Site": "cross-site"})

        assert forgotten.status_code == 303 and f"{KEY_COOKIE}=;" in forgotten.headers["Set-Cookie"]
        assert page(client.get("/")).by_id("key-form")
        assert cross_site.status_code == 403 and cross_site.json["code"] == "cross_site_request"


def test_with_auth_off_a_browser_post_from_another_site_is_refused_too(client, torchscript_bytes):
    response = client.post("/v1/audits", data={"model": (io.BytesIO(torchscript_bytes), "net.pt")},
                           content_type="multipart/form-data", headers={"Sec-Fetch-Site": "cross-site"})

    assert response.status_code == 403 and response.json["code"] == "cross_site_request"
