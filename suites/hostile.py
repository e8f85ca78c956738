"""The hostile corpus of issue 12: each case builds its request in memory and names the exact answer expected,
at POST and, where POST accepts, the audit's final status and error code. Shared by tests/integration and
bench/hostile.py."""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from suites import hostile_files as files
from suites import hostile_onnx as onnx_bombs
from suites import hostile_torchscript as scripts
from suites.bombs import many_member_tar, many_member_zip, tar_gz_bomb

SECRET = "gradaudit-hostile-secret-9d2b6a"
SHAPE = json.dumps({"input_shapes": {"x": [2, 6]}})


@dataclass
class Ground:
    """Where the corpus plants its secret and where hostile code would leave its marker files."""

    folder: Path

    @classmethod
    def create(cls) -> Ground:
        """A fresh ground in the system's temporary folder, which the sandbox user may traverse (a test's tmp_path
        is private to root, so a refusal there would prove only file permissions)."""
        return cls(Path(tempfile.mkdtemp(prefix="gradaudit-hostile-")))

    def remove(self) -> None:
        """Delete the ground and everything in it."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def __post_init__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o777)  # the sandbox user must be able to write a marker for the test to see it
        self.secret.write_text(SECRET * 8)
        self.secret.chmod(0o644)

    @property
    def secret(self) -> Path:
        return self.folder / "secret.txt"

    @property
    def secret_bytes(self) -> bytes:
        return SECRET.encode()

    def marker_for(self, case: Case) -> Path:
        """The file a case's hostile code would write if it ran."""
        return self.marker_for_name(case.name)

    def marker_for_name(self, name: str) -> Path:
        """The marker file of the case called `name`."""
        return self.folder / f"marker-{name}"


@dataclass
class Request:
    """One HTTP request: method, path, multipart files, form fields, headers."""

    method: str = "POST"
    path: str = "/v1/audits"
    files: dict | None = None
    data: dict | None = None
    headers: dict = field(default_factory=dict)


@dataclass
class Case:
    """A hostile request and the exact answer: HTTP status and code, and (status, code) of the audit if accepted."""

    name: str
    category: str
    build: Callable[[Ground], Request]
    status: int
    code: str | None
    final: tuple[str, str | None] | None = None
    finding: str | None = None  # a finding code the succeeded audit's report must hold


def _upload(data: bytes, filename: str = "net.bin", options: str | None = None, inputs: bytes | None = None,
            **fields) -> Request:
    parts = {"model": (filename, data)}
    if inputs is not None:
        parts["inputs"] = ("inputs.npz", inputs)
    form = {**({"options": options} if options is not None else {}), **fields}
    return Request(files=parts, data=form)


def _refused(name, category, build, status, code) -> Case:
    return Case(name, category, build, status, code)


def _failed(name, category, build, code) -> Case:
    return Case(name, category, build, 202, None, ("failed", code))


def _succeeded(name, category, build, finding: str | None = None) -> Case:
    return Case(name, category, build, 202, None, ("succeeded", None), finding)


def _get(path: str, method: str = "GET", **headers) -> Callable[[Ground], Request]:
    return lambda ground: Request(method=method, path=path, headers=headers)


def _marker(case_name: str) -> Callable[[Ground], str]:
    return lambda ground: str(ground.folder / f"marker-{case_name}")


def _garbage() -> list[Case]:
    onnx_bytes = onnx_bombs.plain_onnx()
    cat = "garbage"
    return [
        _refused("random_bytes", cat, lambda g: _upload(bytes(range(256)) * 64), 415, "unsupported_format"),
        _refused("empty_upload", cat, lambda g: _upload(b""), 400, "empty_upload"),
        _refused("no_model_field", cat, lambda g: Request(data={"options": "{}"}), 400, "missing_model"),
        _refused("html_page", cat, lambda g: _upload(b"<html><body>hi</body></html>"), 415, "unsupported_format"),
        _refused("elf_header", cat, lambda g: _upload(b"\x7fELF\x02\x01\x01" + bytes(200)), 415, "unsupported_format"),
        _refused("png_image", cat, lambda g: _upload(files.png_header()), 415, "unsupported_format"),
        _refused("truncated_onnx", cat, lambda g: _upload(files.truncated(onnx_bytes)), 415, "unsupported_format"),
        _refused("one_byte", cat, lambda g: _upload(b"\x08"), 415, "unsupported_format"),
        _refused("gzip_of_text", cat, lambda g: _upload(__import__("gzip").compress(b"hello")), 415,
                 "unsupported_format"),
        _refused("damaged_zip", cat, lambda g: _upload(b"PK\x03\x04" + bytes(100) + b"PK\x05\x06" + bytes(18)), 415,
                 "unsupported_format"),
        _refused("truncated_torchscript", cat,
                 lambda g: _upload(files.truncated(scripts.scripted(scripts.Plain()), 0.9), options=SHAPE), 415,
                 "unsupported_format"),
        _refused("png_then_zip_polyglot", cat, lambda g: _upload(files.polyglot_zip_after(
            files.png_header(), str(g.marker_for_name("png_then_zip_polyglot")))), 415, "unsupported_format"),
    ]


def _pickles() -> list[Case]:
    cat = "pickle"

    def marker(name):
        return _marker(name)

    return [
        _refused("bare_pickle", cat, lambda g: _upload(files.malicious_pickle(marker("bare_pickle")(g))), 415,
                 "unsupported_format"),
        _failed("torchscript_pickles", cat,
                lambda g: _upload(files.torchscript_shaped_zip(marker("torchscript_pickles")(g)), options=SHAPE),
                "invalid_torchscript"),
        _refused("torchscript_pickles_no_code", cat,
                 lambda g: _upload(files.torchscript_shaped_zip(marker("torchscript_pickles_no_code")(g), False),
                                   options=SHAPE), 415, "unsupported_format"),
        _refused("torch_save_pickle", cat,
                 lambda g: _upload(files.legacy_torch_save(marker("torch_save_pickle")(g)), options=SHAPE), 415,
                 "unsupported_format"),
        _failed("pt2_pickles", cat, lambda g: _upload(files.pt2_shaped_zip(marker("pt2_pickles")(g)), options=SHAPE),
                "invalid_exported_program"),
        _failed("npz_object_array", cat,
                lambda g: _upload(onnx_bombs.plain_onnx(), inputs=files.npz_with_pickled_object(
                    marker("npz_object_array")(g))), "invalid_inputs"),
    ]


def _archives() -> list[Case]:
    cat = "archive"
    return [
        _failed("tar_dotdot", cat, lambda g: _upload(files.tar_with("../../escape.onnx")), "unsafe_archive"),
        _failed("tar_absolute", cat, lambda g: _upload(files.tar_with("/tmp/escape.bin")), "unsafe_archive"),
        _failed("tar_symlink", cat, lambda g: _upload(files.tar_with("weights", tarfile.SYMTYPE, "/etc/passwd")),
                "unsafe_archive"),
        _failed("tar_hardlink", cat, lambda g: _upload(files.tar_with("weights", tarfile.LNKTYPE, "/etc/passwd")),
                "unsafe_archive"),
        _failed("tar_char_device", cat, lambda g: _upload(files.tar_with("null", tarfile.CHRTYPE)), "unsafe_archive"),
        _failed("tar_fifo", cat, lambda g: _upload(files.tar_with("pipe", tarfile.FIFOTYPE)), "unsafe_archive"),
        _failed("tar_network_is_symlink", cat, lambda g: _upload(files.tar_link_as_network(str(g.secret))),
                "unsafe_archive"),
        _failed("zip_dotdot", cat, lambda g: _upload(files.zip_with("../../escape.bin")), "unsafe_archive"),
        _failed("zip_absolute", cat, lambda g: _upload(files.zip_with("/tmp/escape.bin")), "unsafe_archive"),
        _failed("tar_gz_bomb", cat, lambda g: _upload(tar_gz_bomb(declared=2 * 1024**3)), "archive_too_large"),
        _failed("zip_deflate_bomb", cat, lambda g: _upload(files.zip_deflate_bomb()), "archive_too_large"),
        _refused("zip_200k_members", cat, lambda g: _upload(many_member_zip(200_000)), 422, "archive_too_large"),
        _refused("tar_20k_members", cat, lambda g: _upload(many_member_tar(20_000)), 422, "archive_too_large"),
        _refused("tar_without_network", cat, lambda g: _upload(files.tar_without_network()), 415,
                 "unsupported_format"),
        _failed("external_dotdot", cat, lambda g: _upload(onnx_bombs.external_weight("../../etc/passwd")),
                "external_data_missing"),
        _failed("external_absolute", cat, lambda g: _upload(onnx_bombs.external_weight(str(g.secret))),
                "external_data_missing"),
        _failed("external_missing", cat, lambda g: _upload(onnx_bombs.external_weight("weights.bin")),
                "external_data_missing"),
        _failed("archived_external_dotdot", cat, lambda g: _upload(files.tar_of_network(
            onnx_bombs.external_weight("../../../../etc/passwd"))), "external_data_unsafe"),
        _failed("archived_external_absolute", cat, lambda g: _upload(files.tar_of_network(
            onnx_bombs.external_weight(str(g.secret)))), "external_data_unsafe"),
        _failed("archived_external_past_end", cat, lambda g: _upload(files.tar_of_network(
            onnx_bombs.external_weight("weights.bin", offset=2**62, length=48), bytes(48))), "external_data_invalid"),
        _failed("external_huge_offset", cat,
                lambda g: _upload(onnx_bombs.external_weight("weights.bin", offset=2**62, length=48)),
                "external_data_missing"),
    ]


def _onnx() -> list[Case]:
    cat = "onnx"
    return [
        _failed("huge_input_dim", cat, lambda g: _upload(onnx_bombs.huge_input_dim()), "input_too_large"),
        _failed("declared_initializer", cat, lambda g: _upload(onnx_bombs.declared_initializer()), "input_too_large"),
        _failed("constant_of_shape_bomb", cat, lambda g: _upload(onnx_bombs.constant_of_shape_bomb()),
                "input_too_large"),
        _failed("expand_bomb", cat, lambda g: _upload(onnx_bombs.expand_bomb()), "input_too_large"),
        _failed("nested_if_20", cat, lambda g: _upload(onnx_bombs.nested_if(20)), "unsupported_operator"),
        _failed("endless_loop", cat, lambda g: _upload(onnx_bombs.endless_loop()), "time_limit_exceeded"),
        _failed("recursive_function", cat, lambda g: _upload(onnx_bombs.recursive_function()), "invalid_onnx"),
        _failed("unknown_op", cat, lambda g: _upload(onnx_bombs.unknown_op()), "invalid_onnx"),
        _failed("unknown_domain", cat, lambda g: _upload(onnx_bombs.unknown_op("com.evil", "Exfiltrate")),
                "unsupported_operator"),
        _succeeded("opset_1", cat, lambda g: _upload(onnx_bombs.plain_onnx(opset=1))),
        _failed("opset_10000", cat, lambda g: _upload(onnx_bombs.plain_onnx(opset=10_000)), "unsupported_opset"),
        _failed("ir_version_1", cat, lambda g: _upload(onnx_bombs.plain_onnx(ir=1)), "invalid_onnx"),
        _failed("ir_version_huge", cat, lambda g: _upload(onnx_bombs.plain_onnx(ir=2**40)), "invalid_onnx"),
        _failed("no_opset_import", cat, lambda g: _upload(onnx_bombs.no_opset_import()), "invalid_onnx"),
        _succeeded("nan_weights", cat, lambda g: _upload(onnx_bombs.nan_weights()), "nonfinite_values"),
        _succeeded("inf_weights", cat, lambda g: _upload(onnx_bombs.inf_weights()), "nonfinite_values"),
    ]


def _torchscript() -> list[Case]:
    cat = "torchscript"

    def script(network_of):
        return lambda g: _upload(scripts.scripted(network_of(g)), "net.pt", options=SHAPE)

    return [
        _failed("from_file_secret", cat, script(lambda g: scripts.ReadsFile(str(g.secret))), "unsafe_operator"),
        _failed("from_file_shared", cat,
                script(lambda g: scripts.ReadsFile(str(g.folder / "marker-from_file_shared"), shared=True)),
                "unsafe_operator"),
        _failed("save_to_file", cat, script(lambda g: scripts.Saves(str(g.folder / "marker-save_to_file"))),
                "unsafe_operator"),
        _failed("fork_and_wait", cat, script(lambda g: scripts.Forks()), "unsafe_operator"),
        _failed("prints", cat, script(lambda g: scripts.Prints()), "unsafe_operator"),
        _failed("loops_forever", cat, script(lambda g: scripts.LoopsForever()), "time_limit_exceeded"),
        _failed("allocates_1_tib", cat, script(lambda g: scripts.AllocatesHugely()), "resource_limit_exceeded"),
        _succeeded("nan_parameters", cat, script(lambda g: scripts.nan_plain()), "nonfinite_values"),
        _succeeded("pt2_heaviest_options", cat,
                lambda g: _upload(scripts.exported(scripts.Plain()), "net.pt2", options=json.dumps(
                    {"input_shapes": {"x": [2, 6]}, "batches": 64, "train_steps": 200}))),
    ]


def _options() -> list[Case]:
    cat = "options"
    onnx_bytes = onnx_bombs.plain_onnx()

    def with_options(options: str, **extra):
        return lambda g: _upload(onnx_bytes, "net.onnx", options=options, **extra)

    return [
        _refused("options_not_json", cat, with_options("{nope"), 400, "invalid_options"),
        _refused("options_a_list", cat, with_options("[1, 2]"), 400, "invalid_options"),
        _refused("options_unknown_field", cat, with_options('{"__class__": "os.system"}'), 400, "invalid_options"),
        _refused("options_too_large", cat, with_options(json.dumps({"input_shapes": {"x" * 20_000: [1]}})), 413,
                 "options_too_large"),
        _refused("options_as_huge_file", cat, lambda g: Request(files={"model": ("n.onnx", onnx_bytes),
                                                                        "options": ("o.json", b"{" * 10**6)}),
                 413, "options_too_large"),
        _refused("options_deep_nesting", cat, with_options("[" * 5000 + "]" * 5000), 400, "invalid_options"),
        _refused("batch_size_negative", cat, with_options('{"batch_size": -1}'), 400, "invalid_options"),
        _refused("dim_zero", cat, with_options('{"input_shapes": {"x": [0, 4]}}'), 400, "invalid_options"),
        _refused("dim_past_int64", cat, with_options(json.dumps({"input_shapes": {"x": [1, 2**70]}})), 400,
                 "invalid_options"),
        _refused("seed_nan", cat, with_options('{"seed": NaN}'), 400, "invalid_options"),
        _failed("dim_2_62", cat, with_options(json.dumps({"input_shapes": {"x": [2**62, 4]}})), "input_too_large"),
        _succeeded("batch_4096_wide", cat, lambda g: _upload(onnx_bombs.plain_onnx(), options=json.dumps(
            {"batch_size": 4096, "input_shapes": {"x": [4096, 4]}, "batches": 64}))),
        _refused("inputs_not_npz", cat, lambda g: _upload(onnx_bytes, inputs=b"\x93NUMPY not a zip"), 400,
                 "invalid_inputs"),
        _failed("inputs_unknown_name", cat, lambda g: _upload(onnx_bytes, inputs=files.npz_of("evil", (2, 4))),
                "invalid_inputs"),
        _failed("inputs_declares_huge", cat,
                lambda g: _upload(onnx_bytes, inputs=files.npz_declaring("x", (2**20, 2**20))), "input_too_large"),
        _failed("inputs_wrong_shape", cat, lambda g: _upload(onnx_bytes, inputs=files.npz_of("x", (2, 5))),
                "forward_failed"),
    ]


def _http() -> list[Case]:
    cat = "http"
    return [
        _refused("unknown_id", cat, _get("/v1/audits/does-not-exist"), 404, "audit_not_found"),
        _refused("long_id", cat, _get("/v1/audits/" + "a" * 5000), 404, "audit_not_found"),
        _refused("nul_in_id", cat, _get("/v1/audits/ab%00cd"), 404, "audit_not_found"),
        _refused("sql_in_id", cat, _get("/v1/audits/x'%20OR%20'1'='1"), 404, "audit_not_found"),
        _refused("traversal_path", cat, _get("/v1/audits/..%2F..%2Fetc%2Fpasswd/report"), 404, "not_found"),
        _refused("report_of_unknown", cat, _get("/v1/audits/nope/report"), 404, "audit_not_found"),
        _refused("layers_of_unknown", cat, _get("/v1/audits/nope/layers"), 404, "audit_not_found"),
        _refused("limit_zero", cat, _get("/v1/audits?limit=0"), 400, "invalid_pagination"),
        _refused("limit_huge", cat, _get("/v1/audits?limit=" + "9" * 40), 400, "invalid_pagination"),
        _refused("limit_text", cat, _get("/v1/audits?limit=all"), 400, "invalid_pagination"),
        _refused("offset_negative", cat, _get("/v1/audits?offset=-1"), 400, "invalid_pagination"),
        _refused("offset_2_63", cat, _get(f"/v1/audits?offset={2**63}"), 400, "invalid_pagination"),
        _refused("put_audits", cat, _get("/v1/audits", "PUT"), 405, "method_not_allowed"),
        _refused("delete_audit", cat, _get("/v1/audits/x", "DELETE"), 404, "audit_not_found"),  # DELETE: owner only
        _refused("delete_audits", cat, _get("/v1/audits", "DELETE"), 405, "method_not_allowed"),
        _refused("unknown_path", cat, _get("/v1/../../etc/passwd"), 404, "not_found"),
        _refused("json_body", cat, lambda g: Request(data=b'{"model": "x"}',
                                                     headers={"Content-Type": "application/json"}), 400,
                 "missing_model"),
        _refused("garbage_bearer", cat, _get("/v1/audits?limit=1", Authorization="Bearer \x7f" + "x" * 4000), 200,
                 None),
        _refused("huge_header", cat, _get("/v1/audits?limit=1", **{"X-Junk": "y" * 60_000}), 200, None),
    ]


CASES: list[Case] = [*_garbage(), *_pickles(), *_archives(), *_onnx(), *_torchscript(), *_options(), *_http()]

# An ordinary network after the corpus: the worker took every hostile audit and is still alive.
ALIVE = Case("alive", "alive", lambda g: _upload(scripts.scripted(scripts.Plain()), "net.pt", options=SHAPE), 202,
             None, ("succeeded", None))
