"""The measurement engine: plain functions that load a network, probe its gradients and measure every layer.

audit.py is the pipeline; onnx/ and torchscript/ are the format adapters, reached through formats.py."""
