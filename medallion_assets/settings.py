"""Every setting of the project, in one place: its environment variable, default and meaning.

This is the only module that reads the environment. `Settings.from_env()` reads each variable
below once, checks it, and `medallion_assets.definitions.build_defs` hands the values to the
resources, sensors and alert channels as their configuration — which is why the Dagster UI
(*Deployment → Resources*) shows what a deployment runs with (``dg list defs`` lists the
resources by name only). Tests and tools build a `Settings` directly instead of patching the
environment.

A value that is set but unusable (``MEDALLION_SENSOR_SETTLE_SECONDS=soon``, an interval of 0, a
webhook that is not an http(s) URL) stops the code location from loading with a `SettingsError`
naming the variable: a typo in a deployment's environment is found when it starts, not when the
first month fails or the first alert is due. The message repeats the value, except a secret's.

Secrets (the webhook URL, the SMTP password) reach the resources as `dagster.EnvVar` when they
come from the environment, so the UI shows the variable's name, never its value.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from dagster import EnvVar
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from medallion_assets.partitions import FIRST_MONTH, parse_month_key

PREFIX = "MEDALLION_"


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def _setting(
    default: Any, env: str, meaning: str, *, secret: bool = False, **constraints: Any
) -> Any:
    extra = {"env": env, "secret": secret}
    return Field(default=default, description=meaning, json_schema_extra=extra, **constraints)


def _http_url(value: str | None, what: str) -> str | None:
    """``value`` if it is an http(s) URL with a host. The error names the scheme at most: the
    value may be a secret (a webhook's path is its key)."""
    if value is None:
        return None
    parts = urllib.parse.urlsplit(value)
    if parts.scheme.lower() not in {"http", "https"}:
        scheme = f"{parts.scheme}://" if parts.scheme else "a URL without a scheme"
        raise ValueError(f"{what} must be an http:// or https:// URL, not {scheme}")
    if not parts.hostname:
        raise ValueError(f"{what} must name a host")
    return value


# The codecs Spark's Parquet writer takes (``spark.sql.parquet.compression.codec``) and delta-rs
# reads; "none" is Spark's other name for uncompressed, brotli and lzo need codecs Spark does not
# ship.
PARQUET_CODECS = ("snappy", "zstd", "gzip", "lz4_raw", "uncompressed")


def parquet_codec(value: str) -> str:
    """``value`` in lower case if it is one of `PARQUET_CODECS`."""
    codec = value.strip().lower()
    if codec not in PARQUET_CODECS:
        raise ValueError(f"expected one of {', '.join(PARQUET_CODECS)}")
    return codec


_MONTH_DEADLINE_RE = re.compile(r"\A([0-9]{1,2})T([0-9]{2}):([0-9]{2})\Z")


def parse_month_deadline(value: str) -> tuple[int, int, int]:
    """(day, hour, minute) of a month deadline written ``DTHH:MM`` (``2T06:00``: the 2nd of the
    following month, 06:00 UTC). Days stop at 28 so that every month has the day; a ``T``
    rather than a space, so that the value needs no quoting in an env file."""
    match = _MONTH_DEADLINE_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(
            "expected DTHH:MM, the day of the following month and a UTC time (2T06:00)"
        )
    day, hour, minute = (int(part) for part in match.groups())
    if not 1 <= day <= 28:
        raise ValueError("the day must be 1 to 28, a day every month has")
    if hour > 23 or minute > 59:
        raise ValueError("the time must be 00:00 to 23:59")
    return day, hour, minute


class Settings(BaseModel):
    """What can be configured, each with a working default (`make run` needs none of them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # -- where the data is -----------------------------------------------------------------------
    landing_dir: str = _setting(
        "data/landing", "MEDALLION_LANDING_DIR",
        "Where monthly CSVs arrive (2019-Oct.csv, 2019-10.csv, optionally .gz); relative paths "
        "are taken from the working directory (the project root under make).",
    )
    warehouse_dir: str = _setting(
        "data/warehouse", "MEDALLION_WAREHOUSE_DIR",
        "Root of the Delta tables (a local path, or s3://, az://, gs:// with the warehouse "
        "resource's storage options).",
    )

    parquet_codec: str = _setting(
        "snappy", "MEDALLION_PARQUET_CODEC",
        "Parquet compression of the tables' files: snappy (Spark's default), zstd or gzip "
        "(smaller files, more CPU), lz4_raw, or uncompressed.",
    )

    # -- where Spark runs ------------------------------------------------------------------------
    spark_master: str = _setting(
        "local[*]", "MEDALLION_SPARK_MASTER",
        "Spark master of a run's own session (local[*], spark://host:7077, ...).",
    )
    spark_remote: str | None = _setting(
        None, "MEDALLION_SPARK_REMOTE",
        "A Spark Connect endpoint (sc://host:15002); when set, runs are its clients and "
        "MEDALLION_SPARK_MASTER is not used. make dev sets it to its warm local server. A "
        "secret: its parameters may carry a token (sc://host:443/;use_ssl=true;token=...), so "
        "logs and the UI show only sc://host:port.",
        secret=True,
    )
    spark_class_archive: str | None = _setting(
        None, "MEDALLION_SPARK_CLASS_ARCHIVE",
        "The Spark driver's class-data-sharing archive: unset for this environment's own "
        "(built by make spark-archive), a path for another, 'off' for none.",
    )
    java_home: str | None = _setting(
        None, "JAVA_HOME",
        "The Java that Spark runs (else java on the PATH); names the class archive it matches.",
    )

    # -- data quality ----------------------------------------------------------------------------
    rejected_warn_percent: float = _setting(
        0.0, "MEDALLION_REJECTED_WARN_PERCENT",
        "Bronze's rejected-share check WARNs above this share of a month's lines (percent).",
        ge=0, le=100, allow_inf_nan=False,
    )
    rejected_fail_percent: float = _setting(
        5.0, "MEDALLION_REJECTED_FAIL_PERCENT",
        "Bronze's rejected-share check fails (blocking silver and gold) above this share; not "
        "below the warning share.",
        ge=0, le=100, allow_inf_nan=False,
    )
    volume_warn_percent: float = _setting(
        50.0, "MEDALLION_VOLUME_WARN_PERCENT",
        "A month's accepted rows, and silver's purchase revenue, WARN when they deviate from the "
        "median of the months built before it by more than this (percent, either way).",
        ge=0, allow_inf_nan=False,
    )
    volume_fail_drop_percent: float = _setting(
        80.0, "MEDALLION_VOLUME_FAIL_DROP_PERCENT",
        "They fail (blocking what is built from them) when they fall below that median by more "
        "than this (percent, 0-100).",
        ge=0, le=100, allow_inf_nan=False,
    )
    revenue_change_notice_percent: float = _setting(
        0.1, "MEDALLION_REVENUE_CHANGE_NOTICE_PERCENT",
        "A rebuilt month whose total purchase revenue moves by more than this share (percent) "
        "sends one notice to the alert channels.",
        ge=0, allow_inf_nan=False,
    )

    # -- the landing sensor ----------------------------------------------------------------------
    sensor_interval_seconds: int = _setting(
        3, "MEDALLION_SENSOR_INTERVAL_SECONDS",
        "Minimum time between two looks at the landing directory (the daemon looks every 5 s; "
        "3 makes the sensor tick at each look); at least 1.",
        ge=1,
    )
    sensor_settle_seconds: float = _setting(
        5.0, "MEDALLION_SENSOR_SETTLE_SECONDS",
        "How long a file must stay unchanged (size and modification time) before its month runs; "
        "0 or more.",
        ge=0, allow_inf_nan=False,
    )

    # -- month deadlines (automation/deadlines.py) ------------------------------------------------
    month_deadline: str = _setting(
        "2T06:00", "MEDALLION_MONTH_DEADLINE",
        "When each month's data is due: day of the following month (1-28) and UTC time, DTHH:MM; "
        "past it, a month without gold fails its deadline check and alerts.",
    )
    first_month: str | None = _setting(
        None, "MEDALLION_FIRST_MONTH",
        "First month (YYYY-MM) whose deadline is watched; unset: the months whose deadline falls "
        "after the deadline sensor's first tick.",
    )

    # -- failure alerts --------------------------------------------------------------------------
    alert_webhook_url: str | None = _setting(
        None, "MEDALLION_ALERT_WEBHOOK_URL",
        "A Slack-compatible incoming webhook (http or https) that gets failed runs; a secret.",
        secret=True,
    )
    webserver_url: str = _setting(
        "http://127.0.0.1:3000", "MEDALLION_WEBSERVER_URL",
        "Base of the run links in alerts: where users open the Dagster UI.",
    )
    smtp_host: str | None = _setting(
        None, "MEDALLION_SMTP_HOST", "SMTP server for e-mail alerts (with MEDALLION_SMTP_TO)."
    )
    smtp_to: str | None = _setting(
        None, "MEDALLION_SMTP_TO", "Comma-separated recipients of e-mail alerts."
    )
    smtp_port: int | None = _setting(
        None, "MEDALLION_SMTP_PORT", "SMTP port; default 25, or 465 with MEDALLION_SMTP_SSL.",
        ge=1, le=65535,
    )
    smtp_ssl: bool = _setting(
        False, "MEDALLION_SMTP_SSL",
        "true: TLS from the first byte (SMTPS); otherwise STARTTLS whenever the server offers it.",
    )
    smtp_from: str | None = _setting(
        None, "MEDALLION_SMTP_FROM", "Sender address; default medallion-assets@<this host>."
    )
    smtp_user: str | None = _setting(
        None, "MEDALLION_SMTP_USER", "SMTP login; sent only over an encrypted connection."
    )
    smtp_password: str | None = _setting(
        None, "MEDALLION_SMTP_PASSWORD", "SMTP password; a secret.", secret=True
    )
    alert_retry_seconds: int = _setting(
        60, "MEDALLION_ALERT_RETRY_SECONDS",
        "Wait before retrying an alert that a channel did not accept, doubled after each failed "
        "retry up to an hour; the retry sensor looks this often. At least 1.",
        ge=1,
    )
    alert_retry_hours: float = _setting(
        24.0, "MEDALLION_ALERT_RETRY_HOURS",
        "How long after a run failed its alert is retried; then it is given up, as an error in "
        "the retry sensor's tick. More than 0.",
        gt=0, allow_inf_nan=False,
    )

    # -- tools (make dev) ------------------------------------------------------------------------
    dagster_home: str = _setting(
        ".dagster_home", "DAGSTER_HOME",
        "The Dagster instance's directory (make sets it to the project's .dagster_home).",
    )

    # Names of the fields whose value came from the environment (see `resource_value`).
    _from_env: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("spark_remote")
    @classmethod
    def _connect_endpoint(cls, value: str | None) -> str | None:
        # Caught here rather than by the first run's Connect client, whose error names neither
        # the variable nor what it expected.
        if value is not None and not value.startswith("sc://"):
            raise ValueError("a Spark Connect endpoint starts with sc:// (sc://host:15002)")
        return value

    @field_validator("parquet_codec")
    @classmethod
    def _codec(cls, value: str) -> str:
        # Spark would only refuse it at the first write, after bronze's parse.
        return parquet_codec(value)

    @field_validator("alert_webhook_url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        # Anything else (file://, a bare path) would be handed to urllib at the first failure.
        return _http_url(value, "the webhook")

    @field_validator("webserver_url")
    @classmethod
    def _webserver(cls, value: str) -> str:
        # The base of the links in alerts: a link a reader cannot open is no link.
        return _http_url(value, "the webserver URL")

    @field_validator("month_deadline")
    @classmethod
    def _deadline(cls, value: str) -> str:
        parse_month_deadline(value)
        return value

    @field_validator("first_month")
    @classmethod
    def _first_month(cls, value: str | None) -> str | None:
        # A month before the partitions' first has no partition to show a check on.
        if value is not None and parse_month_key(value) < parse_month_key(FIRST_MONTH):
            raise ValueError(f"the first partition is {FIRST_MONTH}")
        return value

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> Settings:
        # A warning share above the failing share would never warn: the check fails first.
        if self.rejected_warn_percent > self.rejected_fail_percent:
            warn = type(self).env_name("rejected_warn_percent")
            fail = type(self).env_name("rejected_fail_percent")
            raise ValueError(
                f"${warn} ({self.rejected_warn_percent:g}) must not be above ${fail} "
                f"({self.rejected_fail_percent:g})"
            )
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings the environment gives (``os.environ`` unless ``environ``); an empty or
        blank variable counts as unset."""
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        for name, field in cls.model_fields.items():
            raw = env.get(field.json_schema_extra["env"], "").strip()
            if raw:
                values[name] = raw
        try:
            settings = cls(**values)
        except ValidationError as error:
            raise SettingsError("Unusable setting: " + cls._problems(error, values)) from None
        settings._from_env = frozenset(values)
        return settings

    @classmethod
    def _problems(cls, error: ValidationError, values: Mapping[str, str]) -> str:
        """Each problem of ``error`` with the variable it comes from, and its value unless the
        setting is a secret."""
        problems = []
        for item in error.errors():
            if not item["loc"]:  # a rule across settings: its message names the variables
                problems.append(item["msg"].removeprefix("Value error, "))
                continue
            name = str(item["loc"][0])
            extra = cls.model_fields[name].json_schema_extra
            shown = "(secret, not shown)" if extra["secret"] else repr(values.get(name))
            problems.append(f"${extra['env']}={shown}: {item['msg'].removeprefix('Value error, ')}")
        return "; ".join(problems)

    def from_environment(self, name: str) -> bool:
        """Whether setting ``name`` came from its environment variable (not its default)."""
        return name in self._from_env

    def resource_value(self, name: str) -> Any:
        """The value to hand a resource for field ``name``: for a secret that came from the
        environment, a `dagster.EnvVar` naming its variable (resolved by Dagster when the run
        starts, shown by name in the UI); otherwise the value itself."""
        field = type(self).model_fields[name]
        if field.json_schema_extra["secret"] and name in self._from_env:
            return EnvVar(field.json_schema_extra["env"])
        return getattr(self, name)

    @classmethod
    def env_name(cls, name: str) -> str:
        """The environment variable of setting ``name``."""
        return cls.model_fields[name].json_schema_extra["env"]

    @classmethod
    def variables(cls) -> list[tuple[str, Any, str]]:
        """(environment variable, default, meaning) of every setting, in declaration order."""
        return [
            (field.json_schema_extra["env"], field.default, field.description or "")
            for field in cls.model_fields.values()
        ]
