"""The contract every media function follows: file in, files out, typed parameters.

A function module declares a pydantic `Params` model and a `run(src, out_dir, params)` decorated
with `@media_function(...)`. It never touches queues, object stores or HTTP; the worker adapter
downloads the input, calls `run` and uploads what it returns.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

P = TypeVar("P", bound=BaseModel)


class Params(BaseModel):
    """Base of every function's parameter model: unknown parameters are errors, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Output:
    """One file a function produced. `name` is relative and becomes the last part of the output key."""

    name: str
    path: Path
    content_type: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FunctionSpec(Generic[P]):
    """What the registry knows about a function: its name, what it accepts and how to call it."""

    name: str
    summary: str
    accepts: tuple[str, ...]
    params_model: type[P]
    run: Callable[[Path, Path, P], list[Output]]
    module: str
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    assets: Callable[[P], list[str]] | None = None
    # Data files (not media: e.g. a list of known image hashes) it reads besides its input. The
    # worker downloads them like assets, size-capped, without screening them as media.
    data: Callable[[P], list[str]] | None = None
    # Content types of the files it writes; () for a function that only reports (flows check that
    # a step's `needs` name steps that make files).
    produces: tuple[str, ...] = ("*/*",)
    # The fields its outputs' `meta` may carry, each with a sample value of its type. A flow's `if`
    # reads them as `steps.<id>.<field>`; loading the pipeline file tries each expression on these
    # samples, so a misspelt field or a comparison of the wrong types fails at load, not in a run.
    # None: not declared (a user's function that says nothing), and such fields are not checked.
    reports: Mapping[str, Any] | None = None

    def asset_refs(self, params: P) -> list[str]:
        """`s3://bucket/key` objects the worker must download before calling `run`."""
        return self.assets(params) if self.assets else []

    def data_refs(self, params: P) -> list[str]:
        """`s3://bucket/key` data files (not media) the worker must download before `run`."""
        return self.data(params) if self.data else []

    def accepts_type(self, content_type: str) -> bool:
        return any(fnmatch.fnmatchcase(content_type, pattern) for pattern in self.accepts)

    def parse_params(self, raw: dict[str, Any] | None) -> P:
        return self.params_model.model_validate(raw or {})

    def __call__(self, src: Path, out_dir: Path, params: P) -> list[Output]:
        return self.run(src, out_dir, params)


def media_function(
    *,
    name: str,
    accepts: tuple[str, ...],
    params: type[P],
    presets: dict[str, dict[str, Any]] | None = None,
    assets: Callable[[P], list[str]] | None = None,
    data: Callable[[P], list[str]] | None = None,
    produces: tuple[str, ...] = ("*/*",),
    reports: Mapping[str, Any] | None = None,
) -> Callable[[Callable[[Path, Path, P], list[Output]]], FunctionSpec[P]]:
    """Declare a module's `run` as a media function named `name`, accepting media types `accepts`.
    `presets` are named parameter sets a rule can start from (`preset: hls`); `reports` names the
    fields its outputs' `meta` carry, each with a sample value of its type."""

    def wrap(run: Callable[[Path, Path, P], list[Output]]) -> FunctionSpec[P]:
        doc = (run.__doc__ or "").strip().splitlines()
        return FunctionSpec(
            name=name,
            summary=doc[0] if doc else name,
            accepts=accepts,
            params_model=params,
            run=run,
            module=run.__module__,
            presets=dict(presets or {}),
            assets=assets,
            data=data,
            produces=produces,
            reports=MappingProxyType(dict(reports)) if reports is not None else None,
        )

    return wrap
