"""Flows: multi-step processing of one upload as a graph of steps.

- `spec`: the pipeline file's `flows:` section (steps, needs, use, if, on_failure).
- `conditions`: `if:` expressions in the Common Expression Language (compiled at load, no eval).
- `model`: a run and its steps, as recorded in the ledger and shown by the API.
- `graph`: checks on a flow's shape (acyclic, known steps) and its text drawing.
- `engine`: pure transitions of a run (start, a step's invocation finished, redrive, rerun).
- `runner`: applies the engine atomically in Redis and enqueues what it launches.

The submodules sit on different layers (see the import-linter contracts); this file imports none.
"""
