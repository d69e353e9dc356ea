"""`if:` conditions of flow steps: Common Expression Language (cel-python), compiled when the
pipeline file is loaded and evaluated over plain JSON data. CEL cannot loop, call out or touch
the process, which is why it is used instead of anything that evaluates Python.

An expression may name facts that are not known yet when its step becomes ready: `source.height`
needs the upload to be screened. Evaluating then gives `Undecided`, and the step's invocation
decides once its worker has screened the input.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import celpy

log = logging.getLogger(__name__)

SOURCE_FIELDS = (
    "bucket",
    "key",
    "size",
    "content_type",
    "width",
    "height",
    "duration",
    "has_audio",
    "rotation",
    "metadata",
)
_SOURCE_REFERENCE = re.compile(r"(?<![\w.])source\s*\.\s*([A-Za-z_]\w*)")
_STEP_REFERENCE = re.compile(r"""steps\s*(?:\.\s*([A-Za-z0-9_]+)|\[\s*["']([^"']+)["']\s*\])""")


class ConditionError(ValueError):
    """Raised when an expression does not compile, or its value is not a boolean."""


class Undecided(Exception):
    """Raised when an expression needs facts that are not known yet."""


@dataclass(frozen=True)
class Condition:
    text: str
    program: Any

    def steps_named(self) -> set[str]:
        """The steps the expression reads (`steps.x` or `steps["x-y"]`)."""
        return {a or b for a, b in _STEP_REFERENCE.findall(self.text)}

    def evaluate(self, data: dict[str, Any]) -> bool:
        """True or False; `Undecided` when a name it reads is missing from `data`, and
        `ConditionError` when the value is not a boolean or the evaluation fails otherwise."""
        from celpy.adapter import json_to_cel  # noqa: PLC0415 - celpy loads only where flows have an `if`
        from celpy.celtypes import BoolType  # noqa: PLC0415
        from celpy.evaluation import CELEvalError  # noqa: PLC0415

        try:
            value = self.program.evaluate({name: json_to_cel(v) for name, v in data.items()})
        except CELEvalError as exc:
            raise _eval_error(self.text, exc) from exc
        if isinstance(value, CELEvalError):
            raise _eval_error(self.text, value)
        if not isinstance(value, BoolType):
            raise ConditionError(f"{self.text!r} gave {value!r}, not true or false")
        return bool(value)


_OPERATORS = {
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
    "relation_eq": "==",
    "relation_ne": "!=",
    "addition_add": "+",
    "addition_sub": "-",
    "multiplication_mul": "*",
    "multiplication_div": "/",
    "multiplication_mod": "%",
}


def _eval_error(text: str, exc: Exception) -> Exception:
    detail = repr(exc.args).replace("\\'", "'")  # nested errors come quoted
    missing = re.search(r"no such (?:member in mapping|key): '([^']*)'", detail)
    if missing:
        return Undecided(f"{text!r} reads {missing.group(1)!r}, which is not known (test it with has())")
    undeclared = re.search(r"undeclared reference to '([^']*)'", detail)
    if undeclared:
        return ConditionError(f"{text!r} names {undeclared.group(1)!r}; only source and steps exist")
    overload = re.search(r"no matching overload for .*?'(\w+)'.*? applied to '\((.*)\)'", detail)
    if overload:
        types = re.findall(r"celtypes\.(\w+?)Type", overload.group(2))
        operator = _OPERATORS.get(overload.group(1), overload.group(1))
        kinds = " and ".join(types).lower()
        hint = "a field compared with a value of another type?"
        return ConditionError(f"{text!r}: {operator} cannot take {kinds} ({hint})")
    message = str(exc.args[0] if exc.args else exc).split(" (in activation")[0]
    return ConditionError(f"{text!r} could not be evaluated: {message[:300]}")


# Every fact a condition may read, with a value of its type: loading evaluates each expression
# over these so that a name that does not exist fails at load, not in the middle of a run.
SAMPLE_SOURCE: dict[str, Any] = {
    "bucket": "media",
    "key": "uploads/a.mp4",
    "size": 1,
    "content_type": "video/mp4",
    "width": 1920,
    "height": 1080,
    "duration": 1.0,
    "has_audio": True,
    "rotation": 0,
    "metadata": {},
}
# What every step has, whatever its function reports.
STEP_FIELDS: dict[str, Any] = {"status": "succeeded", "outputs": [], "reason": ""}
_STEP_FIELD = re.compile(
    r"""steps\s*(?:\.\s*([A-Za-z0-9_]+)|\[\s*["']([^"']+)["']\s*\])\s*\.\s*([A-Za-z_]\w*)"""
)


def check_condition(condition: Condition, steps: Mapping[str, Mapping[str, Any] | None]) -> None:
    """Raise `ConditionError` if the expression names anything but `source` and these steps, reads
    a field a step's function does not report, compares values of the wrong types, or gives
    something other than true or false. `steps` maps each step it may read to the fields its
    function reports (a sample value each), or None where the function declares none: reading
    such a step's fields is left to the run."""
    for name in _SOURCE_REFERENCE.findall(condition.text):
        if name not in SOURCE_FIELDS:
            raise ConditionError(f"source has no field {name!r} (fields: {', '.join(SOURCE_FIELDS)})")
    for dotted, quoted, field in _STEP_FIELD.findall(condition.text):
        step = dotted or quoted
        reports = steps.get(step)
        if reports is not None and field not in STEP_FIELDS and field not in reports:
            known = ", ".join([*STEP_FIELDS, *reports])
            raise ConditionError(f"step {step!r} reports no field {field!r} (fields: {known})")
    samples = {name: {**(reports or {}), **STEP_FIELDS} for name, reports in steps.items()}
    # Undecided here is a metadata key or a field of an undeclared function: known only in a run.
    with contextlib.suppress(Undecided):
        condition.evaluate({"source": SAMPLE_SOURCE, "steps": samples})


def _parser_cache() -> Path | None:
    """A directory only this user can write (the cache is a pickle: never one from a shared /tmp)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "media-pipeline"
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        if base.stat().st_uid != os.getuid() or base.stat().st_mode & 0o022:
            return None
    except OSError:
        return None
    from lark import __version__  # noqa: PLC0415

    return base / f"cel-{__version__}.lark"


@functools.cache
def environment() -> celpy.Environment:
    """The CEL environment, built on first use. Building the grammar's parser tables takes about
    150 ms, in every process that loads a pipeline file with an `if`, a worker included; lark can
    keep them in a cache file, which celpy's own constructor does not ask for. So the parser is
    made here with celpy's options plus that cache (celpy reuses a parser that is already set),
    and with celpy's own when that fails."""
    import celpy  # noqa: PLC0415 - about 0.1 s to import: only where flows have an `if`
    import lark  # noqa: PLC0415
    from celpy.celparser import CELParser  # noqa: PLC0415

    cache = _parser_cache()
    if cache is not None and CELParser.CEL_PARSER is None:
        try:
            grammar = (Path(celpy.__file__).parent / "cel.lark").read_text()
            CELParser.CEL_PARSER = lark.Lark(
                grammar,
                parser="lalr",
                start="expr",
                debug=True,
                g_regex_flags=re.M,
                lexer_callbacks={"IDENT": CELParser.ambiguous_literals},
                propagate_positions=True,
                maybe_placeholders=False,
                priority="invert",
                tree_class=lark.Tree,
                cache=str(cache),
            )
        except Exception as exc:  # any trouble with the cache: celpy builds its parser itself
            log.debug("CEL parser cache not used: %s", exc)
            CELParser.CEL_PARSER = None
    return celpy.Environment()


@functools.lru_cache(maxsize=512)
def compile_condition(text: str) -> Condition:
    from celpy.celparser import CELParseError  # noqa: PLC0415

    try:
        env = environment()
        ast = env.compile(text)
        program = env.program(ast)
    except CELParseError as exc:
        detail = " ".join(str(exc).split())
        raise ConditionError(f"{text!r} is not a valid CEL expression: {detail}") from exc
    return Condition(text=text, program=program)


def source_facts(
    bucket: str,
    key: str,
    size: int | None,
    content_type: str | None,
    media: dict[str, Any] | None,
    metadata: dict[str, str] | None,
) -> dict[str, Any]:
    """What `source` holds: the event's facts at once, the media facts once screened."""
    facts: dict[str, Any] = {"bucket": bucket, "key": key}
    if size is not None:
        facts["size"] = size
    if content_type:
        facts["content_type"] = content_type
    if metadata is not None:
        facts["metadata"] = dict(metadata)
    if media:
        for name in ("width", "height", "duration", "has_audio", "rotation"):
            if media.get(name) is not None:
                facts[name] = media[name]
        facts.setdefault("content_type", media.get("media_type", ""))
        facts.setdefault("size", media.get("size", 0))
        facts["screened"] = True
    return facts
