"""Configuration of image ingestion (upload API and Kafka consumer), with its defaults.

Filled from the environment by `Settings.from_env()` (memberflow_assets/settings.py) as its `ingest`
part. The table of variables is in docs/images_ingestion.md ("Configuration").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from memberflow_assets.images.layout import MAX_PIXELS

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_BODY_MEMORY = 192 * 1024 * 1024  # with the API's own ~250 MB, under a 512 MB budget
DEFAULT_TOPIC = "images.uploads"
DEFAULT_GROUP = "memberflow-images"


@dataclass(frozen=True)
class IngestSettings:
    """The defaults here are the documented ones; `Settings.from_env()` overrides them from the environment."""

    api_keys: str = ""  # inline `client:sha256-of-key` lines (MEMBERFLOW_API_KEYS)
    api_keys_file: Path | None = None  # more such lines; `memberflow api-key` appends here (from_env: always set)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = MAX_PIXELS
    durable: bool = True  # a landing is on disk (files fsynced, registry commit flushed) before it is acknowledged
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_header_timeout_seconds: float = 10  # the longest a request's line and headers may take to arrive (then 408)
    api_max_head_bytes: int = 64 * 1024  # the most a request's line and headers may take together (then 431)
    api_max_headers: int = 100  # header fields per request (then 431)
    api_body_timeout_seconds: float = 30  # the longest wait for the next part of an upload's body (then 408)
    api_body_deadline_seconds: float = 300  # the longest a whole body may take to arrive (then 408)
    api_max_bodies: int = 128  # uploads being received or landed at once, per API process (then 503)
    api_max_body_memory_bytes: int = DEFAULT_MAX_BODY_MEMORY  # the memory their bodies may hold together (then 503)
    kafka_topic: str = DEFAULT_TOPIC
    kafka_group: str = DEFAULT_GROUP
    kafka_dlq_topic: str | None = None
    kafka_batch_max_messages: int = 2000  # per Dagster run (per partition)
    # librdkafka settings for every client, e.g. TLS/SASL for a managed cluster (MEMBERFLOW_KAFKA_CONFIG, JSON)
    kafka_config: dict = field(default_factory=dict)

    def kafka_client_config(self, bootstrap: str) -> dict:
        """Settings for a producer or admin client of the image topic's cluster."""
        return {**self.kafka_config, "bootstrap.servers": bootstrap}


def parse_kafka_config(text: str | None, name: str = "MEMBERFLOW_KAFKA_CONFIG") -> dict:
    """librdkafka settings given as a JSON object (`name` says where they came from, for the error)."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as error:
        value, problem = None, f"{error.msg} at line {error.lineno}, column {error.colno}"
    else:
        problem = None
    if problem:  # raised outside the except: the JSONDecodeError holds the value (SASL passwords), not chained
        raise ValueError(f"{name} is not valid JSON ({problem}); its value is not shown")
    if not isinstance(value, dict):
        raise ValueError(f'{name} must be a JSON object of librdkafka settings, e.g. {{"security.protocol": "SSL"}}')
    return value
