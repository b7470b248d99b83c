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

from memberflow_assets.images.ingestion.config import IngestSettings, parse_kafka_config


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _flag(name: str, default: bool) -> bool:
    value = _env(name)
    return default if value is None else value.lower() not in ("0", "false", "no", "off")


def _int(name: str, default: int) -> int:
    return _number(name, default, int)


def _float(name: str, default: float) -> float:
    return _number(name, default, float)


def _number(name: str, default: float, kind: type[int] | type[float]):
    text = _env(name)
    if text is None:
        return default
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}, not {text!r}") from None


def _interval(name: str, default: float) -> float:
    """Seconds, in the notebook app's own form: "30s", "5m", "1h" or plain seconds; else the default."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|h)?", (_env(name) or "").lower())
    if match is None:
        return default
    return max(float(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2] or "s"], 0.1)


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
        data_dir = Path(_env("MEMBERFLOW_DATA_DIR") or "./data").expanduser().resolve()
        return cls(
            data_dir=data_dir,
            storage_url=_env("MEMBERFLOW_STORAGE_URL"),
            s3_endpoint_url=_env("MEMBERFLOW_S3_ENDPOINT_URL") or _env("AWS_ENDPOINT_URL"),
            pg_dsn=_env("MEMBERFLOW_PG_DSN"),
            dagster_pg_dsn=_env("MEMBERFLOW_DAGSTER_PG_DSN"),
            warehouse=_env("MEMBERFLOW_WAREHOUSE") or str(data_dir / "warehouse.duckdb"),
            kafka_bootstrap=_env("MEMBERFLOW_KAFKA_BOOTSTRAP"),
            ingest=_ingest_from_env(data_dir),
            sensor_interval_seconds=_int("MEMBERFLOW_SENSOR_INTERVAL_SECONDS", 15),
            kafka_sensor_interval_seconds=_int("MEMBERFLOW_KAFKA_SENSOR_INTERVAL_SECONDS", 10),
            landing_settle_seconds=_float("MEMBERFLOW_LANDING_SETTLE_SECONDS", 10),
            images_run_interval_seconds=_float("MEMBERFLOW_IMAGES_RUN_INTERVAL_SECONDS", 300),
            sales_demo=_env("MEMBERFLOW_SALES_DEMO") == "1",
            max_concurrent_runs=_int("MEMBERFLOW_MAX_CONCURRENT_RUNS", 4),
            start_api=_flag("MEMBERFLOW_START_API", True),
            start_analytics=_flag("MEMBERFLOW_START_ANALYTICS", True),
            analytics_host=_env("MEMBERFLOW_ANALYTICS_HOST") or "127.0.0.1",
            analytics_port=_int("MEMBERFLOW_ANALYTICS_PORT", 2718),
            analytics_check_every_seconds=_interval("MEMBERFLOW_ANALYTICS_CHECK_EVERY", 30.0),
        )

    @property
    def embedded_pg_dir(self) -> Path:
        return self.data_dir / ".pg"

    @property
    def zones_url(self) -> str:
        """Root of every zone: the S3 URL when configured, else the local data dir."""
        return self.storage_url or str(self.data_dir)


def _ingest_from_env(data_dir: Path) -> IngestSettings:
    """The upload API's and the Kafka consumer's variables (docs/images_ingestion.md, "Configuration");
    unset ones keep IngestSettings' defaults."""
    default = IngestSettings()
    return IngestSettings(
        api_keys=_env("MEMBERFLOW_API_KEYS") or default.api_keys,
        api_keys_file=Path(_env("MEMBERFLOW_API_KEYS_FILE") or data_dir / "api_keys.txt"),
        max_upload_bytes=_int("MEMBERFLOW_MAX_UPLOAD_BYTES", default.max_upload_bytes),
        max_pixels=_int("MEMBERFLOW_MAX_IMAGE_PIXELS", default.max_pixels),
        durable=_flag("MEMBERFLOW_INGEST_DURABLE", default.durable),
        api_host=_env("MEMBERFLOW_API_HOST") or default.api_host,
        api_port=_int("MEMBERFLOW_API_PORT", default.api_port),
        api_header_timeout_seconds=_float("MEMBERFLOW_API_HEADER_TIMEOUT_SECONDS", default.api_header_timeout_seconds),
        api_max_head_bytes=_int("MEMBERFLOW_API_MAX_HEAD_BYTES", default.api_max_head_bytes),
        api_max_headers=_int("MEMBERFLOW_API_MAX_HEADERS", default.api_max_headers),
        api_body_timeout_seconds=_float("MEMBERFLOW_API_BODY_TIMEOUT_SECONDS", default.api_body_timeout_seconds),
        api_body_deadline_seconds=_float("MEMBERFLOW_API_BODY_DEADLINE_SECONDS", default.api_body_deadline_seconds),
        api_max_bodies=_int("MEMBERFLOW_API_MAX_BODIES", default.api_max_bodies),
        api_max_body_memory_bytes=_int("MEMBERFLOW_API_MAX_BODY_MEMORY_BYTES", default.api_max_body_memory_bytes),
        kafka_topic=_env("MEMBERFLOW_KAFKA_TOPIC") or default.kafka_topic,
        kafka_group=_env("MEMBERFLOW_KAFKA_GROUP") or default.kafka_group,
        kafka_dlq_topic=_env("MEMBERFLOW_KAFKA_DLQ_TOPIC"),
        kafka_batch_max_messages=_int("MEMBERFLOW_KAFKA_BATCH_MAX_MESSAGES", default.kafka_batch_max_messages),
        kafka_config=parse_kafka_config(_env(KAFKA_CONFIG_ENV), KAFKA_CONFIG_ENV),
    )


REPO_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = REPO_ROOT / "sql"


def read_sql(relative_path: str) -> str:
    """Text of a file under the repository's `sql/` folder."""
    return (SQL_DIR / relative_path).read_text(encoding="utf-8")
