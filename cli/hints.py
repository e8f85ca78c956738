"""An error's detail in the words of the command line: the engine and the API speak of options by their JSON
names (`pass input_shapes={'x': [...]}`), which a user of `gradaudit audit` never typed."""

from __future__ import annotations

import re

_RULES: list[tuple[re.Pattern[str], object]] = [
    (re.compile(r"pass input_shapes=\{'(?P<name>[^']*)': \[\.\.\.\]\}"),
     lambda m: f"give its shape with --input-shape {m['name']}=DIMS, batch first (e.g. --input-shape "
               f"{m['name']}=8x32)"),
    (re.compile(r"input_shapes gives \[(?P<dims>[0-9, ]*)\]"),
     lambda m: f"--input-shape gives {'x'.join(m['dims'].replace(' ', '').split(','))}"),
    (re.compile(r"input_shapes\[(?P<name>'[^']*')\]"), r"--input-shape \g<name>"),
    (re.compile(r"\binput_shapes\b"), "--input-shape"),
]


def in_cli_terms(detail: str) -> str:
    """detail with the options named as the command line names them."""
    for pattern, replacement in _RULES:
        detail = pattern.sub(replacement, detail)
    return detail
