"""A TorchScript upload runs only operators on the allowlist: file, serialization, threading and unknown operators,
in forward, in a submodule's helper, in a hook or in code that runs while loading, are refused before anything
runs; a planted secret is never read and a marker file never written."""

from __future__ import annotations

import contextlib
import pickle
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from gradaudit.errors import AuditError
from gradaudit.options import AuditOptions
from suites.hostile_torchscript import Forks, Prints, ReadsFile, Saves
from tests.support.networks import mlp, save_torchscript
from worker.engine.audit import audit_network
from worker.engine.torchscript.load import load_torchscript

SECRET = b"gradaudit-secret-4f7c1e"


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_bytes(SECRET * 4)
    return path


def _scripted(network: nn.Module, path: Path) -> Path:
    return save_torchscript(network, path)


def _refused(path: Path) -> AuditError:
    with pytest.raises(AuditError) as raised:
        audit_network(path, options=AuditOptions(input_shapes={"x": [2, 6]}), device="cpu")
    error = raised.value
    assert SECRET.decode() not in error.detail and SECRET.decode() not in str(error)
    return error


def test_from_file_is_refused_and_the_secret_never_read(tmp_path, secret):
    error = _refused(_scripted(ReadsFile(str(secret)), tmp_path / "reads.pt"))
    assert error.code == "unsafe_operator" and "'aten::from_file'" in error.detail


def test_a_shared_from_file_never_writes(tmp_path):
    marker = tmp_path / "written"
    error = _refused(_scripted(ReadsFile(str(marker), shared=True), tmp_path / "writes.pt"))
    assert error.code == "unsafe_operator" and "'aten::from_file'" in error.detail and not marker.exists()


def test_save_is_refused_and_never_writes(tmp_path):
    marker = tmp_path / "saved"
    error = _refused(_scripted(Saves(str(marker)), tmp_path / "saves.pt"))
    assert error.code == "unsafe_operator" and "'aten::save'" in error.detail and not marker.exists()


class ReadsImageFile(nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.linear, self.path = nn.Linear(6, 4), path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + torch.ops.image.read_file(self.path)[:4].float()


def test_torchvision_read_file_is_refused(tmp_path, secret):
    pytest.importorskip("torchvision")
    error = _refused(_scripted(ReadsImageFile(str(secret)), tmp_path / "image.pt"))
    assert error.code == "unsafe_operator" and "'image::read_file'" in error.detail


def test_fork_and_wait_are_refused(tmp_path):
    error = _refused(_scripted(Forks(), tmp_path / "forks.pt"))
    assert error.code == "unsafe_operator" and "'prim::fork'" in error.detail and "'aten::wait'" in error.detail


def test_print_is_refused(tmp_path):
    error = _refused(_scripted(Prints(), tmp_path / "prints.pt"))
    assert error.code == "unsafe_operator" and "'prim::Print'" in error.detail


@pytest.fixture(scope="module")
def touch_op():
    """An operator of a namespace gradaudit does not know, registered in this process, that writes its argument."""
    library = torch.library.Library("gradaudit_hostile", "DEF")
    library.define("touch(Tensor x, str path) -> Tensor")

    def touch(x, path):
        Path(path).write_bytes(b"touched")
        return x

    library.impl("touch", touch, "CompositeExplicitAutograd")
    yield torch.ops.gradaudit_hostile.touch
    library._destroy()


class CallsUnknownOp(nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.linear, self.path = nn.Linear(6, 4), path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.ops.gradaudit_hostile.touch(x, self.path))


def test_an_operator_of_an_unknown_namespace_is_refused_although_registered(tmp_path, touch_op):
    marker = tmp_path / "touched"
    error = _refused(_scripted(CallsUnknownOp(str(marker)), tmp_path / "unknown.pt"))
    assert error.code == "unsafe_operator" and "'gradaudit_hostile::touch'" in error.detail and not marker.exists()


class Inner(nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.linear, self.path = nn.Linear(6, 4), path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    @torch.jit.export
    def helper(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.from_file(self.path, size=6, dtype=torch.uint8).float()


class CallsHelper(nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.inner = Inner(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.inner.helper(x))


class KeepsHelper(nn.Module):
    """The helper is never called by forward: every method is checked all the same."""

    def __init__(self, path: str):
        super().__init__()
        self.inner = Inner(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


@pytest.mark.parametrize("network", [CallsHelper, KeepsHelper])
def test_a_submodule_helper_method_is_checked(tmp_path, secret, network):
    error = _refused(_scripted(network(str(secret)), tmp_path / "helper.pt"))
    assert error.code == "unsafe_operator" and "'aten::from_file' (in inner.helper)" in error.detail


def _read(path: str) -> torch.Tensor:
    return torch.from_file(path, size=6, dtype=torch.uint8).float()


@torch.jit.script
class Reader:
    def __init__(self, path: str):
        self.path = path

    def read(self) -> torch.Tensor:
        return torch.from_file(self.path, size=6, dtype=torch.uint8).float()


class CallsFunction(nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.linear, self.path = nn.Linear(6, 4), path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x + _read(self.path))


class CallsClassMethod(CallsFunction):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x + Reader(self.path).read())


@pytest.mark.parametrize("network", [CallsFunction, CallsClassMethod])
def test_code_in_a_function_or_a_class_is_checked(tmp_path, secret, network):
    error = _refused(_scripted(network(str(secret)), tmp_path / "calls.pt"))
    assert error.code == "unsafe_operator" and "'aten::from_file' (in forward)" in error.detail


class Hooked(nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.linear, self.path = nn.Linear(6, 4), path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def _leaking_hook(module: Hooked, inputs: tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor:
    return output + torch.from_file(module.path, size=4, dtype=torch.uint8).float()


def test_a_forward_hook_is_checked(tmp_path, secret):
    network = Hooked(str(secret))
    network.register_forward_hook(_leaking_hook)
    error = _refused(_scripted(network, tmp_path / "hook.pt"))
    assert error.code == "unsafe_operator" and "'aten::from_file' (in _leaking_hook)" in error.detail


class WritesWhenLoaded(nn.Module):
    """torch.jit.load runs a scripted __setstate__: this one writes the marker."""

    def __init__(self, path: str):
        super().__init__()
        self.linear, self.path = nn.Linear(6, 4), path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return self.path, self.training

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        written = torch.from_file(state[0], shared=True, size=4, dtype=torch.uint8)
        self.path = state[0] + str(int(written.sum()) * 0)
        self.training = state[1]


def test_code_that_runs_while_loading_never_runs(tmp_path):
    marker = tmp_path / "loaded"
    path = _scripted(WritesWhenLoaded(str(marker)), tmp_path / "setstate.pt")
    error = _refused(path)
    assert error.code == "unsafe_operator" and "'__setstate__'" in error.detail and not marker.exists()
    with warnings.catch_warnings(), contextlib.suppress(RuntimeError):
        warnings.simplefilter("ignore")
        torch.jit.load(str(path))  # the control: loading it plainly runs __setstate__ (then fails on its fields)
    assert marker.exists()


class _WritesMarker:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_a_malicious_pickle_in_the_archive_never_runs(tmp_path):
    marker = tmp_path / "unpickled"
    original = save_torchscript(mlp(), tmp_path / "mlp.pt", torch.randn(2, 6))
    planted = tmp_path / "planted.pt"
    with zipfile.ZipFile(original) as source, zipfile.ZipFile(planted, "w", zipfile.ZIP_STORED) as target:
        for name in source.namelist():
            data = pickle.dumps(_WritesMarker(marker)) if name.endswith("/data.pkl") else source.read(name)
            target.writestr(name, data)
    with pytest.raises(AuditError) as raised:
        load_torchscript(planted)
    assert raised.value.code in ("invalid_torchscript", "unsafe_operator") and not marker.exists()


def _suite_networks() -> dict[str, tuple]:
    from suites import networks as n

    image, tokens, sequence = (2, 3, 8, 8), (2, 6), (2, 5, 16)
    return {
        "mlp": (lambda: n.mlp(3, 16, "tanh", classes=4), (2, 16)),
        "plain_cnn": (lambda: n.plain_cnn(3, 4, "he", batch_norm=True), image),
        "residual_cnn": (lambda: n.ResidualCNN(2, 4, True), image),
        "transformer": (lambda: n.TransformerClassifier(2, 16), sequence),
        "causal_decoder": (lambda: n.CausalDecoder(2, 16, 5), sequence),
        "lstm": (lambda: n.Recurrent("lstm", 4, 8), (2, 5, 4)),
        "rnn": (lambda: n.Recurrent("rnn", 4, 8), (2, 5, 4)),
        "unguarded": (lambda: n.Unguarded("log", 16, 1.0), (2, 16)),
        "shared_encoder": (lambda: n.SharedEncoder(16, 3), sequence),
        "albert_like": (lambda: n.AlbertLike(40, 16, 2, 3), tokens),
        "tied_embedding": (lambda: n.TiedEmbedding(40, 16), tokens),
    }


def _example(shape: tuple) -> torch.Tensor:
    return torch.randint(0, 40, shape) if len(shape) == 2 and shape[1] == 6 else torch.randn(shape)


@pytest.mark.parametrize("route", ["script", "trace"])
@pytest.mark.parametrize("name", sorted(_suite_networks()))
def test_the_suites_networks_pass_the_allowlist(tmp_path, name, route):
    build, shape = _suite_networks()[name]
    torch.manual_seed(0)
    network = build().eval()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused eval path does not trace
    path = save_torchscript(network, tmp_path / f"{name}.pt", _example(shape) if route == "trace" else None)
    assert load_torchscript(path).layers


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "googlenet"])
def test_scripted_torchvision_networks_pass_the_allowlist(tmp_path, name):
    torchvision = pytest.importorskip("torchvision")
    extra = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    network = getattr(torchvision.models, name)(weights=None, **extra).eval()
    assert load_torchscript(save_torchscript(network, tmp_path / f"{name}.pt")).layers


def test_an_allowed_scripted_network_audits(tmp_path):
    from suites.networks import TransformerClassifier

    torch.manual_seed(0)
    path = save_torchscript(TransformerClassifier(2, 16).eval(), tmp_path / "transformer.pt")
    result = audit_network(path, options=AuditOptions(input_shapes={"x": [2, 5, 16]}), device="cpu")
    assert result.layers
