"""What a CI system renders from a report: JUnit XML (Jenkins, GitLab, GitHub test reporters) and a Markdown
summary for a pull-request comment or a job summary. `gradaudit audit` and `gradaudit submit` write them with
--junit FILE and --markdown FILE.

JUnit: one testsuite for the audited network and one testcase per check. The checks are the diagnosis's nine
finding codes (gradaudit.schema.FINDING_CODES, in report order), any other code the report holds, and with a
baseline `regression`. A check fails when its finding's severity is at least the gate (--fail-on; warning where
none is given), so the test report agrees with the exit code; the failure carries the finding's title (message),
its layers, its evidence (compact) and its first fix. A finding below the gate (info, or a warning under
--fail-on critical) passes and is told in <system-out>. `regression` fails when the audit regressed against its
baseline, its reasons in the failure. An audit that could not run is one testcase `audit` with an <error>.
"""

from __future__ import annotations

import math
import re
from typing import Any
from xml.etree import ElementTree

from gradaudit.compare import RANK
from gradaudit.schema import FINDING_CODES

# Characters XML 1.0 cannot hold at all, escaped or not; a layer name comes from the uploaded network.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]+")
MAX_EVIDENCE_CHARS = 600
SHOWN_ITEMS = 4


def render_junit(report: dict[str, Any], *, source: str, fail_on: str | None = None,
                 comparison: dict[str, Any] | None = None) -> str:
    """The JUnit XML of a report (module docstring: the scheme); source names the network (its file)."""
    gate = RANK[fail_on or "warning"]
    by_code = {finding["code"]: finding for finding in report["findings"]}
    codes = list(FINDING_CODES) + [code for code in by_code if code not in FINDING_CODES]
    suite = _suite(source, {"verdict": report["verdict"], "fail_on": fail_on or "warning",
                            "network_sha256": report["network"].get("sha256", "")})
    for code in codes:
        _check(suite, source, code, by_code.get(code), gate)
    if comparison is not None:
        _regression_check(suite, source, comparison)
    return _document(suite)


def render_junit_error(code: str, detail: str, *, source: str) -> str:
    """The JUnit XML of an audit that could not run: one testcase `audit` in error, with the coded reason."""
    suite = _suite(source, {"error_code": code})
    error = ElementTree.SubElement(_testcase(suite, source, "audit"), "error", type=_text(code),
                                   message=_text(detail))
    error.text = _text(f"{code}: {detail}")
    return _document(suite)


def render_markdown(report: dict[str, Any], *, source: str, comparison: dict[str, Any] | None = None) -> str:
    """A pull-request comment: the verdict, a table of the findings, and against a baseline what changed."""
    network = report["network"]
    audit = f" Audit {_code(report['id'])}." if report.get("id") else ""  # what a later --baseline names
    lines = [f"### gradaudit: **{report['verdict'].upper()}** for {_code(source)}", "",
             f"{network.get('format', '?')} network, {network.get('parameters', 0):,} parameters in "
             f"{network.get('layers', 0)} layers.{audit}", ""]
    lines += _findings_table(report["findings"]) if report["findings"] else ["No findings.", ""]
    if comparison is not None:
        lines += _comparison_lines(comparison)
    return "\n".join(lines).rstrip() + "\n"


def render_markdown_error(code: str, detail: str, *, source: str) -> str:
    """A pull-request comment for an audit that could not run."""
    return f"### gradaudit: **ERROR** for {_code(source)}\n\n{_code(code)}: {_cell(detail)}\n"


def evidence_text(evidence: dict[str, Any]) -> str:
    """A finding's evidence on one line: key=value, numbers to 4 significant digits, long lists cut."""
    text = ", ".join(f"{key}={_value(value)}" for key, value in evidence.items())
    return text if len(text) <= MAX_EVIDENCE_CHARS else text[:MAX_EVIDENCE_CHARS - 1] + "…"


def first_fix(finding: dict[str, Any]) -> dict[str, Any] | None:
    """The finding's first recommendation (the best measured one where fixes were verified)."""
    return (finding.get("recommendations") or [None])[0]


def _suite(source: str, properties: dict[str, str]) -> ElementTree.Element:
    suite = ElementTree.Element("testsuite", name=_text(f"gradaudit {source}"))
    listed = ElementTree.SubElement(suite, "properties")
    for name, value in properties.items():
        ElementTree.SubElement(listed, "property", name=name, value=_text(str(value)))
    return suite


def _testcase(suite: ElementTree.Element, source: str, name: str) -> ElementTree.Element:
    stem = _NOT_IDENTIFIER.sub("_", source.rsplit("/", 1)[-1].rsplit(".", 1)[0]).strip("_") or "network"
    return ElementTree.SubElement(suite, "testcase", classname=f"gradaudit.{stem}", name=name)


def _check(suite, source: str, code: str, finding: dict[str, Any] | None, gate: int) -> None:
    case = _testcase(suite, source, code)
    if finding is None:
        return
    if RANK[finding["severity"]] >= gate:
        failure = ElementTree.SubElement(case, "failure", type=finding["severity"], message=_text(finding["title"]))
        failure.text = _text(_finding_body(finding))
    else:
        ElementTree.SubElement(case, "system-out").text = _text(f"{finding['severity']}: {_finding_body(finding)}")


def _finding_body(finding: dict[str, Any]) -> str:
    lines = [f"{finding['title']}", f"layers: {_layers(finding['layers'])}",
             f"evidence: {evidence_text(finding['evidence'])}"]
    fix = first_fix(finding)
    if fix:
        lines.append(f"first fix {fix['code']}{_status(fix)}: {fix['text']}")
    return "\n".join(lines)


def _regression_check(suite, source: str, comparison: dict[str, Any]) -> None:
    case = _testcase(suite, source, "regression")
    if not comparison["regression"]:
        return
    failure = ElementTree.SubElement(case, "failure", type="regression",
                                     message=_text(f"worse than baseline {comparison['baseline_id']}"))
    failure.text = _text("\n".join(comparison["reasons"]))


def _document(suite: ElementTree.Element) -> str:
    cases = suite.findall("testcase")
    counts = {"tests": len(cases), "failures": sum(1 for case in cases if case.find("failure") is not None),
              "errors": sum(1 for case in cases if case.find("error") is not None), "skipped": 0}
    suite.attrib.update({key: str(value) for key, value in counts.items()})
    root = ElementTree.Element("testsuites", name="gradaudit", **{key: str(value) for key, value in counts.items()
                                                                   if key != "skipped"})
    root.append(suite)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _findings_table(findings: list[dict[str, Any]]) -> list[str]:
    rows = ["| severity | finding | layers | first fix |", "|---|---|---|---|"]
    for finding in findings:
        fix = first_fix(finding)
        cells = [finding["severity"], _code(finding["code"]), _cell(_layers(finding["layers"])),
                 f"{_code(fix['code'])}{_status(fix)}" if fix else "–"]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    details = ["", "<details><summary>What was seen and what to change</summary>", ""]
    for finding in findings:
        details.append(f"- **{finding['code']}** ({finding['severity']}): {_cell(finding['title'])}")
        if fix := first_fix(finding):
            details.append(f"  - first fix: {_cell(fix['text'])}")
    return rows + details + ["", "</details>", ""]


def _comparison_lines(comparison: dict[str, Any]) -> list[str]:
    verdict, findings = comparison["verdict"], comparison["findings"]
    flag = "**regression**" if comparison["regression"] else "no regression"
    lines = [f"#### Against baseline {_code(str(comparison['baseline_id']))}: {flag}", "",
             f"Verdict {verdict['before']} → {verdict['after']}; findings added "
             f"{_codes(findings['added'])}, removed {_codes(findings['removed'])}, severity changed "
             + (", ".join(f"{_code(c['code'])} {c['before']} → {c['after']}" for c in findings["severity_changed"])
                or "none") + ".", ""]
    return lines + [f"- {_cell(reason)}" for reason in comparison["reasons"]] + [""]


def _codes(findings: list[dict[str, Any]]) -> str:
    return ", ".join(f"{_code(f['code'])} ({f['severity']})" for f in findings) or "none"


def _layers(names: list[str]) -> str:
    if len(names) <= 2:
        return ", ".join(names) or "–"
    return f"{names[0]} … {names[-1]} ({len(names)} layers)"


def _status(recommendation: dict[str, Any]) -> str:
    verification = recommendation.get("verification")
    return f" ({verification['status'].replace('_', ' ')})" if verification else ""


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return "{" + evidence_text(value) + "}"
    if isinstance(value, (list, tuple)):
        shown = ", ".join(_value(item) for item in value[:SHOWN_ITEMS])
        return f"[{shown}{', …' if len(value) > SHOWN_ITEMS else ''}]"
    return str(value)


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


def _cell(text: str) -> str:
    """Text on one line, its backslashes literal and no raw HTML (a table escapes its pipes itself)."""
    one_line = " ".join(str(text).split())
    return one_line.replace("\\", "\\\\").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    """Inline code, with a fence longer than any backtick run inside (CommonMark)."""
    text = " ".join(str(text).split())
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") else text
    return f"{fence}{padded}{fence}"
