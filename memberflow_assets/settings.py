"""The platform's configuration: environment variables, each with an embedded default.

The one place that reads MEMBERFLOW_* variables. The table of variables is in README.md
("Configuration"). Values are read when `Settings.from_env()` is called — by the code location
(definitions.py) and by each `memberflow` command — never at import time, so tests and the start
command can set them first; everything else is handed the Settings (or values from it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from memberflow_assets.images.ingestion.config import IngestSettings, parse_kafka_config


class ConfigurationError(ValueError):
    """A variable's value the platform refuses, with a message naming the variable (and never quoting a
    secret); `memberflow` commands print it as one line."""


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _flag(name: str, default: bool) -> bool:
    """Exactly 1/0, true/false, yes/no, on/off (any case): a typo must not switch a server on or off."""
    value = _env(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be one of 1, true, yes, on / 0, false, no, off, not {value!r}")


def _int(name: str, default: int, minimum: int, maximum: int) -> int:
    return _number(name, default, int, minimum, maximum)


def _float(name: str, default: float, minimum: float, maximum: float) -> float:
    return _number(name, default, float, minimum, maximum)


def _number(name: str, default: float, kind: type[int] | type[float], minimum: float, maximum: float):
    text = _env(name)
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ConfigurationError(
            f"{name} must be {'an integer' if kind is int else 'a number'}, not {text!r}"
        ) from None
    if not minimum <= value <= maximum:  # also refuses nan
        raise ConfigurationError(f"{name} must be between {minimum:g} and {maximum:g}, not {text!r}")
    return value


def _interval(name: str, default: float, minimum: float = 0.1, maximum: float = 86400) -> float:
    """Seconds, in the notebook app's own form: "30s", "5m", "1h" or plain seconds."""
    text = _env(name)
    if text is None:
        return default
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|h)?", text.lower())
    if match is None:
        raise ConfigurationError(f'{name} must be a duration such as "30s", "5m", "1h" or seconds, not {text!r}')
    seconds = float(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2] or "s"]
    if not minimum <= seconds <= maximum:
        raise ConfigurationError(f"{name} must be between {minimum:g} s and {maximum:g} s, not {text!r}")
    return seconds


def _local_path(value: str) -> Path:
    """Absolute, once: `memberflow start` changes folder before `dagster dev`, and its children must agree.
    Symbolic links are kept (the warehouse path is one, to the version published now)."""
    return Path(os.path.abspath(Path(value).expanduser()))


STORAGE_URL_ENV = "MEMBERFLOW_STORAGE_URL"
# S3's bucket naming rules (lower case, digits, dots, hyphens; 3-63 characters)
_S3_URL = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^/]+)*/?")


def _storage_url() -> str | None:
    """MEMBERFLOW_STORAGE_URL: `s3://bucket[/prefix]`, a local folder (made absolute), or `file:///folder`
    (taken as that folder). Anything else — `S3://`, `s3:/`, `gs://`, `s3a://` — was once a folder of
    that name under the current directory, silently: refused."""
    value = _env("MEMBERFLOW_STORAGE_URL")  # spelt out: deploy tests look for _env("...") here
    if value is None:
        return None
    if value.startswith("s3://"):
        if not _S3_URL.fullmatch(value):
            raise ConfigurationError(
                f"{STORAGE_URL_ENV} must be s3://bucket or s3://bucket/prefix (a valid bucket name, no empty "
                f"path segments), not {value!r}"
            )
        return value.rstrip("/")
    if value.lower().startswith("file://"):
        parts = urlsplit(value)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/") or parts.query or parts.fragment:
            raise ConfigurationError(f"{STORAGE_URL_ENV}: a file URL must be file:///absolute/folder, not {value!r}")
        return str(_local_path(unquote(parts.path)))
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", value):
        raise ConfigurationError(
            f"{STORAGE_URL_ENV} must be s3://bucket[/prefix] (lower-case s3) or a local folder, not {value!r} "
            "(other schemes are not supported; a folder whose name has a colon: write it ./like:this)"
        )
    return str(_local_path(value))


KAFKA_CONFIG_ENV = "MEMBERFLOW_KAFKA_CONFIG"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    storage_url: str | None
    s3_endpoint_url: str | None
    pg_dsn: str | None
    dagster_pg_dsn: str | None
    warehouse: str
    kafka_bootstrap: str | None
    ingest: IngestSettings
    sensor_interval_seconds: int  # the landing sensors (applications, images)
    kafka_sensor_interval_seconds: int
    landing_settle_seconds: float  # a local applications file unchanged this long counts as finished
    images_run_interval_seconds: float  # while an hour is open, at most one processing run per interval
    sales_demo: bool  # demo transactions follow new members (set by `memberflow start`)
    max_concurrent_runs: int  # Dagster's run queue limit (dagster.yaml reads it from the environment)
    start_api: bool  # `memberflow start` serves the upload API beside dagster dev
    start_analytics: bool  # ... and the analysts' notebook app
    analytics_host: str
    analytics_port: int
    analytics_check_every_seconds: float  # how often the notebook app looks for a newer warehouse version

    @classmethod
    def from_env(cls) -> Settings:
        """The settings from the environment; raises ConfigurationError naming a variable it refuses.
        Numbers have ranges (a 0 or a negative one made the platform do nothing, or spin)."""
        data_dir = Path(_env("MEMBERFLOW_DATA_DIR") or "./data").expanduser().resolve()
        day = 86400
        kafka_bootstrap = _env("MEMBERFLOW_KAFKA_BOOTSTRAP")
        return cls(
            data_dir=data_dir,
            storage_url=_storage_url(),
            s3_endpoint_url=_env("MEMBERFLOW_S3_ENDPOINT_URL") or _env("AWS_ENDPOINT_URL"),
            pg_dsn=_env("MEMBERFLOW_PG_DSN"),
            dagster_pg_dsn=_env("MEMBERFLOW_DAGSTER_PG_DSN"),
            warehouse=str(_local_path(_env("MEMBERFLOW_WAREHOUSE") or str(data_dir / "warehouse.duckdb"))),
            kafka_bootstrap=kafka_bootstrap,
            ingest=_ingest_from_env(data_dir, kafka_on=kafka_bootstrap is not None),
            sensor_interval_seconds=_int("MEMBERFLOW_SENSOR_INTERVAL_SECONDS", 15, 1, day),
            kafka_sensor_interval_seconds=_int("MEMBERFLOW_KAFKA_SENSOR_INTERVAL_SECONDS", 10, 1, day),
            landing_settle_seconds=_float("MEMBERFLOW_LANDING_SETTLE_SECONDS", 10, 0, day),
            images_run_interval_seconds=_float("MEMBERFLOW_IMAGES_RUN_INTERVAL_SECONDS", 300, 0, day),
            sales_demo=_flag("MEMBERFLOW_SALES_DEMO", False),
            max_concurrent_runs=_int("MEMBERFLOW_MAX_CONCURRENT_RUNS", 4, 1, 1000),
            start_api=_flag("MEMBERFLOW_START_API", True),
            start_analytics=_flag("MEMBERFLOW_START_ANALYTICS", True),
            analytics_host=_env("MEMBERFLOW_ANALYTICS_HOST") or "127.0.0.1",
            analytics_port=_int("MEMBERFLOW_ANALYTICS_PORT", 2718, 1, 65535),
            analytics_check_every_seconds=_interval("MEMBERFLOW_ANALYTICS_CHECK_EVERY", 30.0),
        )

    @property
    def embedded_pg_dir(self) -> Path:
        return self.data_dir / ".pg"

    @property
    def zones_url(self) -> str:
        """Root of every zone: the S3 URL when configured, else the local data dir."""
        return self.storage_url or str(self.data_dir)


def _ingest_from_env(data_dir: Path, kafka_on: bool = True) -> IngestSettings:
    """The upload API's and the Kafka consumer's variables (docs/images_ingestion.md, "Configuration");
    unset ones keep IngestSettings' defaults. MEMBERFLOW_KAFKA_CONFIG is only read with Kafka on (only
    Kafka clients use it): a deployment without Kafka loads whatever it holds."""
    default = IngestSettings()
    gib, hour, day = 1 << 30, 3600, 86400
    return IngestSettings(
        api_keys=_env("MEMBERFLOW_API_KEYS") or default.api_keys,
        api_keys_file=_local_path(_env("MEMBERFLOW_API_KEYS_FILE") or str(data_dir / "api_keys.txt")),
        max_upload_bytes=_int("MEMBERFLOW_MAX_UPLOAD_BYTES", default.max_upload_bytes, 1024, 2 * gib),
        max_pixels=_int("MEMBERFLOW_MAX_IMAGE_PIXELS", default.max_pixels, 1, 1 << 32),
        durable=_flag("MEMBERFLOW_INGEST_DURABLE", default.durable),
        api_host=_env("MEMBERFLOW_API_HOST") or default.api_host,
        api_port=_int("MEMBERFLOW_API_PORT", default.api_port, 1, 65535),
        api_header_timeout_seconds=_float(
            "MEMBERFLOW_API_HEADER_TIMEOUT_SECONDS", default.api_header_timeout_seconds, 0.1, hour
        ),
        api_max_head_bytes=_int("MEMBERFLOW_API_MAX_HEAD_BYTES", default.api_max_head_bytes, 1024, 16 << 20),
        api_max_headers=_int("MEMBERFLOW_API_MAX_HEADERS", default.api_max_headers, 1, 10_000),
        api_body_timeout_seconds=_float(
            "MEMBERFLOW_API_BODY_TIMEOUT_SECONDS", default.api_body_timeout_seconds, 0.1, hour
        ),
        api_body_deadline_seconds=_float(
            "MEMBERFLOW_API_BODY_DEADLINE_SECONDS", default.api_body_deadline_seconds, 0.1, day
        ),
        api_max_bodies=_int("MEMBERFLOW_API_MAX_BODIES", default.api_max_bodies, 1, 100_000),
        api_max_body_memory_bytes=_int(
            "MEMBERFLOW_API_MAX_BODY_MEMORY_BYTES", default.api_max_body_memory_bytes, 1024, 64 * gib
        ),
        kafka_topic=_env("MEMBERFLOW_KAFKA_TOPIC") or default.kafka_topic,
        kafka_group=_env("MEMBERFLOW_KAFKA_GROUP") or default.kafka_group,
        kafka_dlq_topic=_env("MEMBERFLOW_KAFKA_DLQ_TOPIC"),
        kafka_batch_max_messages=_int(
            "MEMBERFLOW_KAFKA_BATCH_MAX_MESSAGES", default.kafka_batch_max_messages, 1, 1_000_000
        ),
        kafka_config=_kafka_config() if kafka_on else {},
    )


def _kafka_config() -> dict:
    try:
        return parse_kafka_config(_env(KAFKA_CONFIG_ENV), KAFKA_CONFIG_ENV)
    except ValueError as error:  # its message names the variable and never quotes the value
        raise ConfigurationError(str(error)) from None


REPO_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = REPO_ROOT / "sql"


def read_sql(relative_path: str) -> str:
    """Text of a file under the repository's `sql/` folder."""
    return (SQL_DIR / relative_path).read_text(encoding="utf-8")
