"""The shape of a flow: checks (known steps, no cycles), order, ancestry, and a text drawing."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter

from pipeline.flows.spec import Flow


class GraphError(ValueError):
    """Raised when a flow's steps do not form a graph that can run (unknown step, cycle)."""


def check_graph(flow: Flow) -> list[str]:
    """The steps in an order where every step comes after its needs; `GraphError` if a step
    needs one that does not exist, or the needs go round in a circle."""
    for name, step in flow.steps.items():
        for need in step.needs:
            if need == name:
                raise GraphError(f"steps.{name}.needs: a step cannot need itself")
            if need not in flow.steps:
                known = ", ".join(sorted(flow.steps))
                raise GraphError(f"steps.{name}.needs: unknown step {need!r} (steps: {known})")
    sorter = TopologicalSorter({name: step.needs for name, step in flow.steps.items()})
    try:
        return list(sorter.static_order())
    except CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise GraphError(f"steps: the needs form a cycle: {cycle}") from exc


def ancestors(flow: Flow, step: str) -> set[str]:
    found: set[str] = set()
    todo = list(flow.steps[step].needs)
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(flow.steps[name].needs)
    return found


def descendants(flow: Flow, step: str) -> set[str]:
    found: set[str] = set()
    todo = flow.dependents(step)
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(flow.dependents(name))
    return found


def draw(flow: Flow, labels: dict[str, str] | None = None) -> list[str]:
    """A flow as indented text: each step under the step it needs (a join is drawn under each of
    its parents and marked with the others). `labels` adds text after a step's name."""
    labels = labels or {}
    lines: list[str] = []

    def line(name: str, depth: int, via: str | None) -> None:
        step = flow.steps[name]
        what = step.function + (f" ({step.preset})" if step.preset else "")
        extra = [f"if {step.condition}"] if step.condition else []
        others = [n for n in step.needs if n != via]
        if others:
            extra.append("also needs " + ", ".join(others))
        if step.on_failure == "continue":
            extra.append("on_failure: continue")
        label = f"  {labels[name]}" if name in labels else ""
        tail = f"  [{'; '.join(extra)}]" if extra else ""
        lines.append(f"{'    ' * depth}{'└─ ' if depth else ''}{name}: {what}{label}{tail}")
        for child in flow.dependents(name):
            line(child, depth + 1, name)

    for root in flow.roots():
        line(root, 0, None)
    return lines
