from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import BUILTIN_NAME, load_config, parse_config
from pipeline.errors import ConfigError
from pipeline.registry import build_pipeline, load_pipeline
from pipeline.settings import Settings
from tests.helpers import REPO


def test_builtin_default_equals_the_sample_file() -> None:
    builtin = (REPO / "pipeline" / "default_pipeline.yaml").read_text()
    assert (REPO / "samples" / "pipeline.yaml").read_text() == builtin
    config, source = load_config(None)
    assert source == BUILTIN_NAME
    assert config.watched_buckets() == ["media"]
    assert config.rules[0].prefix == "uploads/"
    assert config.outputs.prefix == "derived/"


def test_sample_file_loads_through_settings(tmp_path: Path) -> None:
    pipeline = load_pipeline(Settings(config=REPO / "samples" / "pipeline.yaml", data_dir=tmp_path))
    assert "thumbnail" in pipeline.functions
    assert pipeline.queues() == ["fn.copy", "fn.filter", "fn.screen", "fn.thumbnail", "fn.transcode"]


def errors_for(text: str, tmp_path: Path) -> str:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config, source = load_config(path)
        build_pipeline(config, source)
    message = str(info.value)
    assert str(path) in message  # every error names the file
    return message


RULE = "rules:\n  - name: r\n    bucket: media\n    functions:\n      - function: {fn}\n        params: {params}\n"


def test_unknown_top_level_key(tmp_path: Path) -> None:
    assert "rulez: Extra inputs are not permitted" in errors_for("rulez: []\n", tmp_path)


def test_missing_field_names_the_path(tmp_path: Path) -> None:
    message = errors_for("rules:\n  - name: r\n    functions: [{function: thumbnail}]\n", tmp_path)
    assert "rules[0].bucket: Field required" in message


def test_unknown_function_lists_known_ones(tmp_path: Path) -> None:
    message = errors_for(RULE.format(fn="thumbnale", params="{}"), tmp_path)
    assert "rules[0] (r).functions[0].function: unknown function 'thumbnale'" in message
    assert "known: copy, filter, screen, thumbnail, transcode" in message


def test_bad_params_fail_at_load_naming_rule_step_and_parameter(tmp_path: Path) -> None:
    message = errors_for(RULE.format(fn="thumbnail", params="{sizes: [100000]}"), tmp_path)
    assert "rules[0] (r).functions[0].params.sizes" in message and "8..8192" in message
    message = errors_for(RULE.format(fn="thumbnail", params="{colour: red}"), tmp_path)
    assert "params.colour: Extra inputs are not permitted" in message


def test_bad_event_pattern(tmp_path: Path) -> None:
    text = "rules:\n  - {name: r, bucket: m, events: [ObjectCreated], functions: [{function: thumbnail}]}\n"
    assert "rules[0].events" in errors_for(text, tmp_path)


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    assert "not valid YAML" in errors_for("rules: [\n", tmp_path)
    with pytest.raises(ConfigError, match="cannot read the pipeline file"):
        load_config(tmp_path / "missing.yaml")


def test_user_function_by_dotted_path(tmp_path: Path) -> None:
    text = "functions:\n  invert:\n    module: samples.custom_function\n" + RULE.format(
        fn="invert", params="{}"
    )
    config = parse_config(text, "x.yaml")
    pipeline = build_pipeline(config, "x.yaml")
    assert pipeline.function("invert").accepts == ("image/*",)
    with pytest.raises(ConfigError, match="cannot import function module"):
        build_pipeline(parse_config("functions:\n  x:\n    module: no.such.module\n", "x.yaml"), "x.yaml")


def test_unknown_preset_and_bad_template(tmp_path: Path) -> None:
    text = "rules:\n  - {name: v, bucket: m, functions: [{function: transcode, preset: huge}]}\n"
    message = errors_for(text, tmp_path)
    assert "rules[0] (v).functions[0].preset: unknown preset 'huge'" in message and "hls" in message
    text = "rules:\n  - {name: v, bucket: m, functions: [{function: copy, output: {template: '../{key}'}}]}\n"
    assert "rules[0].functions[0].output.template" in errors_for(text, tmp_path)
    text = "rules:\n  - {name: v, bucket: m, functions: [{function: copy, output: {template: '{key}/{size}'}}]}\n"
    assert "unknown template field" in errors_for(text, tmp_path)
    text = "presets:\n  nosuch: {a: {}}\n"
    assert "presets.nosuch: no function of that name" in errors_for(text, tmp_path)


def test_per_function_memory_reserved_concurrency_and_pause(tmp_path: Path) -> None:
    from pipeline.queue.worker import max_memory_per_child_kib

    text = (
        "functions:\n  thumbnail: {memory_mb: 256, paused: true}\n"
        "  filter: {memory_mb: 768, reserved_concurrency: 0}\n  transcode: {reserved_concurrency: 3}\n"
    )
    config = parse_config(text, "p.yaml")
    assert config.held_by_config() == {"thumbnail", "filter"}
    assert config.function_settings("transcode").takes_work()
    # A worker serving several functions recycles a process at the largest hint among them.
    assert max_memory_per_child_kib(config, ["thumbnail", "filter"]) == 768 * 1024
    assert max_memory_per_child_kib(config, ["transcode", "copy"]) is None
    message = errors_for("functions:\n  thumbnail: {memory_mb: 8, reserved_concurrency: -1}\n", tmp_path)
    assert "functions.thumbnail.memory_mb: Input should be greater than or equal to 64" in message
    assert "functions.thumbnail.reserved_concurrency: Input should be greater than or equal to 0" in message


def test_an_asset_must_be_an_object_of_the_store() -> None:
    text = """
rules:
  - name: marked
    bucket: media
    functions:
      - function: filter
        params: {steps: [{op: watermark, image: /etc/passwd}]}
"""
    with pytest.raises(
        ConfigError, match=r"rules\[0\] \(marked\)\.functions\[0\]\.params: '/etc/passwd' must be"
    ):
        build_pipeline(parse_config(text, "p.yaml"), "p.yaml")


@pytest.mark.parametrize(
    ("params", "refusal"),
    [
        (
            "{max_pixels: 999999999}",
            r"params\.max_pixels: 1e\+09 is above the ceiling of 5e\+07 \(screening\.max_pixels\)",
        ),
        ("{fit: cover, aspect: '0:1'}", r"params\.aspect"),
    ],
)
def test_rule_params_above_a_ceiling_or_with_a_zero_ratio_do_not_load(params: str, refusal: str) -> None:
    text = f"rules:\n  - {{name: t, bucket: media, functions: [{{function: thumbnail, params: {params}}}]}}\n"
    with pytest.raises(ConfigError, match=refusal):
        build_pipeline(parse_config(text, "p.yaml"), "p.yaml")


def test_a_lower_ceiling_lowers_the_functions_defaults() -> None:
    from pipeline.events import ObjectEvent
    from pipeline.routing import route

    text = "screening: {max_pixels: 1000000}\nrules:\n  - {name: t, bucket: media, functions: [{function: thumbnail}]}\n"
    pipeline = build_pipeline(parse_config(text, "p.yaml"), "p.yaml")
    event = ObjectEvent(
        source="api",
        event_name="s3:ObjectCreated:Put",
        bucket="media",
        key="a.jpg",
        content_type="image/jpeg",
    )
    [plan] = route(pipeline, event)
    assert plan.params["max_pixels"] == 1_000_000


def test_a_retry_policy_per_function_with_todays_behaviour_as_the_default() -> None:
    import random

    from functions.errors import FunctionError
    from pipeline.retry_policy import RetryPolicy

    config = parse_config(
        "functions:\n  thumbnail: {max_attempts: 4}\n"
        "  filter: {max_attempts: 4, retry: {max_attempts: 2, initial: 1, multiplier: 3, max_interval: 5,"
        " jitter: false, non_retryable: [OSError]}}\n",
        "t.yaml",
    )
    default = config.retry_policy("copy")
    assert default == RetryPolicy() and config.max_attempts_for("copy") == config.limits.max_attempts
    # As before: 2 s, doubling, at most 300 s, full jitter (a wait between 0 and that).
    assert [default.interval(n) for n in (1, 2, 3, 9, 20)] == [2, 4, 8, 300, 300]
    rng = random.Random(1)
    assert all(0 <= default.delay(3, rng) <= 8 for _ in range(50))
    assert config.max_attempts_for("thumbnail") == 4
    policy = config.retry_policy("filter")
    assert config.max_attempts_for("filter") == 2  # the policy's own wins
    assert [policy.delay(n) for n in (1, 2, 3)] == [1, 3, 5]
    assert not policy.retries(FileNotFoundError("gone"))  # an OSError, by its base class
    assert policy.retries(RuntimeError("a bug"))
    assert not policy.retries(FunctionError("bad input")) and policy.retries(
        FunctionError("away", permanent=False)
    )
    assert policy.describe(2) == "2 attempts, 1 s x3 up to 5 s; never retried: OSError"
    assert default.describe(3) == "3 attempts, 2 s x2 up to 300 s, full jitter"
    with pytest.raises(ConfigError, match=r"functions\.copy\.retry\.multiplier"):
        parse_config("functions:\n  copy: {retry: {multiplier: 0.5}}\n", "t.yaml")
