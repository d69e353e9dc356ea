"""Webhooks in the pipeline file, and the generated part of docs/webhooks.md."""

from __future__ import annotations

import pytest

from pipeline.config import parse_config
from pipeline.errors import ConfigError
from pipeline.event_types import EventType
from pipeline.notify.payload_examples import docs_section, example_payloads
from pipeline.notify.payloads import ProcessedPayload
from tests.helpers import REPO

BASE = """
version: 1
rules:
  - name: images
    bucket: media
    callback: true
    functions: [{function: thumbnail}]
"""


def test_webhooks_and_callbacks_parse() -> None:
    config = parse_config(
        BASE
        + """
webhooks:
  - id: shop
    url: https://shop.example.com/hooks
    secret_env: SHOP_SECRET
    events: [object.processed]
    prefix: uploads/
callbacks:
  metadata_key: notify-url
""",
        "p.yaml",
    )
    [hook] = config.webhooks
    assert hook.events == [EventType.OBJECT_PROCESSED] and hook.secret_envs() == ["SHOP_SECRET"]
    assert config.rules[0].callback and config.callbacks.metadata_key == "notify-url"
    assert config.callbacks.events == [EventType.OBJECT_PROCESSED, EventType.OBJECT_REJECTED]


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("webhooks: [{id: a, url: 'https://x.example/', events: [object.done]}]", "webhooks[0].events[0]"),
        ("webhooks: [{id: a, url: 'ftp://x.example/'}]", "webhooks[0].url"),
        ("webhooks: [{id: a, url: 'https://x/'}, {id: a, url: 'https://y/'}]", "unique"),
        ("webhooks: [{id: 'Bad Id', url: 'https://x/'}]", "webhooks[0].id"),
    ],
)
def test_bad_webhook_config_names_the_path(snippet: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(BASE + snippet, "p.yaml")


def test_docs_show_the_generated_examples_and_schema() -> None:
    doc = (REPO / "docs" / "webhooks.md").read_text()
    assert docs_section() in doc, "docs/webhooks.md is stale: paste `pipeline webhooks schema --markdown`"


def test_examples_are_valid_payloads() -> None:
    examples = example_payloads()
    assert set(examples) == {e.value for e in EventType}
    processed = examples["object.processed"]
    assert isinstance(processed, ProcessedPayload)
    assert not processed.data.succeeded and len(processed.data.failures) == 1
    assert len(processed.data.outputs) == 2


def test_the_readme_pipeline_file_is_valid() -> None:
    from pipeline.registry import build_pipeline

    readme = (REPO / "README.md").read_text()
    block = next(b for b in readme.split("```yaml\n")[1:] if b.startswith("version: 1"))
    config = parse_config(block.split("```", 1)[0], "README.md")
    assert config.webhooks[0].id == "shop" and config.rules[0].callback
    build_pipeline(config, "README.md")  # function params and the user function resolve too
