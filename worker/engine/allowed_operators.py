"""The operators an uploaded network may run: one allowlist for TorchScript graphs and torch.export programs.

How the list was made: bench/operators.py walks real networks (a torchvision classifier of every family, BERT,
GPT-2, T5, ViT, Whisper and Llama built from configurations, torch.nn's standard layers, every network of
suites/ and tests/support/) scripted, traced and exported, walking every method as the check does, and prints
every operator they call; that census was reviewed by hand into OPERATORS. An operator outside it is refused
(`unsafe_operator`) however harmless it may be: a network the list refuses is a line here, after the same
review; an operator wrongly allowed is a file read in the worker.

The rules of the review:
- Allowed: operators that compute values from their arguments and the network's own state (tensors, lists,
  dicts, strings, shapes, dtypes, devices), TorchScript's control flow and containers (`prim::If`, `prim::Loop`,
  `prim::GetAttr`, `prim::RaiseException`), and reads of torch's global modes (`aten::is_grad_enabled`).
- Refused, whatever network uses them: files and the file system (`aten::from_file`, `aten::save`,
  `aten::_save*`, anything that loads), `image::*` and `torchvision::` IO, threads and processes (`prim::fork`,
  `aten::wait`, `prim::rpc_*`), printing (`prim::Print`: it writes to the worker's own output), setters of global
  state (random seeds, `torch.backends` flags), `prim::CallMethod`/`prim::CallFunction` that survive inlining (code
  the check cannot see), and every namespace not named here (custom ops, registered or not).
- `aten::warn` is allowed: torch's own scripted attention and torchvision's GoogLeNet, Inception and MaxViT call
  it, and it only raises a Python warning in the process running the audit.
- `aten::empty` is allowed: torchvision's scripted stochastic depth draws into `torch.empty(...).bernoulli_()`.
  Its bytes are whatever the process's allocator held, so a network can read memory of its own process; what that
  memory may hold is bounded by the process the audit runs in, not by this list. Its relatives (`empty_like`,
  `new_empty`, `empty_strided`) were used by no network and are refused.
- `aten::detach`, `aten::detach_` and `aten::type_as` (pure: a view without gradient, a dtype cast) came from the
  architecture sweep (bench/architectures.py: GPT-2, Llama, Whisper and RoBERTa as transformers trace and export
  them), after the census.
- `aten::_assert_async` is refused: on CUDA a failed one poisons the worker's whole device context.

Names are schema names without the overload (`aten::add` stands for `add.Tensor` and `add.Scalar` alike):
the kind of a TorchScript node, and a .pt2 target (`torch.ops.aten.add.Tensor`) once mapped by `qualified_name`.
A .pt2 program also calls a few plain Python functions on symbolic shapes (PYTHON_FUNCTIONS).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gradaudit.errors import AuditError

OPERATORS = frozenset({
    "aten::Bool", "aten::Float", "aten::Int", "aten::IntImplicit", "aten::ScalarImplicit", "aten::__and__",
    "aten::__contains__", "aten::__derive_index", "aten::__getitem__", "aten::__is__", "aten::__isnot__",
    "aten::__not__", "aten::__range_length", "aten::_assert_tensor_metadata", "aten::_convolution",
    "aten::_native_multi_head_attention", "aten::_nested_tensor_from_mask",
    "aten::_nested_tensor_from_mask_left_aligned", "aten::_set_item", "aten::_transformer_encoder_layer_fwd",
    "aten::_upsample_bicubic2d_aa", "aten::_upsample_bilinear2d_aa", "aten::_upsample_lanczos2d_aa",
    "aten::_upsample_nearest_exact1d", "aten::_upsample_nearest_exact2d", "aten::_upsample_nearest_exact3d",
    "aten::abs", "aten::adaptive_avg_pool1d", "aten::adaptive_avg_pool2d", "aten::adaptive_avg_pool3d",
    "aten::adaptive_max_pool2d", "aten::add", "aten::add_", "aten::addmm", "aten::alias", "aten::all",
    "aten::alpha_dropout", "aten::alpha_dropout_", "aten::any", "aten::append", "aten::arange", "aten::argmax",
    "aten::avg_pool1d", "aten::avg_pool2d", "aten::avg_pool3d", "aten::baddbmm", "aten::batch_norm",
    "aten::bernoulli_", "aten::bmm", "aten::cat", "aten::celu", "aten::celu_", "aten::chunk", "aten::clamp",
    "aten::clamp_min", "aten::clone", "aten::contiguous", "aten::conv1d", "aten::conv2d", "aten::conv3d",
    "aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d", "aten::copy", "aten::copy_",
    "aten::cos", "aten::cumsum", "aten::detach", "aten::detach_", "aten::diff", "aten::dim", "aten::div", "aten::div_", "aten::dropout",
    "aten::dropout_", "aten::einsum", "aten::elu", "aten::elu_", "aten::embedding", "aten::empty", "aten::eq",
    "aten::exp", "aten::expand", "aten::expand_as", "aten::feature_dropout", "aten::feature_dropout_", "aten::fill_",
    "aten::flatten", "aten::floor", "aten::floor_divide", "aten::floordiv", "aten::format", "aten::full",
    "aten::full_like", "aten::gather", "aten::ge", "aten::gelu", "aten::glu", "aten::group_norm", "aten::gru",
    "aten::gt", "aten::hardshrink", "aten::hardsigmoid", "aten::hardsigmoid_", "aten::hardswish", "aten::hardswish_",
    "aten::hardtanh", "aten::hardtanh_", "aten::index", "aten::index_select", "aten::instance_norm",
    "aten::is_autocast_enabled", "aten::is_floating_point", "aten::is_grad_enabled", "aten::layer_norm", "aten::le",
    "aten::leaky_relu", "aten::leaky_relu_", "aten::len", "aten::lift_fresh_copy", "aten::linalg_vector_norm",
    "aten::linear", "aten::list", "aten::log", "aten::log_sigmoid", "aten::log_softmax", "aten::logical_not",
    "aten::lstm", "aten::lt", "aten::masked_fill", "aten::masked_fill_", "aten::matmul", "aten::max_pool1d",
    "aten::max_pool2d", "aten::max_pool3d", "aten::mean", "aten::min", "aten::mish", "aten::mish_", "aten::mul",
    "aten::ne", "aten::neg", "aten::new_ones", "aten::new_zeros", "aten::norm", "aten::numel", "aten::pad",
    "aten::permute", "aten::pixel_shuffle", "aten::pow", "aten::prelu", "aten::relu", "aten::relu_",
    "aten::remainder", "aten::repeat", "aten::reshape", "aten::rms_norm", "aten::rnn_relu", "aten::rnn_tanh",
    "aten::roll", "aten::rsqrt", "aten::rsub", "aten::scaled_dot_product_attention", "aten::select", "aten::selu",
    "aten::selu_", "aten::sigmoid", "aten::silu", "aten::silu_", "aten::sin", "aten::size", "aten::slice",
    "aten::softmax", "aten::softplus", "aten::softshrink", "aten::split", "aten::split_with_sizes", "aten::sqrt",
    "aten::squeeze", "aten::sub", "aten::sum", "aten::swapaxes", "aten::tanh", "aten::tensor", "aten::threshold",
    "aten::threshold_", "aten::to", "aten::to_padded_tensor", "aten::transpose", "aten::triu", "aten::type_as", "aten::unflatten",
    "aten::unsqueeze", "aten::upsample_bicubic2d", "aten::upsample_bilinear2d", "aten::upsample_linear1d",
    "aten::upsample_nearest1d", "aten::upsample_nearest2d", "aten::upsample_nearest3d", "aten::upsample_trilinear3d",
    "aten::view", "aten::warn", "aten::where", "aten::zero_", "aten::zeros", "aten::zeros_like",
    "prim::Constant", "prim::DictConstruct", "prim::GetAttr", "prim::If", "prim::ListConstruct", "prim::ListUnpack",
    "prim::Loop", "prim::NumToTensor", "prim::RaiseException", "prim::TupleConstruct", "prim::TupleIndex",
    "prim::TupleUnpack", "prim::Uninitialized", "prim::device", "prim::dtype", "prim::is_nested",
    "prim::requires_grad", "prim::type", "prim::unchecked_cast",
})

PYTHON_FUNCTIONS = frozenset({
    *(f"_operator.{name}" for name in ("getitem", "add", "sub", "mul", "floordiv", "truediv", "mod", "neg", "pow",
                                       "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "not_", "pos", "abs")),
    *(f"torch.{name}" for name in ("sym_float", "sym_int", "sym_max", "sym_min", "sym_not", "sym_ite", "sym_sum",
                                   "_sym_sqrt")),
    "math.ceil", "math.floor", "math.trunc",
})

_EXPORTED_TARGET = re.compile(r"torch\.ops\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)\.[A-Za-z0-9_]+")
_NAMED = 8  # a refusal names this many operators at most


def qualified_name(name: str) -> str:
    """The schema name of a .pt2 target ('torch.ops.aten.add.Tensor' -> 'aten::add'); any other name unchanged."""
    match = _EXPORTED_TARGET.fullmatch(name)
    return f"{match.group(1)}::{match.group(2)}" if match else name


def operator_allowed(name: str) -> bool:
    """Whether an operator (a TorchScript node kind or a .pt2 target) is on the allowlist."""
    return qualified_name(name) in OPERATORS or name in PYTHON_FUNCTIONS


def refuse_unsafe_operators(found: Mapping[str, str]) -> None:
    """AuditError('unsafe_operator') naming the operators outside the allowlist, each with where it is called
    (found maps an operator to the place it was first seen)."""
    refused = sorted(name for name in found if not operator_allowed(name))
    if refused:
        named = ", ".join(f"'{name}' (in {found[name]})" for name in refused[:_NAMED])
        more = f" and {len(refused) - _NAMED} more" if len(refused) > _NAMED else ""
        raise AuditError("unsafe_operator", f"the network calls operators outside gradaudit's allowlist of pure "
                                            f"tensor operators, so nothing of it was run: {named}{more}")
