"""No 5xx from any input: pagination and options are bounded, a failing artifact store is 503, lists stay small."""

from __future__ import annotations

import io
import json
import time

import pytest

from api import create_app
from api.audits import MAX_OFFSET, MAX_OPTIONS_BYTES
from models import audits as audit_rows
from suites.bombs import GIB, many_member_zip, tar_gz_bomb
from tests.support.problems import assert_problem, audit_count, stored_files


@pytest.mark.parametrize("offset", ["9223372036854775808", str(MAX_OFFSET + 1), "-1", "1" * 5000, "1e3", ""])
def test_offsets_out_of_range_are_invalid_pagination(client, offset):
    assert_problem(client.get(f"/v1/audits?offset={offset}"), 400, "invalid_pagination")


@pytest.mark.parametrize("limit", ["9223372036854775808", "0", "101", "-5", "x"])
def test_limits_out_of_range_are_invalid_pagination(client, limit):
    assert_problem(client.get(f"/v1/audits?limit={limit}"), 400, "invalid_pagination")


def test_largest_offset_is_an_empty_page(client):
    body = client.get(f"/v1/audits?limit=100&offset={MAX_OFFSET}").get_json()
    assert (body["items"], body["offset"], body["next"]) == ([], MAX_OFFSET, None)


def _huge_options() -> str:
    """Options of the shape a hostile client sends: one input with a million dimensions (~2 MB)."""
    return json.dumps({"input_shapes": {"x": [1] * 1_000_000}})


def test_options_over_the_cap_as_a_form_field(submit, services, sent_messages, torchscript_bytes):
    raw = json.dumps({"input_shapes": {"x": [1] * (MAX_OPTIONS_BYTES // 3)}})
    assert len(raw) > MAX_OPTIONS_BYTES
    body = assert_problem(submit(torchscript_bytes, options=raw), 413, "options_too_large")
    assert str(MAX_OPTIONS_BYTES) in body["detail"]
    assert audit_count(services) == 0 and sent_messages() == []
    assert stored_files(services.store.root) == []


def test_options_over_the_cap_as_a_file_part(submit, services, sent_messages, torchscript_bytes):
    part = (io.BytesIO(_huge_options().encode()), "options.json")
    assert_problem(submit(torchscript_bytes, options=part), 413, "options_too_large")
    assert audit_count(services) == 0 and sent_messages() == []


def test_options_at_the_cap_are_accepted(submit, torchscript_bytes):
    shapes = {f"x{i}": [1, 2] for i in range(10)}
    raw = json.dumps({"input_shapes": shapes}).ljust(MAX_OPTIONS_BYTES)  # JSON may end in whitespace
    assert len(raw) == MAX_OPTIONS_BYTES
    assert submit(torchscript_bytes, options=raw).status_code == 202


def test_dims_past_64_bits_are_invalid_options(submit, torchscript_bytes):
    raw = json.dumps({"input_shapes": {"x": [2**63, 1]}})
    body = assert_problem(submit(torchscript_bytes, options=raw), 400, "invalid_options")
    assert body["errors"][0]["field"] == "input_shapes"


def test_list_items_leave_options_out_and_the_audit_has_them(submit, client, torchscript_bytes):
    options = {"input_shapes": {"x": [2, 4]}, "seed": 7}
    created = submit(torchscript_bytes, options=json.dumps(options)).get_json()

    item = client.get("/v1/audits").get_json()["items"][0]
    assert item["id"] == created["id"] and "options" not in item
    assert client.get(f"/v1/audits/{created['id']}").get_json()["options"]["seed"] == 7


def test_list_page_stays_small_with_many_large_options(services, client):
    large = {"input_shapes": {f"input_{i}": [1] * 200 for i in range(20)}}
    with services.sessions() as db_session:
        for _ in range(100):
            audit_rows.create_audit(db_session=db_session, artifact_sha256="cd" * 32, artifact_format="onnx",
                                    artifact_size=10, options=large)
    response = client.get("/v1/audits?limit=100")
    assert response.status_code == 200
    assert len(response.get_data()) < 100 * 1024  # ~1 KB an item; with the options it would be ~2 MB


@pytest.fixture
def unwritable_store_client(make_settings, sqlite_url, tmp_path):
    """An app whose artifact folder is a plain file: every write to the store fails (root passes chmod)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    return create_app(make_settings(database_url=sqlite_url, artifact_dir=blocker)).test_client()


def test_unwritable_store_is_503_storage_unavailable(unwritable_store_client, torchscript_bytes):
    form = {"model": (io.BytesIO(torchscript_bytes), "net.pt")}
    response = unwritable_store_client.post("/v1/audits", data=form, content_type="multipart/form-data")
    body = assert_problem(response, 503, "storage_unavailable")
    assert "not-a-folder" not in body["detail"]  # no internals on the wire


def test_unwritable_store_fails_healthz(unwritable_store_client):
    response = unwritable_store_client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["storage"] is False


def test_healthz_leaves_no_file_in_the_store(client, services):
    assert client.get("/healthz").get_json()["checks"]["storage"] is True
    assert stored_files(services.store.root) == []


def test_a_tar_gz_bomb_is_queued_in_well_under_a_second(submit):
    bomb = tar_gz_bomb(declared=10 * GIB)
    started = time.monotonic()
    response = submit(bomb, filename="net.tar.gz")
    assert time.monotonic() - started < 2  # 34 s when the API decompressed it whole
    assert response.status_code == 202 and response.get_json()["artifact"]["format"] == "onnx_archive"


def test_a_200k_member_zip_is_refused_in_well_under_a_second(submit, services):
    crowded = many_member_zip(200_000)
    started = time.monotonic()
    response = submit(crowded, filename="net.zip")
    assert time.monotonic() - started < 2  # 13 s and 100 MB when zipfile parsed its directory
    assert_problem(response, 422, "archive_too_large")
    assert audit_count(services) == 0
