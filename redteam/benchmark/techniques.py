"""The techniques a benchmark compares: reference specs (built-in or from plugins), sweeps over one
parameter of a family, and external tools that run over the dataset.

Sweep grammar: `family:param=LOW..HIGH` (8 even steps, rounded to whole numbers for an integer parameter,
every whole number when the range holds fewer), `family:param=LOW..HIGH:STEP`,
or `family:param=V1,V2,V3`; other parameters may follow after a comma before the swept one is named, e.g.
`mosaic:margin=0.2,block=4..32:4`.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass

from redteam.anonymizers import METHODS, build_method
from redteam.core.errors import ConfigError

#: A sweep with no step takes this many settings (an integer range with fewer whole numbers: each of them).
DEFAULT_SETTINGS = 8


@dataclass(frozen=True)
class Technique:
    """One point of the comparison.

    Attributes:
        name: its row in every table (a spec's canonical form when it has no other name).
        kind: "spec" (a reference method, anonymized by the benchmark) or "tool" (an external command).
        spec: the method spec ("spec"), or the command template ("tool").
        family, parameter, value: for a sweep's setting, the family, the swept parameter and its value.
    """

    name: str
    kind: str
    spec: str
    family: str | None = None
    parameter: str | None = None
    value: float | None = None


_SWEEP = re.compile(r"^(?P<family>[A-Za-z_][\w]*):(?:(?P<fixed>(?:[\w]+=[^,=]+,)*))(?P<param>[\w]+)=(?P<values>[^=]+)$")


def sweep(text: str) -> list[Technique]:
    """The settings of one `--sweep`.

    Raises:
        ConfigError: not the grammar above, an unknown family or parameter, or a setting the family refuses.
    """
    match = _SWEEP.match(text.strip())
    if match is None:
        raise ConfigError(f"--sweep {text!r} is not family:param=LOW..HIGH[:STEP] or family:param=V1,V2,...", fix='e.g. --sweep "mosaic:block=4..32:4"')
    family, parameter, values_text = match["family"], match["param"], match["values"]
    fixed = match["fixed"] or ""
    if family not in METHODS:
        raise ConfigError(f"--sweep {text!r}: unknown method '{family}'", fix="choose one of: " + ", ".join(sorted(METHODS)))
    declared = {p.name: p for p in METHODS[family].parameters}
    if parameter not in declared:
        raise ConfigError(f"--sweep {text!r}: {family} has no parameter '{parameter}'", fix="its parameters: " + ", ".join(declared))
    integer = declared[parameter].kind is int
    techniques = []
    for value in _values(values_text, integer, text):
        shown = str(int(value)) if integer else f"{value:g}"
        label = f"{family}:{fixed}{parameter}={shown}"  # the setting named as swept (a default is not dropped)
        spec = build_method(label).spec  # refuses a value outside the parameter's range
        techniques.append(Technique(label, "spec", spec, family, parameter, float(value)))
    return techniques


def _values(text: str, integer: bool, whole: str) -> list[float]:
    try:
        if ".." not in text:
            values = [float(v) for v in text.split(",") if v.strip()]
        else:
            bounds, _, step_text = text.partition(":")
            low_text, high_text = bounds.split("..")
            low, high = float(low_text), float(high_text)
            if high < low:
                raise ValueError("the range runs backwards")
            step = float(step_text) if step_text else (high - low) / (DEFAULT_SETTINGS - 1)
            if step_text and step <= 0:
                raise ValueError("the step must be positive")
            count = int(math.floor((high - low) / step + 1e-9)) + 1 if high > low else 1
            values = [low + i * step for i in range(count)]
            if integer and not step_text and low == int(low) and high == int(high):
                values = [float(round(v)) for v in values]
    except ValueError as error:
        raise ConfigError(f"--sweep {whole!r}: {error}", fix='e.g. "mosaic:block=4..32:4" or "gaussian_blur:sigma=2,4,8"') from error
    if integer and any(v != int(v) for v in values):
        raise ConfigError(f"--sweep {whole!r}: the parameter takes whole numbers", fix="use an integer range and step")
    if not values:
        raise ConfigError(f"--sweep {whole!r}: no setting", fix="give at least one value")
    return sorted(set(values))


def method(spec: str) -> Technique:
    """A reference method (built-in or from a plugin), named by its canonical spec."""
    canonical = build_method(spec).spec
    family = canonical.split(":")[0].split("|")[0].strip()
    return Technique(canonical, "spec", canonical, family)


def tool(command: str, index: int) -> Technique:
    """An external tool: a command with `{input}` and `{output}` (a folder each), run once over the dataset.

    Raises:
        ConfigError: the command lacks either placeholder or does not parse.
    """
    if "{input}" not in command or "{output}" not in command:
        raise ConfigError(f"--tool {command!r} lacks {{input}} or {{output}}", fix='e.g. --tool "python my_tool.py {input} {output}"')
    try:
        parts = shlex.split(command)
    except ValueError as error:
        raise ConfigError(f"--tool {command!r} does not parse as a command line ({error})", fix="quote it as a shell would") from error
    before = [p for p in parts[: next(i for i, p in enumerate(parts) if "{input}" in p or "{output}" in p)] if not p.startswith("-")]
    named = before[-1] if before else "tool"  # the script an interpreter runs, or the program itself
    stem = re.sub(r"[^\w]+", "_", named.rsplit("/", 1)[-1].rsplit(".", 1)[0]).strip("_") or "tool"
    return Technique(f"tool{index}_{stem}", "tool", command)


def techniques(methods: list[str], sweeps: list[str], tools: list[str]) -> list[Technique]:
    """Every technique, in the order given (sweeps setting by setting), each spec once.

    Raises:
        ConfigError: none at all, or as `sweep`, `method` and `tool`.
    """
    found: list[Technique] = [t for text in sweeps for t in sweep(text)] + [method(spec) for spec in methods]
    found += [tool(command, index) for index, command in enumerate(tools, start=1)]
    if not found:
        raise ConfigError("nothing to compare", fix='give --method SPEC, --sweep "family:param=LOW..HIGH" or --tool "CMD {input} {output}"')
    unique: dict[tuple[str, str], Technique] = {}
    for technique in found:  # a spec given twice (as a sweep's setting and as a method) is applied once
        unique.setdefault((technique.kind, technique.spec), technique)
    return list(unique.values())
