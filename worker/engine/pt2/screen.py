"""What a .pt2 program may contain before torch deserializes it. The JSON names the operators the graph will call
by string, and torch's deserializer turns some strings into code: node and argument names become identifiers in
the GraphModule's generated Python, symbolic shape expressions go through sympy.sympify (an eval), guards_code is
exec'd by ExportedProgram.module(), and tree specs may import modules. So every string is checked here against
what torch.export.save writes for plain networks, and the program is refused (or the field dropped) otherwise.

Which operator targets may run is decided by the allowlist both formats share (worker/engine/allowed_operators.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from gradaudit.errors import AuditError
from worker.engine.allowed_operators import refuse_unsafe_operators

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUALIFIED = re.compile(r"([A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)?")  # add_module allows "block1-0" (RegNet)
_MODULE_STACK = re.compile(r"[\w.,;<>@\[\]()' -]*")
_DEVICE = re.compile(r"[a-z]+")
# sympy expressions as torch prints shapes: symbols (s0, u3), numbers, arithmetic, and the functions listed.
_EXPRESSION_TOKEN = re.compile(r"\s*(?:([A-Za-z]+[0-9]*)|([0-9]+(?:\.[0-9]+)?(?:e-?[0-9]+)?)|(\*\*|//|[-+*/%(),<>=!]=?))")
_EXPRESSION_FUNCTIONS = frozenset({
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
    "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator",
    "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity", "Max", "Min", "Abs", "Eq",
    "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "True", "False", "oo", "floor", "ceiling", "Piecewise",
})
_SYMBOL = re.compile(r"[a-z]{1,4}[0-9]+")
_TREE_TYPES = frozenset({None, "builtins.tuple", "builtins.list", "builtins.dict", "collections.OrderedDict",
                         "torch.fx.immutable_collections.immutable_list",
                         "torch.fx.immutable_collections.immutable_dict"})
# Literal strings the deserializer only ever repr()s or compares.
_LITERAL_KEYS = frozenset({"as_string", "as_strings", "verifiers", "torch_version"})
_KEPT_METADATA = ("nn_module_stack",)  # stack traces, source functions and custom metadata are dropped


def screen_program(program: dict) -> dict:
    """The program with guards_code and every node's metadata except nn_module_stack dropped; AuditError if
    any operator or string is outside what a plain exported network holds."""
    program["guards_code"] = []  # shape guards as Python source; the probe's inputs follow the signature anyway
    graph_module = program.get("graph_module", {})
    if graph_module.get("treespec_namedtuple_fields"):
        raise _refused("named tuples as inputs or outputs are not supported")
    for node in _nodes(graph_module):
        metadata = node.get("metadata") or {}
        node["metadata"] = {key: metadata[key] for key in _KEPT_METADATA if key in metadata}
    refuse_unsafe_operators({str(node["target"]): "the program" for node in _nodes(graph_module)})
    for key, value in _strings(program):
        _check(key, value)
    return program


def _nodes(value) -> Iterator[dict]:
    """Every serialized node, in nested graphs too (a node is a dict with target, inputs and outputs)."""
    if isinstance(value, dict):
        if {"target", "inputs", "outputs"} <= value.keys():
            yield value
        for child in value.values():
            yield from _nodes(child)
    elif isinstance(value, list):
        for child in value:
            yield from _nodes(child)


def _strings(value, key: str | None = None) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, dict):
        for child_key, child in value.items():
            yield from _strings(child, child_key)
    elif isinstance(value, list):
        for child in value:
            yield from _strings(child, key)
    elif isinstance(value, str):
        yield key, value


def _check(key: str | None, value: str) -> None:
    if key in _LITERAL_KEYS or key == "target":  # targets were checked as operators
        return
    if key in ("name", "as_name", "forward_arg_names", "arg"):
        ok = bool(_IDENTIFIER.fullmatch(value))
    elif key == "fqn" or (key or "").endswith("_name"):
        ok = bool(_QUALIFIED.fullmatch(value))
    elif key == "expr_str":
        ok = expression_allowed(value)
    elif key in ("in_spec", "out_spec"):
        ok = tree_spec_allowed(value)
    elif key == "nn_module_stack":
        ok = bool(_MODULE_STACK.fullmatch(value))
    elif key == "type":
        ok = bool(_DEVICE.fullmatch(value))
    else:
        ok = False
    if not ok:
        raise _refused(f"unexpected text in field {key!r}: {value[:80]!r}")


def expression_allowed(text: str) -> bool:
    """Whether a symbolic shape expression holds only symbols, numbers, arithmetic and known functions."""
    position = 0
    while position < len(text.rstrip()):
        token = _EXPRESSION_TOKEN.match(text, position)
        if token is None:
            return False
        name = token.group(1)
        if name and name not in _EXPRESSION_FUNCTIONS and not _SYMBOL.fullmatch(name):
            return False
        position = token.end()
    return True


def tree_spec_allowed(text: str) -> bool:
    """Whether a serialized pytree spec uses only plain containers (others may import modules when read)."""
    try:
        protocol, spec = json.loads(text)
    except (ValueError, TypeError):
        return False
    return protocol == 1 and _plain_tree(spec)


def _plain_tree(spec) -> bool:
    if not isinstance(spec, dict) or spec.get("type") not in _TREE_TYPES or "__enum__" in str(spec.get("context")):
        return False
    return all(_plain_tree(child) for child in spec.get("children_spec", []))


def _refused(detail: str) -> AuditError:
    return AuditError("invalid_exported_program", f"the program was refused: {detail}")
