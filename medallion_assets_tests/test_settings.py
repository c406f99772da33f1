"""`Settings.from_env`: every variable's default, how each is read, what an unusable value does,
and how a secret from the environment reaches the resources (by its variable's name, never its
value)."""

from __future__ import annotations

import json

import pytest
from dagster import EnvVar

from medallion_assets.definitions import build_defs
from medallion_assets.settings import Settings, SettingsError

WEBHOOK = "https://hooks.example.com/services/T0001/B0002/not-to-be-shown"
PASSWORD = "hunter2-not-to-be-shown"
CONNECT_TOKEN = "connect-token-not-to-be-shown"
CONNECT_WITH_TOKEN = f"sc://spark.example:443/;use_ssl=true;token={CONNECT_TOKEN}"

# Every variable, a value a deployment might give it, and the setting that value becomes.
PARSED = [
    ("MEDALLION_LANDING_DIR", "/srv/landing", "landing_dir", "/srv/landing"),
    ("MEDALLION_WAREHOUSE_DIR", "s3://bucket/warehouse", "warehouse_dir", "s3://bucket/warehouse"),
    ("MEDALLION_PARQUET_CODEC", "ZSTD", "parquet_codec", "zstd"),
    ("MEDALLION_SPARK_MASTER", "spark://spark:7077", "spark_master", "spark://spark:7077"),
    ("MEDALLION_SPARK_REMOTE", "sc://127.0.0.1:15002", "spark_remote", "sc://127.0.0.1:15002"),
    ("MEDALLION_SPARK_CLASS_ARCHIVE", "off", "spark_class_archive", "off"),
    ("JAVA_HOME", "/usr/lib/jvm/java-17", "java_home", "/usr/lib/jvm/java-17"),
    ("MEDALLION_REJECTED_WARN_PERCENT", "1.5", "rejected_warn_percent", 1.5),
    ("MEDALLION_REJECTED_FAIL_PERCENT", "12.5", "rejected_fail_percent", 12.5),
    ("MEDALLION_VOLUME_WARN_PERCENT", "30", "volume_warn_percent", 30.0),
    ("MEDALLION_VOLUME_FAIL_DROP_PERCENT", "90", "volume_fail_drop_percent", 90.0),
    ("MEDALLION_REVENUE_CHANGE_NOTICE_PERCENT", "1.5", "revenue_change_notice_percent", 1.5),
    ("MEDALLION_SENSOR_INTERVAL_SECONDS", "30", "sensor_interval_seconds", 30),
    ("MEDALLION_SENSOR_SETTLE_SECONDS", "0.5", "sensor_settle_seconds", 0.5),
    ("MEDALLION_MONTH_DEADLINE", "15T23:30", "month_deadline", "15T23:30"),
    ("MEDALLION_FIRST_MONTH", "2020-01", "first_month", "2020-01"),
    ("MEDALLION_ALERT_WEBHOOK_URL", WEBHOOK, "alert_webhook_url", WEBHOOK),
    ("MEDALLION_WEBSERVER_URL", "https://dagster.internal", "webserver_url",
     "https://dagster.internal"),
    ("MEDALLION_SMTP_HOST", "smtp.example.com", "smtp_host", "smtp.example.com"),
    ("MEDALLION_SMTP_TO", "a@example.com, b@example.com", "smtp_to",
     "a@example.com, b@example.com"),
    ("MEDALLION_SMTP_PORT", "587", "smtp_port", 587),
    ("MEDALLION_SMTP_SSL", "true", "smtp_ssl", True),
    ("MEDALLION_SMTP_FROM", "medallion@example.com", "smtp_from", "medallion@example.com"),
    ("MEDALLION_SMTP_USER", "alerts", "smtp_user", "alerts"),
    ("MEDALLION_SMTP_PASSWORD", PASSWORD, "smtp_password", PASSWORD),
    ("MEDALLION_ALERT_RETRY_SECONDS", "15", "alert_retry_seconds", 15),
    ("MEDALLION_ALERT_RETRY_HOURS", "1.5", "alert_retry_hours", 1.5),
    ("DAGSTER_HOME", "/srv/dagster", "dagster_home", "/srv/dagster"),
]


def test_with_no_variable_set_every_setting_has_its_default():
    settings = Settings.from_env({})

    assert settings == Settings()
    assert (settings.landing_dir, settings.warehouse_dir) == ("data/landing", "data/warehouse")
    assert settings.parquet_codec == "snappy"
    assert (settings.spark_master, settings.spark_remote) == ("local[*]", None)
    assert (settings.rejected_warn_percent, settings.rejected_fail_percent) == (0.0, 5.0)
    # Below the daemon's 5 s loop, so that the landing sensor ticks at every loop.
    assert settings.sensor_interval_seconds == 3
    assert settings.sensor_settle_seconds == 5.0
    # The 2nd of the following month at 06:00 UTC; the months watched start after the deadline
    # sensor's first tick.
    assert (settings.month_deadline, settings.first_month) == ("2T06:00", None)
    assert settings.webserver_url == "http://127.0.0.1:3000"
    assert settings.alert_webhook_url is None and settings.smtp_host is None
    assert settings.smtp_ssl is False
    assert settings.dagster_home == ".dagster_home"


def test_every_setting_is_read_from_its_own_variable():
    """The table below covers every setting: one added without a variable (or without a line
    here) fails this test."""
    assert sorted(field for _, _, field, _ in PARSED) == sorted(Settings.model_fields)
    assert [variable for variable, _, _ in Settings.variables()] == [
        Settings.env_name(field) for field in Settings.model_fields
    ]
    assert {variable for variable, _, _, _ in PARSED} == {v for v, _, _ in Settings.variables()}


@pytest.mark.parametrize(
    "variable, raw, field, expected", PARSED, ids=[variable for variable, *_ in PARSED]
)
def test_a_variable_sets_its_setting_and_only_that_one(variable, raw, field, expected):
    settings = Settings.from_env({variable: raw})

    assert getattr(settings, field) == expected
    assert Settings.env_name(field) == variable
    others = {name for name in Settings.model_fields if name != field}
    assert {name: getattr(settings, name) for name in others} == {
        name: getattr(Settings(), name) for name in others
    }


@pytest.mark.parametrize("raw", ["", "   "])
def test_an_empty_variable_counts_as_unset(raw):
    assert Settings.from_env({"MEDALLION_SENSOR_SETTLE_SECONDS": raw}).sensor_settle_seconds == 5


def test_without_a_mapping_the_process_environment_is_read(monkeypatch):
    # The one place that reads the process environment, so the one test that sets it.
    monkeypatch.setenv("MEDALLION_SENSOR_INTERVAL_SECONDS", "17")
    assert Settings.from_env().sensor_interval_seconds == 17
    assert Settings.from_env({}).sensor_interval_seconds == 3


@pytest.mark.parametrize(
    "variable, raw, why",
    [
        ("MEDALLION_SENSOR_INTERVAL_SECONDS", "soon", "valid integer"),
        ("MEDALLION_SENSOR_INTERVAL_SECONDS", "0", "greater than or equal to 1"),
        ("MEDALLION_SENSOR_INTERVAL_SECONDS", "2.5", "valid integer"),
        ("MEDALLION_SENSOR_SETTLE_SECONDS", "later", "valid number"),
        ("MEDALLION_SENSOR_SETTLE_SECONDS", "-3", "greater than or equal to 0"),
        ("MEDALLION_SENSOR_SETTLE_SECONDS", "inf", "finite number"),
        ("MEDALLION_REJECTED_FAIL_PERCENT", "101", "less than or equal to 100"),
        ("MEDALLION_REJECTED_WARN_PERCENT", "-1", "greater than or equal to 0"),
        ("MEDALLION_VOLUME_FAIL_DROP_PERCENT", "120", "less than or equal to 100"),
        ("MEDALLION_VOLUME_WARN_PERCENT", "-5", "greater than or equal to 0"),
        ("MEDALLION_REVENUE_CHANGE_NOTICE_PERCENT", "some", "valid number"),
        ("MEDALLION_SMTP_PORT", "smtp", "valid integer"),
        ("MEDALLION_SMTP_PORT", "70000", "less than or equal to 65535"),
        ("MEDALLION_SMTP_SSL", "maybe", "valid boolean"),
        ("MEDALLION_WEBSERVER_URL", "dagster.internal:3000", "http:// or https:// URL"),
        ("MEDALLION_PARQUET_CODEC", "brotli", "expected one of snappy, zstd, gzip"),
        ("MEDALLION_ALERT_RETRY_SECONDS", "0", "greater than or equal to 1"),
        ("MEDALLION_ALERT_RETRY_SECONDS", "1m", "valid integer"),
        ("MEDALLION_ALERT_RETRY_HOURS", "0", "greater than 0"),
        ("MEDALLION_ALERT_RETRY_HOURS", "nan", "finite number"),
        ("MEDALLION_MONTH_DEADLINE", "2 06:00", "expected DTHH:MM"),
        ("MEDALLION_MONTH_DEADLINE", "31T06:00", "the day must be 1 to 28"),
        ("MEDALLION_MONTH_DEADLINE", "2T24:00", "00:00 to 23:59"),
        ("MEDALLION_FIRST_MONTH", "2019-09", "the first partition is 2019-10"),
        ("MEDALLION_FIRST_MONTH", "2020-1", "expected YYYY-MM"),
    ],
)
def test_an_unusable_value_stops_loading_with_an_error_naming_the_variable(variable, raw, why):
    with pytest.raises(SettingsError) as error:
        Settings.from_env({variable: raw})

    message = str(error.value)
    assert f"${variable}={raw!r}" in message
    assert why in message


@pytest.mark.parametrize(
    "url, why",
    [
        ("file:///srv/alerts/not-to-be-shown", "http:// or https:// URL, not file://"),
        ("ftp://hooks.example.com/not-to-be-shown", "http:// or https:// URL, not ftp://"),
        ("hooks.example.com/not-to-be-shown", "http:// or https:// URL"),
        ("https:///not-to-be-shown", "must name a host"),
    ],
)
def test_a_webhook_that_is_not_an_http_url_is_refused_without_repeating_it(url, why):
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"MEDALLION_ALERT_WEBHOOK_URL": url})

    message = str(error.value)
    assert "$MEDALLION_ALERT_WEBHOOK_URL" in message and why in message
    assert "not-to-be-shown" not in message


def test_a_connect_endpoint_without_sc_is_refused_without_repeating_it():
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"MEDALLION_SPARK_REMOTE": "spark.example:443/;token=not-to-be-shown"})

    message = str(error.value)
    assert "$MEDALLION_SPARK_REMOTE" in message and "starts with sc://" in message
    assert "not-to-be-shown" not in message


def test_every_unusable_variable_is_named_at_once():
    with pytest.raises(SettingsError) as error:
        Settings.from_env(
            {"MEDALLION_SENSOR_INTERVAL_SECONDS": "0", "MEDALLION_SMTP_PORT": "0"}
        )
    assert "$MEDALLION_SENSOR_INTERVAL_SECONDS=" in str(error.value)
    assert "$MEDALLION_SMTP_PORT=" in str(error.value)


def test_a_warning_share_above_the_failing_share_names_both_variables():
    with pytest.raises(SettingsError) as error:
        Settings.from_env(
            {"MEDALLION_REJECTED_WARN_PERCENT": "10", "MEDALLION_REJECTED_FAIL_PERCENT": "5"}
        )
    assert str(error.value).endswith(
        "$MEDALLION_REJECTED_WARN_PERCENT (10) must not be above "
        "$MEDALLION_REJECTED_FAIL_PERCENT (5)"
    )


def resource_config(resource) -> dict:
    """A resource's configured values as Dagster serialises them for the UI's Resources page."""
    return json.loads(resource.get_resource_definition().config_schema.default_value_as_json_str)


def test_secrets_from_the_environment_reach_the_alert_resource_by_their_variables_name():
    settings = Settings.from_env(
        {
            "MEDALLION_ALERT_WEBHOOK_URL": WEBHOOK,
            "MEDALLION_SMTP_PASSWORD": PASSWORD,
            "MEDALLION_SMTP_HOST": "smtp.example.com",
            "MEDALLION_WEBSERVER_URL": "https://dagster.internal/",
            "MEDALLION_SPARK_REMOTE": CONNECT_WITH_TOKEN,
        }
    )
    defs = build_defs(settings)

    alerts = defs.resources["alerts"]
    assert isinstance(alerts.webhook_url, EnvVar)
    assert isinstance(alerts.smtp_password, EnvVar)
    config = resource_config(alerts)
    assert config["webhook_url"] == {"env": "MEDALLION_ALERT_WEBHOOK_URL"}
    assert config["smtp_password"] == {"env": "MEDALLION_SMTP_PASSWORD"}
    assert resource_config(defs.resources["spark"])["remote"] == {"env": "MEDALLION_SPARK_REMOTE"}
    # What is not a secret is shown as it is.
    assert config["smtp_host"] == "smtp.example.com"
    assert config["webserver_url"] == "https://dagster.internal"
    # No resource's configuration holds either value.
    for key, resource in defs.resources.items():
        shown = json.dumps(resource_config(resource))
        assert WEBHOOK not in shown and PASSWORD not in shown, key
        assert CONNECT_TOKEN not in shown, key


def test_a_secret_given_in_code_is_passed_as_it_is():
    """A test or a tool that builds `Settings` itself has no variable to name."""
    alerts = build_defs(Settings(alert_webhook_url=WEBHOOK)).resources["alerts"]
    assert not isinstance(alerts.webhook_url, EnvVar)
    assert resource_config(alerts)["webhook_url"] == WEBHOOK


def test_a_setting_says_whether_it_came_from_the_environment_or_its_default():
    settings = Settings.from_env({"MEDALLION_WEBSERVER_URL": "http://ui.example:8080"})
    assert settings.from_environment("webserver_url")
    assert not settings.from_environment("landing_dir")
    assert not Settings(webserver_url="http://ui.example:8080").from_environment("webserver_url")
