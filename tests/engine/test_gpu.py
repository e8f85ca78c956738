"""The same probe on CUDA: skipped where there is no GPU, run on the device machine when there is."""

from __future__ import annotations

import pytest
import torch

from gradaudit.options import AuditOptions
from worker.engine.audit import audit_network

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize(("artifact", "input_name"), [("mlp_script", "input"), ("mlp_onnx", "x")])
def test_a_cuda_probe_matches_the_cpu_probe(request, artifact, input_name):
    path = request.getfixturevalue(artifact)
    options = AuditOptions(input_shapes={input_name: [8, 6]})

    on_gpu = audit_network(path, options=options, device="cuda")
    on_cpu = audit_network(path, options=options, device="cpu")

    assert on_gpu.setup["device"].startswith("cuda")
    for gpu_layer, cpu_layer in zip(on_gpu.layers, on_cpu.layers, strict=True):
        assert gpu_layer.name == cpu_layer.name
        assert gpu_layer.grad_norm == pytest.approx(cpu_layer.grad_norm, rel=1e-3)
