"""load_settings: environment in, validated Settings out, or a message naming the bad variable."""

from __future__ import annotations

import pytest

from internal import config
from internal.config import DEV_CORS_ORIGINS, SETTING_VARIABLES, ConfigError, Settings, load_settings, unknown_variables


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = load_settings({})

    assert settings == Settings()
    assert (settings.grpc_port, settings.http_port) == (50051, 8080)
    assert settings.database_url is None
    assert settings.cors_origins == DEV_CORS_ORIGINS
    assert "http://localhost:5173" in settings.cors_origins
    assert settings.max_request_bytes == 4 * 1024 * 1024


@pytest.mark.parametrize("value", ["none", "", " NONE "])
def test_cors_can_be_switched_off_entirely(value: str) -> None:
    assert load_settings({"ALTALUNE_CORS_ORIGINS": value}).cors_origins == ()


def test_values_from_the_environment_are_parsed() -> None:
    settings = load_settings(
        {
            "ALTALUNE_GRPC_PORT": "6000",
            "ALTALUNE_HTTP_PORT": "0",
            "DATABASE_URL": "postgresql://app@db/altalune",
            "ALTALUNE_CORS_ORIGINS": "https://console.example.com/, http://localhost:5173",
            "ALTALUNE_LOG_FORMAT": "json",
            "ALTALUNE_SHUTDOWN_GRACE_S": "2.5",
            "ALTALUNE_DB_POOL_MIN": "1",
            "ALTALUNE_DB_POOL_MAX": "4",
        }
    )

    assert (settings.grpc_port, settings.http_port) == (6000, 0)
    assert settings.database_url == "postgresql://app@db/altalune"
    assert settings.cors_origins == ("https://console.example.com", "http://localhost:5173")
    assert settings.log_format == "json"
    assert settings.shutdown_grace_s == 2.5
    assert (settings.pool_min_size, settings.pool_max_size) == (1, 4)


def test_empty_values_mean_the_default() -> None:
    assert load_settings({"ALTALUNE_HTTP_PORT": "", "DATABASE_URL": ""}) == Settings()


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"ALTALUNE_HTTP_PORT": "70000"}, "ALTALUNE_HTTP_PORT"),
        ({"ALTALUNE_HTTP_PORT": "-1"}, "ALTALUNE_HTTP_PORT"),
        ({"ALTALUNE_GRPC_PORT": "http"}, "ALTALUNE_GRPC_PORT"),
        ({"ALTALUNE_GRPC_PORT": "50051.5"}, "ALTALUNE_GRPC_PORT"),
        ({"ALTALUNE_CORS_ORIGINS": "*"}, "ALTALUNE_CORS_ORIGINS"),
        ({"ALTALUNE_CORS_ORIGINS": "https://ok.example, *"}, "ALTALUNE_CORS_ORIGINS"),
        ({"ALTALUNE_CORS_ORIGINS": "console.example.com"}, "ALTALUNE_CORS_ORIGINS"),
        ({"DATABASE_URL": "mysql://root@db/app"}, "DATABASE_URL"),
        ({"DATABASE_URL": "db.internal:5432"}, "DATABASE_URL"),
        ({"ALTALUNE_LOG_FORMAT": "xml"}, "ALTALUNE_LOG_FORMAT"),
        ({"ALTALUNE_LOG_LEVEL": "verbose"}, "ALTALUNE_LOG_LEVEL"),
        ({"ALTALUNE_MAX_DEADLINE_MS": "5"}, "ALTALUNE_MAX_DEADLINE_MS"),
        ({"ALTALUNE_SHUTDOWN_GRACE_S": "soon"}, "ALTALUNE_SHUTDOWN_GRACE_S"),
        ({"ALTALUNE_REAPER_INTERVAL_S": "0"}, "ALTALUNE_REAPER_INTERVAL_S"),
        ({"ALTALUNE_DB_POOL_MIN": "5", "ALTALUNE_DB_POOL_MAX": "2"}, "ALTALUNE_DB_POOL_MAX"),
    ],
)
def test_a_bad_value_is_rejected_with_a_message_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(env)


def test_the_message_for_a_bad_port_shows_the_allowed_range_and_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"ALTALUNE_HTTP_PORT": "70000"})

    assert str(caught.value) == "ALTALUNE_HTTP_PORT must be between 0 and 65535, got 70000"


def test_a_rejected_database_url_is_not_echoed_in_the_message() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"DATABASE_URL": "mysql://root:hunter2@db/app"})

    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("url", ["postgres://u@h/db", "postgresql://u:p@h:5433/db?sslmode=require"])
def test_both_postgres_url_schemes_are_accepted(url: str) -> None:
    assert load_settings({"DATABASE_URL": url}).database_url == url


def test_a_misspelled_setting_is_named_with_the_closest_real_one() -> None:
    env = {
        "ALTALUNE_WORKRS": "2",
        "ALTALUNE_HTTP_PORT": "8081",
        "ALTALUNE_TOKEN": "eyJ...",  # a client's variable, kept in the same shell
        "ALTALUNE_TEST_PG_KEEP": "1",
        "ALTALUNE_FROBNICATE": "yes",
        "PATH": "/usr/bin",
    }

    assert unknown_variables(env) == [("ALTALUNE_FROBNICATE", None), ("ALTALUNE_WORKRS", "ALTALUNE_WORKERS")]


def test_every_variable_the_settings_read_counts_as_known() -> None:
    read = {name: "" for name in SETTING_VARIABLES}
    assert unknown_variables(read) == []


def test_the_default_number_of_workers_is_the_cores_up_to_eight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "available_cores", lambda: 2)
    assert load_settings({}).workers == 2
    monkeypatch.setattr(config, "available_cores", lambda: 64)
    assert load_settings({}).workers == 8
    assert load_settings({"ALTALUNE_WORKERS": "16"}).workers == 16
