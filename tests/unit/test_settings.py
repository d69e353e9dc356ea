from __future__ import annotations

import warnings

import pytest

from pipeline.settings import Settings, is_loopback
from pipeline.settings_doc import markdown_table
from tests.helpers import REPO


def test_environment_prefix_and_s3_grouping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT", "https://s3.example.com:9000")
    monkeypatch.setenv("PIPELINE_S3_ACCESS_KEY", "ak")
    monkeypatch.setenv("PIPELINE_S3_SECRET_KEY", "sk")
    monkeypatch.setenv("PIPELINE_GATEWAY_PORT", "9001")
    monkeypatch.setenv("PIPELINE_SNS_TOPICS", '["arn:aws:sns:eu-central-1:1:t"]')
    settings = Settings()
    s3 = settings.s3()
    assert s3 is not None
    assert (s3.endpoint, s3.secure, s3.access_key, s3.secret_key) == ("s3.example.com:9000", True, "ak", "sk")
    assert settings.gateway_port == 9001
    assert settings.sns_topics == ["arn:aws:sns:eu-central-1:1:t"]
    assert "sk" not in repr(settings)  # secrets never printed


def test_defaults_are_the_embedded_development_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("PIPELINE_"):
            monkeypatch.delenv(name)
    settings = Settings()
    assert settings.s3() is None
    assert settings.redis_url is None  # the CLI starts an embedded Redis
    assert settings.dev_mode
    assert settings.gateway_port == 8000


def test_explicit_insecure_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT", "127.0.0.1:9000")
    monkeypatch.setenv("PIPELINE_S3_SECURE", "false")
    s3 = Settings().s3()
    assert s3 is not None and not s3.secure and s3.endpoint == "127.0.0.1:9000"


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.com")


def test_readme_configuration_table_is_generated_from_settings() -> None:
    readme = (REPO / "README.md").read_text()
    assert markdown_table() in readme, "README is stale: paste the output of `pipeline settings --markdown`"


def test_binding_beyond_loopback_needs_both_tokens() -> None:
    dev = Settings(redis_url=None)
    assert dev.bind_refusal("127.0.0.1") is None and dev.bind_refusal("::1") is None
    assert "PIPELINE_EVENTS_TOKEN is unset" in (dev.bind_refusal("0.0.0.0") or "")
    half = Settings(events_token="w")
    assert "PIPELINE_API_TOKEN is unset" in (half.bind_refusal("0.0.0.0") or "")
    assert Settings(events_token="w", api_token="a").bind_refusal("0.0.0.0") is None


def test_the_old_name_of_the_events_token_still_works_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPELINE_WEBHOOK_TOKEN", "old")
    with pytest.warns(FutureWarning, match="PIPELINE_EVENTS_TOKEN"):
        old = Settings()
    assert old.events_token is not None and old.events_token.get_secret_value() == "old"
    monkeypatch.setenv("PIPELINE_EVENTS_TOKEN", "new")  # the new name wins, and nothing is said
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = Settings()
    assert new.events_token is not None and new.events_token.get_secret_value() == "new"


def test_a_sentinel_url_with_several_hosts_prints_without_its_password() -> None:
    from pipeline.settings import redacted

    url = "redis+sentinel://:t0p-secret@sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/main/0"
    assert redacted(url) == "redis+sentinel://:***@sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/main/0"
    assert redacted("redis://user:pw@[::1]:6379/0") == "redis://user:***@[::1]:6379/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_celery_censors_the_redis_url_it_keeps() -> None:
    from pipeline.config import parse_config
    from pipeline.queue.app import create_celery
    from pipeline.registry import build_pipeline
    from tests.helpers import THUMBNAILS_ONLY

    pipeline = build_pipeline(parse_config(THUMBNAILS_ONLY, "t.yaml"), "t.yaml")
    for url in (
        "redis://:t0p-secret@127.0.0.1:6379/0",
        "redis+sentinel://:t0p-secret@s1:26379,s2:26379/main/0",
    ):
        table = create_celery(url, pipeline).conf.table(with_defaults=True, censored=True)
        assert "t0p-secret" not in repr(table), [k for k, v in table.items() if "t0p-secret" in repr(v)]
