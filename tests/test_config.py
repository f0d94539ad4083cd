"""Configuration: defaults -> elastic.toml -> seed env names -> ELASTIC_* env -> flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from elastic import config
from elastic.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "elastic.toml"
    path.write_text(text)
    return path


def test_defaults_put_the_database_beside_the_config_file(tmp_path: Path) -> None:
    settings = config.load(write(tmp_path, ""), environ={})
    assert settings.database_url == f"sqlite:///{tmp_path.resolve()}/elastic.db"
    assert (settings.max_task_retries, settings.worker_timeout_seconds) == (3, 60.0)


def test_each_later_source_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "max_task_retries = 5\nworker_timeout_seconds = 10\nport = 6000\n")
    environ = {"MAX_TASK_RETRIES": "6", "ELASTIC_MAX_TASK_RETRIES": "7", "WORKER_TIMEOUT": "20"}
    settings = config.load(path, {"port": 7000, "host": None}, environ=environ)
    assert settings.max_task_retries == 7
    assert settings.worker_timeout_seconds == 20.0
    assert settings.port == 7000
    assert settings.host == "127.0.0.1"


def test_the_seed_environment_names_are_honoured(tmp_path: Path) -> None:
    environ = {"TASK_DISTRIBUTION_INTERVAL": "2.5", "RESULTS_STORAGE_PATH": "out/",
               "LOG_LEVEL": "debug", "ELASTIC_SERVER": "http://10.0.0.1:5000"}
    settings = config.load(write(tmp_path, ""), environ=environ)
    assert settings.task_distribution_interval_seconds == 2.5
    assert settings.results_path == "out/"
    assert settings.log_level == "DEBUG"
    assert settings.server_url == "http://10.0.0.1:5000"


@pytest.mark.parametrize(("text", "environ", "words"), [
    ("max_task_retries = -1\n", {}, ["max_task_retries", "elastic.toml", "whole number"]),
    ("", {"WORKER_TIMEOUT": "soon"}, ["worker_timeout_seconds", "WORKER_TIMEOUT", "seconds"]),
    ("colour = 'red'\n", {}, ["colour", "known key"]),
    ("port = 99999\n", {}, ["port", "0..65535"]),
    ("memory_limit_mb = 0.5\n", {}, ["memory_limit_mb", "megabytes >= 1.0"]),
    ("this is not toml", {}, ["valid TOML"]),
])
def test_a_bad_value_names_the_key_its_source_and_what_is_wanted(
        tmp_path: Path, text: str, environ: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(write(tmp_path, text), environ=environ)
    assert caught.value.exit_code == 2
    for word in words:
        assert word in caught.value.message


def test_a_bad_token_value_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(write(tmp_path, "token = 5\n"), environ={})
    assert "<hidden>" in caught.value.message


def test_the_checked_in_elastic_toml_loads_and_documents_every_key() -> None:
    path = Path(__file__).parent.parent / "elastic.toml"
    assert config.load(path, environ={}).port == 5000
    text = path.read_text()
    for key in config.CONVERTERS:
        assert f"# {key}" in text or f"[{key}." in text or f"# [{key}." in text, key
