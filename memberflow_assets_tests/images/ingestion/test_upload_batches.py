"""The upload endpoint's batches: what landing uploads together must not change for any one of them.

Each test queues its uploads through the real endpoint (ASGI calls, as uvicorn makes them), then forms
and lands the batch itself, so that the batch holds exactly those uploads; real PostgreSQL and zones."""

import asyncio
import dataclasses
import hashlib
import json
from pathlib import Path

import psycopg2
import pytest

from memberflow_assets.images.ingestion.admission import Admission
from memberflow_assets.images.ingestion.api_keys import ApiKeys, mint_key
from memberflow_assets.images.ingestion.landing import LandingInProgress, open_lander
from memberflow_assets.images.ingestion.upload_endpoint import (
    BodyLimits,
    UploadBatches,
    UploadEndpoint,
    error_answer,
    settle,
)
from memberflow_assets.settings import Settings
from memberflow_assets.testing.images import jpeg_of_about, small_image, unique_jpeg
from memberflow_assets.zones import Zones


@dataclasses.dataclass
class Batching:
    endpoint: UploadEndpoint
    batches: UploadBatches
    keys: dict[str, str]  # client -> API key
    data_dir: Path
    dsn: str

    def landed(self) -> list[Path]:
        root = self.data_dir / "landing" / "images"
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

    def temporaries(self) -> list[Path]:
        return [p for p in (self.data_dir / "landing").rglob("*.tmp") if p.is_file()]

    def registry(self) -> list[tuple[str, str]]:
        with psycopg2.connect(self.dsn) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT image_id, client FROM images.registry ORDER BY 1")
            return cursor.fetchall()


@pytest.fixture
def batching(memberflow_env, pg_dsn):
    keys, lines = {}, []
    for client in ("alice", "bob"):
        keys[client], line = mint_key(client)
        lines.append(line)
    settings = dataclasses.replace(
        Settings.from_env().ingest, api_keys=",".join(lines), api_keys_file=memberflow_env / "api_keys.txt"
    )
    with open_lander(Zones(str(memberflow_env)), pg_dsn, settings, pool_size=2) as lander:
        batches = UploadBatches(lander, workers=0)  # each test forms and lands its batches itself
        endpoint = UploadEndpoint(
            ApiKeys(settings.api_keys, settings.api_keys_file),
            Admission(64, 256 << 20),
            BodyLimits(settings.max_upload_bytes, 30, 300),
            batches,
        )
        yield Batching(endpoint, batches, keys, memberflow_env, pg_dsn)


async def post(endpoint: UploadEndpoint, key: str, data: bytes) -> tuple[int, dict]:
    """POST /v1/images through the endpoint as uvicorn calls it: status and JSON answer."""
    sent = []

    async def receive() -> dict:
        return {"type": "http.request", "body": data, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"x-api-key", key.encode()), (b"content-length", str(len(data)).encode())]
    await endpoint({"type": "http", "method": "POST", "path": "/v1/images", "headers": headers}, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


async def queue_all(batching: Batching, uploads: list[tuple[str, bytes]]) -> list[asyncio.Task]:
    tasks = [asyncio.create_task(post(batching.endpoint, batching.keys[who], data)) for who, data in uploads]
    while batching.batches.waiting < len(uploads):  # every body received and queued
        await asyncio.sleep(0.001)
    return tasks


def answers_of_one_batch(batching: Batching, uploads: list[tuple[str, bytes]]) -> list[tuple[int, dict]]:
    """The answers when every upload is taken into one batch. A client whose validations (and quarantine
    writes) pass the fairness budget on a slow machine has the rest put back: those are landed in the
    batches after it, as a worker would, so that every upload is answered."""

    async def run() -> list[tuple[int, dict]]:
        tasks = await queue_all(batching, uploads)
        batch = batching.batches.next_batch()
        assert len(batch) == len(uploads)
        settle(await asyncio.to_thread(batching.batches.land, batch))
        while batching.batches.waiting:
            settle(await asyncio.to_thread(batching.batches.land, batching.batches.next_batch()))
        return list(await asyncio.gather(*tasks))

    return asyncio.run(run())


def test_a_bad_upload_in_a_batch_of_good_ones_is_the_only_one_refused(batching):
    good = [unique_jpeg(jpeg_of_about(30_000), n) for n in range(3)]
    truncated = unique_jpeg(jpeg_of_about(30_000), 9)[:20_000]
    answers = answers_of_one_batch(
        batching,
        [("alice", good[0]), ("alice", b"%PDF-1.7 not an image"), ("alice", good[1]), ("bob", truncated)]
        + [("alice", good[2])],
    )
    assert [status for status, _ in answers] == [201, 415, 201, 422, 201]
    assert (answers[1][1]["code"], answers[3][1]["code"]) == ("unsupported_type", "truncated")
    assert len(batching.landed()) == 6 and len(batching.registry()) == 3  # the three good ones, with sidecars
    reasons = [json.loads(p.read_text()) for p in (batching.data_dir / "quarantine").rglob("*.reason.json")]
    assert sorted((r["client"], r["reason"]) for r in reasons) == [("alice", "unsupported_type"), ("bob", "truncated")]
    assert batching.temporaries() == []


def test_a_registry_failure_fails_the_whole_batch_with_nothing_landed(batching, pg_server_uri):
    database = psycopg2.extensions.parse_dsn(batching.dsn)["dbname"]
    admin = psycopg2.connect(pg_server_uri)
    admin.autocommit = True
    uploads = [("alice", unique_jpeg(jpeg_of_about(30_000), 20 + n)) for n in range(3)]
    uploads += [("bob", small_image("PNG", 24)), ("bob", b"not an image either")]
    try:
        with admin.cursor() as cursor:  # the registry stops answering
            cursor.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))
        answers = answers_of_one_batch(batching, uploads)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
        admin.close()
    assert [status for status, _ in answers] == [503, 503, 503, 503, 415]  # the refusal needs no registry
    assert all(
        body == {"code": "unavailable", "detail": "the image registry is unavailable"} for _, body in answers[:4]
    )
    assert batching.landed() == [] and batching.temporaries() == [] and batching.registry() == []
    # the clients' retries land, in a batch of their own
    retried = answers_of_one_batch(batching, uploads[:4])
    assert [status for status, _ in retried] == [201] * 4 and len(batching.landed()) == 8


def test_the_same_image_twice_in_a_batch_is_one_new_and_one_duplicate(batching):
    data = unique_jpeg(jpeg_of_about(30_000), 30)
    (first_status, first), (second_status, second) = answers_of_one_batch(batching, [("alice", data)] * 2)
    assert (first_status, second_status) == (201, 200)
    assert (first["duplicate"], second["duplicate"]) == (False, True)
    assert second["image_id"] == first["image_id"] and second["received_at"] == first["received_at"]
    assert [p.stem for p in batching.landed()] == [first["image_id"]] * 2  # the image and its sidecar, once
    assert batching.temporaries() == []  # the copy's staged files are gone


def test_different_clients_in_one_batch_each_land_their_own(batching):
    shared, own = unique_jpeg(jpeg_of_about(30_000), 40), small_image("GIF", 41)
    answers = answers_of_one_batch(batching, [("alice", shared), ("bob", shared), ("bob", own)])
    assert [status for status, _ in answers] == [201, 201, 201]
    alice, bob, bobs_own = (body for _, body in answers)
    assert alice["image_id"] != bob["image_id"] and alice["sha256"] == bob["sha256"]
    assert sorted(batching.registry()) == sorted(
        [(alice["image_id"], "alice"), (bob["image_id"], "bob"), (bobs_own["image_id"], "bob")]
    )
    for body in (alice, bob, bobs_own):
        [image] = [p for p in batching.landed() if p.stem == body["image_id"] and p.suffix != ".json"]
        assert hashlib.sha256(image.read_bytes()).hexdigest() == body["sha256"]


def test_a_client_whose_uploads_are_slow_to_validate_waits_for_later_batches_not_the_others(batching):
    """Ten large uploads of one client take more than CLIENT_VALIDATION_SECONDS to validate: the rest of
    them are put back for the next batch, while another client's upload in the same batch is answered."""
    base = jpeg_of_about(2_000_000)
    greedy = [("bob", unique_jpeg(base, 50 + n)) for n in range(10)]

    async def run() -> tuple[list, list, int]:
        tasks = await queue_all(batching, [*greedy[:5], ("alice", small_image("PNG", 60)), *greedy[5:]])
        first = batching.batches.next_batch()
        settle(await asyncio.to_thread(batching.batches.land, first))
        polite = await tasks[5]
        deferred = batching.batches.waiting
        while batching.batches.waiting:
            settle(await asyncio.to_thread(batching.batches.land, batching.batches.next_batch()))
        return [polite], list(await asyncio.gather(*tasks)), deferred

    [polite], answers, deferred = asyncio.run(run())
    assert polite[0] == 201
    assert 0 < deferred < 10  # some of bob's uploads went in the first batch, the rest later
    assert [status for status, _ in answers] == [201] * 11
    assert len(batching.registry()) == 11


def test_a_copy_of_an_image_whose_first_landing_failed_is_answered_503_with_retry_after():
    """LandingInProgress (test_landing.py): the upload is not landed, and a retry will land it."""
    status, body, headers = error_answer(LandingInProgress("f" * 32))
    assert (status, body["code"]) == (503, "unavailable") and headers and int(headers["Retry-After"]) > 0
    assert "f" * 32 not in body["detail"]
