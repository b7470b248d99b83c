"""Configuration of image ingestion (upload API and Kafka consumer): environment variables with defaults.

Read when `IngestSettings.from_env()` is called, never at import time. The table is in
docs/images_ingestion.md ("Configuration").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from memberflow_assets.images.layout import MAX_PIXELS
from memberflow_assets.settings import Settings

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_BODY_MEMORY = 192 * 1024 * 1024  # with the API's own ~250 MB, under a 512 MB budget
DEFAULT_TOPIC = "images.uploads"
DEFAULT_GROUP = "memberflow-images"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, "").strip() or default


def _flag(name: str, default: bool) -> bool:
    value = _env(name)
    return default if value is None else value.lower() not in ("0", "false", "no", "off")


def _json_object(name: str) -> dict:
    value = json.loads(_env(name, "{}"))
    if not isinstance(value, dict):
        raise ValueError(f'{name} must be a JSON object of librdkafka settings, e.g. {{"security.protocol": "SSL"}}')
    return value


@dataclass(frozen=True)
class IngestSettings:
    api_keys: str  # inline `client:sha256-of-key` lines (MEMBERFLOW_API_KEYS)
    api_keys_file: Path  # more such lines; `memberflow api-key` appends here
    max_upload_bytes: int
    max_pixels: int
    durable: bool  # a landing is on disk (files fsynced, registry commit flushed) before it is acknowledged
    api_host: str
    api_port: int
    api_body_timeout_seconds: float  # the longest wait for the next part of an upload's body (then 408)
    api_body_deadline_seconds: float  # the longest a whole body may take to arrive (then 408)
    api_max_bodies: int  # uploads being received or landed at once, per API process (then 503)
    api_max_body_memory_bytes: int  # the memory their bodies may hold together (then 503)
    kafka_topic: str
    kafka_group: str
    kafka_dlq_topic: str | None
    kafka_batch_max_messages: int  # per Dagster run (per partition)
    # librdkafka settings for every client, e.g. TLS/SASL for a managed cluster (MEMBERFLOW_KAFKA_CONFIG, JSON)
    kafka_config: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> IngestSettings:
        settings = settings or Settings.from_env()
        return cls(
            api_keys=_env("MEMBERFLOW_API_KEYS", ""),
            api_keys_file=Path(_env("MEMBERFLOW_API_KEYS_FILE") or settings.data_dir / "api_keys.txt"),
            max_upload_bytes=int(_env("MEMBERFLOW_MAX_UPLOAD_BYTES", str(DEFAULT_MAX_UPLOAD_BYTES))),
            max_pixels=int(_env("MEMBERFLOW_MAX_IMAGE_PIXELS", str(MAX_PIXELS))),
            durable=_flag("MEMBERFLOW_INGEST_DURABLE", True),
            api_host=_env("MEMBERFLOW_API_HOST", "127.0.0.1"),
            api_port=int(_env("MEMBERFLOW_API_PORT", "8000")),
            api_body_timeout_seconds=float(_env("MEMBERFLOW_API_BODY_TIMEOUT_SECONDS", "30")),
            api_body_deadline_seconds=float(_env("MEMBERFLOW_API_BODY_DEADLINE_SECONDS", "300")),
            api_max_bodies=int(_env("MEMBERFLOW_API_MAX_BODIES", "128")),
            api_max_body_memory_bytes=int(_env("MEMBERFLOW_API_MAX_BODY_MEMORY_BYTES", str(DEFAULT_MAX_BODY_MEMORY))),
            kafka_topic=_env("MEMBERFLOW_KAFKA_TOPIC", DEFAULT_TOPIC),
            kafka_group=_env("MEMBERFLOW_KAFKA_GROUP", DEFAULT_GROUP),
            kafka_dlq_topic=_env("MEMBERFLOW_KAFKA_DLQ_TOPIC"),
            kafka_batch_max_messages=int(_env("MEMBERFLOW_KAFKA_BATCH_MAX_MESSAGES", "2000")),
            kafka_config=_json_object("MEMBERFLOW_KAFKA_CONFIG"),
        )

    def kafka_client_config(self, bootstrap: str) -> dict:
        """Settings for a producer or admin client of the image topic's cluster."""
        return {**self.kafka_config, "bootstrap.servers": bootstrap}
