"""The upload API served by a real uvicorn on loopback, against the embedded PostgreSQL and real zones."""

import dataclasses
import errno
import hashlib
import json
import os
import re
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import psycopg2
import pytest
import uvicorn

from memberflow_assets import zones as zones_module
from memberflow_assets.images import layout
from memberflow_assets.images.ingestion.api import create_app
from memberflow_assets.images.ingestion.api_keys import append_key_line, mint_key
from memberflow_assets.images.ingestion.config import IngestSettings
from memberflow_assets.images.ingestion.http_protocol import UVICORN_OPTIONS
from memberflow_assets.images.ingestion.landing import Upload, image_id_for
from memberflow_assets.images.ingestion.upload_endpoint import Queued, UploadBatches
from memberflow_assets.postgres import ensure_database, with_database
from memberflow_assets.settings import Settings
from memberflow_assets.testing.images import (
    jpeg_of_about,
    jpeg_with_empty_segments,
    png_claiming,
    small_image,
    unique_jpeg,
)
from memberflow_assets.zones import Zones
from memberflow_assets_tests.helpers import wait_until
from memberflow_assets_tests.images.ingestion.test_content import jpeg_with_second_frame, tiff_with_tag
from memberflow_assets_tests.sales_data import migrated

MAX_UPLOAD = 2 * 1024 * 1024  # a small limit keeps the oversized tests quick


class ApiServer:
    """uvicorn serving the app in a thread of the test process, with the HTTP protocol `memberflow api` uses."""

    def __init__(self, app):
        # bound here and handed to uvicorn: a port picked now and bound later could be taken meanwhile
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **UVICORN_OPTIONS))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()

        def started() -> bool:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            return self.server.started

        wait_until(started, 30, "uvicorn to start", every=0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()


@dataclasses.dataclass
class Api:
    url: str
    data_dir: Path
    dsn: str
    keys_file: Path
    keys: dict[str, str]  # client -> key

    def client(self, who: str | None = "alice", **options) -> httpx.Client:
        headers = {"X-API-Key": self.keys[who]} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **options)

    def landed(self) -> list[Path]:
        root = self.data_dir / "landing" / "images"
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

    def quarantined(self) -> list[dict]:
        root = self.data_dir / "quarantine" / "images"
        return [json.loads(p.read_text()) for p in root.rglob("*.reason.json")] if root.exists() else []


def ingest_settings(data_dir: Path, inline_keys: str) -> IngestSettings:
    return dataclasses.replace(
        Settings.from_env().ingest,
        api_keys=inline_keys,
        api_keys_file=data_dir / "api_keys.txt",
        max_upload_bytes=MAX_UPLOAD,
        max_pixels=50_000_000,
    )


@pytest.fixture(scope="module")
def api(pg_server_uri, tmp_path_factory):
    database = f"test_api_{uuid.uuid4().hex[:8]}"
    ensure_database(pg_server_uri, database)
    dsn = migrated(with_database(pg_server_uri, database))  # as the deployment's migrate step leaves it
    data_dir = tmp_path_factory.mktemp("api") / "data"
    keys, lines = {}, []
    for client in ("alice", "bob"):
        keys[client], line = mint_key(client)
        lines.append(line)
    settings = ingest_settings(data_dir, ",".join(lines))
    with ApiServer(create_app(settings, Zones(str(data_dir)), dsn, pool_size=8)) as url:
        yield Api(url, data_dir, dsn, settings.api_keys_file, keys)


# -- the happy path --------------------------------------------------------------------------------
def test_raw_upload_lands_image_and_sidecar(api):
    data = unique_jpeg(jpeg_of_about(40_000), 1)
    with api.client() as client:
        response = client.post("/v1/images", content=data, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["size_bytes"] == len(data)
    assert body["content_type"] == "image/jpeg" and body["status"] == "landed" and body["duplicate"] is False
    assert response.headers["location"] == f"/v1/images/{body['image_id']}"
    received_at = datetime.fromisoformat(body["received_at"].replace("Z", "+00:00"))
    sidecar_path = api.data_dir / layout.sidecar_relpath(received_at, body["image_id"])
    sidecar = layout.Sidecar.from_json(sidecar_path.read_bytes())
    assert sidecar.received_datetime == received_at
    assert (sidecar.client, sidecar.source, sidecar.sha256) == ("alice", "api", body["sha256"])
    assert (api.data_dir / sidecar.image_relpath).read_bytes() == data


def test_multipart_upload_and_client_filenames_never_become_paths(api):
    before = set(api.landed())
    data = unique_jpeg(jpeg_of_about(40_000), 2)
    with api.client() as client:
        names = ["../../../../etc/passwd.jpg", "/tmp/x.jpg", "..\\..\\win.ini", "a/../../b.jpg"]
        for number, filename in enumerate(names):
            payload = unique_jpeg(data, 100 + number)
            response = client.post(
                "/v1/images",
                files={"file": (filename, payload, "image/jpeg")},
                data={"note": "a form field beside the file"},
            )
            assert response.status_code == 201, response.text
            image_id = response.json()["image_id"]
            new = set(api.landed()) - before
            before |= new
            assert sorted(p.name for p in new) == [f"{image_id}.jpg", f"{image_id}.json"]
            sidecar = next(p for p in new if p.suffix == ".json")
            assert filename.split("/")[-1] not in sidecar.read_text()
    # nothing was written outside the landing hour folders
    outside = [p for p in api.data_dir.rglob("*") if p.is_file() and not p.is_relative_to(api.data_dir / "landing")]
    assert [p for p in outside if "quarantine" not in p.parts and p.name != "api_keys.txt"] == []
    assert not Path("/etc/passwd.jpg").exists() and not Path("/tmp/x.jpg").exists()


def test_same_bytes_twice_same_id_stored_once(api):
    data = unique_jpeg(jpeg_of_about(40_000), 3)
    with api.client() as client:
        first = client.post("/v1/images", content=data)
        second = client.post("/v1/images", files={"file": ("again.jpg", data)})
    with api.client("bob") as client:
        bob = client.post("/v1/images", content=data)
    assert (first.status_code, second.status_code, bob.status_code) == (201, 200, 201)
    assert second.json()["image_id"] == first.json()["image_id"] and second.json()["duplicate"] is True
    assert second.json()["received_at"] == first.json()["received_at"]
    assert bob.json()["image_id"] != first.json()["image_id"]
    copies = [p for p in api.landed() if p.suffix == ".jpg" and p.read_bytes() == data]
    assert len(copies) == 2  # alice's and bob's


def test_status_of_an_image(api):
    with api.client() as client:
        image_id = client.post("/v1/images", content=small_image("TIFF", 4)).json()["image_id"]
        status = client.get(f"/v1/images/{image_id}")
        assert status.status_code == 200 and status.json()["status"] == "landed"
        assert status.json()["content_type"] == "image/tiff"
        with psycopg2.connect(api.dsn) as connection, connection.cursor() as cursor:
            cursor.execute(
                "UPDATE images.registry SET status = 'rejected', error = 'decode failed' WHERE image_id = %s",
                (image_id,),
            )
        rejected = client.get(f"/v1/images/{image_id}").json()
        assert (rejected["status"], rejected["error"]) == ("rejected", "decode failed")
        assert client.get("/v1/images/0123456789abcdef0123456789abcdef").status_code == 404
    with api.client("bob") as client:
        assert client.get(f"/v1/images/{image_id}").status_code == 404  # alice's image is not bob's business


def test_a_status_request_for_an_id_no_image_can_have_is_404_and_keeps_the_connection(api):
    """A NUL in the id made the registry query fail (500, the keep-alive connection reset)."""
    with api.client() as client:
        image_id = client.post("/v1/images", content=small_image("PNG", 161)).json()["image_id"]
        for bad in ("abc%00def", f"{image_id}%00", "x", "0" * 31, image_id.upper(), "%C3%A9" * 16):
            response = client.get(f"/v1/images/{bad}")
            assert response.status_code == 404 and response.json()["code"] == "not_found", (bad, response.text)
        assert client.get(f"/v1/images/{image_id}").status_code == 200  # on the same connection


def test_a_multipart_boundary_the_parser_refuses_is_400(api):
    """python-multipart refuses a boundary of over 256 characters in its constructor (it was a 500)."""
    boundary = "B" * 300
    with api.client() as client:
        response = client.post(
            "/v1/images",
            content=f"--{boundary}\r\n".encode() + small_image("PNG", 162),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    assert response.status_code == 400 and response.json()["code"] == "bad_multipart", response.text


def test_other_methods_on_the_upload_path_are_405_with_allow_post(api):
    with api.client() as client:
        for method in ("GET", "PUT", "DELETE"):
            response = client.request(method, "/v1/images")
            assert response.status_code == 405, (method, response.text)
            assert response.headers["allow"] == "POST" and response.json()["code"] == "method_not_allowed"
        assert client.get("/v1/images/0123456789abcdef0123456789abcdef").status_code == 404  # a status, not the path
        assert client.get("/v1/images/").status_code == 404
    with api.client(None) as client:
        assert client.get("/v1/images").status_code == 405  # the path's methods are no secret


def test_purged_image_reports_purged_and_can_be_uploaded_again(api):
    data = small_image("PNG", 5)
    with api.client() as client:
        image_id = client.post("/v1/images", content=data).json()["image_id"]
        with psycopg2.connect(api.dsn) as connection, connection.cursor() as cursor:
            cursor.execute(
                "UPDATE images.registry SET status = 'purged', purged_at = now(), client = NULL, sha256 = NULL,"
                " received_at = NULL, landing_path = NULL WHERE image_id = %s",
                (image_id,),
            )
        purged = client.get(f"/v1/images/{image_id}").json()
        assert purged["status"] == "purged" and "sha256" not in purged and "purged_at" in purged
        again = client.post("/v1/images", content=data)
        assert again.status_code == 201 and again.json()["image_id"] == image_id
        assert client.get(f"/v1/images/{image_id}").json()["status"] == "landed"


def test_healthz_and_openapi(api):
    with api.client(None) as client:
        assert client.get("/healthz").json() == {"status": "ok", "uploads_in_progress": 0, "upload_bytes_held": 0}
        spec = client.get("/openapi.json").json()
    upload = spec["paths"]["/v1/images"]["post"]
    assert {"image/*", "multipart/form-data"} <= set(upload["requestBody"]["content"])
    assert {"201", "401", "413", "415", "422"} <= set(upload["responses"])
    assert "/v1/images/{image_id}" in spec["paths"]
    assert {"APIKeyHeader", "HTTPBearer"} <= set(spec["components"]["securitySchemes"])


# -- authentication --------------------------------------------------------------------------------
def test_missing_or_invalid_key_is_401_and_lands_nothing(api):
    before = api.landed()
    data = small_image("JPEG", 6)
    with api.client(None) as client:
        missing = client.post("/v1/images", content=data)
        invalid = client.post("/v1/images", content=data, headers={"X-API-Key": "mfk_not-a-key"})
        bearer_invalid = client.post("/v1/images", content=data, headers={"Authorization": "Bearer nope"})
        status = client.get("/v1/images/whatever")
    for response in (missing, invalid, bearer_invalid, status):
        assert response.status_code == 401 and response.json()["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert api.landed() == before


def test_bearer_token_is_accepted(api):
    with api.client(None) as client:
        response = client.post(
            "/v1/images", content=small_image("GIF", 7), headers={"Authorization": f"Bearer {api.keys['bob']}"}
        )
    assert response.status_code == 201


def test_keys_file_is_reread_without_restart(api):
    key, line = mint_key("carol")
    with api.client(None) as client:
        assert client.post("/v1/images", content=small_image("PNG", 8), headers={"X-API-Key": key}).status_code == 401
        append_key_line(api.keys_file, line)
        response = client.post("/v1/images", content=small_image("PNG", 8), headers={"X-API-Key": key})
    assert response.status_code == 201
    assert api.keys_file.read_text().count(":") == 1 and key not in api.keys_file.read_text()  # only the hash


def post_with_key(api: Api, key: str, seed: int) -> int:
    with api.client(None) as client:
        return client.post("/v1/images", content=small_image("PNG", seed), headers={"X-API-Key": key}).status_code


def test_removing_a_key_line_revokes_it_even_when_the_edit_breaks_another_line(api):
    dave, dave_line = mint_key("dave")
    erin, erin_line = mint_key("erin")
    append_key_line(api.keys_file, dave_line)
    append_key_line(api.keys_file, erin_line)
    assert (post_with_key(api, dave, 20), post_with_key(api, erin, 21)) == (201, 201)

    kept = [line for line in api.keys_file.read_text().splitlines() if line != dave_line]
    api.keys_file.write_text("\n".join([*kept, "frank:not-a-hash", "garbage without a colon"]) + "\n")

    assert post_with_key(api, dave, 22) == 401  # revoked although the file now has malformed lines
    assert post_with_key(api, erin, 23) == 201  # the lines that are still valid keep working


def test_a_replaced_key_is_revoked_even_when_size_and_mtime_are_unchanged(api):
    old, old_line = mint_key("gina")
    append_key_line(api.keys_file, old_line)
    assert post_with_key(api, old, 24) == 201
    new, new_line = mint_key("gina")
    before = api.keys_file.stat()
    api.keys_file.write_text(api.keys_file.read_text().replace(old_line, new_line))
    os.utime(api.keys_file, ns=(before.st_atime_ns, before.st_mtime_ns))  # e.g. `cp -p`, rsync -t
    assert api.keys_file.stat().st_size == before.st_size
    assert post_with_key(api, old, 25) == 401
    assert post_with_key(api, new, 26) == 201


def test_an_unreadable_keys_file_validates_no_key_from_it(api, tmp_path):
    key, line = mint_key("hana")
    append_key_line(api.keys_file, line)
    assert post_with_key(api, key, 27) == 201
    saved = api.keys_file.read_bytes()
    try:
        api.keys_file.write_bytes(saved + b"\xff\xfe not utf-8\n")
        assert post_with_key(api, key, 28) == 401
        with api.client() as client:  # inline keys (MEMBERFLOW_API_KEYS) are not affected
            assert client.post("/v1/images", content=small_image("PNG", 29)).status_code == 201
    finally:
        api.keys_file.write_bytes(saved)
    assert post_with_key(api, key, 30) == 201


# -- bad input -------------------------------------------------------------------------------------
def test_wrong_content_type_is_decided_by_content(api):
    with api.client() as client:
        pdf = client.post("/v1/images", content=b"%PDF-1.7\n%%EOF\n", headers={"Content-Type": "image/jpeg"})
        png_as_text = client.post("/v1/images", content=small_image("PNG", 9), headers={"Content-Type": "text/plain"})
        bmp = client.post("/v1/images", content=small_image("BMP", 9), headers={"Content-Type": "image/bmp"})
    assert pdf.status_code == 415 and pdf.json()["code"] == "unsupported_type"
    assert bmp.status_code == 415
    assert png_as_text.status_code == 201 and png_as_text.json()["content_type"] == "image/png"


def test_text_file_named_jpg_is_415_and_quarantined(api):
    text = f"dear diary {uuid.uuid4()}\n".encode()
    with api.client() as client:
        response = client.post("/v1/images", files={"file": ("holiday.jpg", text, "image/jpeg")})
    assert response.status_code == 415
    [reason] = [r for r in api.quarantined() if r["sha256"] == hashlib.sha256(text).hexdigest()]
    assert (reason["reason"], reason["client"], reason["source"]) == ("unsupported_type", "alice", "api")


def test_empty_body_is_400(api):
    with api.client() as client:
        raw = client.post("/v1/images", content=b"", headers={"Content-Type": "image/jpeg"})
        multipart = client.post("/v1/images", files={"file": ("empty.jpg", b"")})
        no_file = client.post("/v1/images", data={"just": "a field"}, files={"other": (None, b"x")})
    assert raw.status_code == 400 and raw.json()["code"] == "empty"
    assert multipart.status_code == 400
    assert no_file.status_code == 400 and no_file.json()["code"] == "bad_multipart"


def test_truncated_jpeg_is_422(api):
    data = unique_jpeg(jpeg_of_about(40_000), 10)
    with api.client() as client:
        response = client.post("/v1/images", content=data[: len(data) * 2 // 3])
    assert response.status_code == 422 and response.json()["code"] == "truncated"


def test_png_claiming_ten_billion_pixels_is_422(api):
    with api.client() as client:
        response = client.post("/v1/images", content=png_claiming(100_000, 100_000))
    assert response.status_code == 422 and response.json()["code"] == "too_many_pixels"


def test_a_jpeg_hiding_a_huge_frame_behind_a_small_one_is_422(api):
    with api.client() as client:
        response = client.post("/v1/images", content=jpeg_with_second_frame(60_000, 60_000))
    assert response.status_code == 422 and response.json()["code"] == "too_many_pixels", response.text


def test_oversized_declared_body_is_refused_before_it_is_read(api):
    """The server answers 413 on the Content-Length alone: a raw socket sends the headers only."""
    headers = (
        f"POST /v1/images HTTP/1.1\r\nHost: x\r\nX-API-Key: {api.keys['alice']}\r\n"
        f"Content-Type: image/jpeg\r\nContent-Length: {50 * 1024 * 1024}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", int(api.url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(headers.encode())
        answer = sock.recv(65536).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert '"code":"too_large"' in answer


def test_oversized_streamed_body_is_refused_while_streaming(api):
    """Without a Content-Length (chunked), the answer comes once the limit is passed, long before the end."""
    before = api.landed()
    chunk = b"\0" * (256 * 1024)
    headers = (
        f"POST /v1/images HTTP/1.1\r\nHost: x\r\nX-API-Key: {api.keys['alice']}\r\n"
        "Content-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    total_chunks = 400  # 100 MB against a 2 MB limit
    with socket.create_connection(("127.0.0.1", int(api.url.rsplit(":", 1)[1])), timeout=30) as sock:
        sock.sendall(headers.encode())
        sent = 0
        while sent < total_chunks and not select.select([sock], [], [], 0)[0]:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += 1
        answer = sock.recv(65536).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413") and '"code":"too_large"' in answer, answer[:200]
    assert sent < total_chunks  # refused while the client was still sending
    assert api.landed() == before


def test_a_tiff_whose_tag_has_millions_of_values_is_422_too_complex(api):
    """BitsPerSample with 1M values (Pillow made an object of each: 10M took 0.57 s, and were accepted)."""
    with api.client() as client:
        response = client.post("/v1/images", content=tiff_with_tag(258, 3, 1_000_000))
    assert response.status_code == 422 and response.json()["code"] == "too_complex", response.text
    assert "tag 258 has 1,000,000 values" in response.json()["detail"]


# -- the request head's limits (http_protocol.py, as `memberflow api` serves) --------------------------
def head_answer_while_sending(api: Api, head: bytes, rest: Callable[[socket.socket], None] | None = None) -> bytes:
    """What the server answers on a raw connection (until it closes it) while `head`, then whatever
    `rest` sends, is still being sent by another thread."""
    sock = socket.create_connection(("127.0.0.1", int(api.url.rsplit(":", 1)[1])), timeout=30)

    def send() -> None:
        try:
            sock.sendall(head)
            if rest is not None:
                rest(sock)
        except OSError:  # the server closed the connection: what it refused is not read
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:  # after the answer, once the server stops reading what is still sent
        pass
    finally:
        sock.close()
        sender.join(timeout=30)
    return received


def test_a_request_head_of_too_many_header_fields_is_431_and_closed(api):
    """101 header fields (uvicorn alone would hand them all to the app, which answers 401)."""
    head = b"POST /v1/images HTTP/1.1\r\nHost: x\r\n" + b"a: b\r\n" * 100 + b"Content-Length: 3\r\n\r\nabc"
    answer = head_answer_while_sending(api, head)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"connection: close" in answer.lower() and b"more than 100 header fields" in answer


def test_an_endless_request_head_is_431_before_it_is_read(api):
    """Header lines sent for ever (uvicorn alone holds each as Python objects: 18 MB cost the API 320 MB),
    and one endless header value (joined quadratically by httptools: 80 MB held the event loop 4.5 s),
    are answered 431 as soon as 64 KiB of head have arrived; the connection is then closed."""

    def forever(piece: bytes) -> Callable[[socket.socket], None]:
        def send(sock: socket.socket) -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                sock.sendall(piece)

        return send

    start = time.monotonic()
    request_line = b"POST /v1/images HTTP/1.1\r\n"
    short_lines = head_answer_while_sending(api, request_line, forever(b"a: b\r\n" * 10_000))
    long_lines = head_answer_while_sending(api, request_line, forever((b"a: " + b"b" * 4000 + b"\r\n") * 10))
    value = head_answer_while_sending(api, request_line + b"X-Long: ", forever(b"v" * 65536))
    assert time.monotonic() - start < 15  # each closed after a second of lingering, not after 20 s of sending
    assert short_lines.startswith(b"HTTP/1.1 431 ") and b"more than 100 header fields" in short_lines
    for answer in (long_lines, value):
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"exceed 65,536 bytes" in answer
    with api.client(None) as client:
        assert client.get("/healthz").status_code == 200


def test_heads_within_the_limits_are_served_whatever_arrives_with_them(api):
    """A head near the limits with a 300 KB upload sent at once (head and body in one read: the parser is
    fed up to the limit, then the rest), and two requests pipelined in one send, are answered as usual."""
    data = unique_jpeg(jpeg_of_about(300_000), 160)
    cookie = "c" * 60_000
    filler = "".join(f"X-{n}: {n}\r\n" for n in range(90))
    head = (
        f"POST /v1/images HTTP/1.1\r\nHost: x\r\nX-API-Key: {api.keys['alice']}\r\nCookie: {cookie}\r\n{filler}"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    assert len(head) < 64 * 1024
    with socket.create_connection(("127.0.0.1", int(api.url.rsplit(":", 1)[1])), timeout=30) as sock:
        sock.sendall(head + data)
        status, _, body = answer_of(sock)
    assert (status, body["sha256"]) == (201, hashlib.sha256(data).hexdigest())
    pipelined = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2
    with socket.create_connection(("127.0.0.1", int(api.url.rsplit(":", 1)[1])), timeout=30) as sock:
        sock.sendall(pipelined + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK") == 3, received[:500]


def test_crafted_jpegs_are_refused_fast_and_do_not_delay_another_client(api):
    """Two connections keep sending ~2 MB JPEGs of 500,000 empty segments (each ~6 s of Pillow parsing,
    then accepted, before the limit); another client's uploads meanwhile answer as usual."""
    crafted = jpeg_with_empty_segments(small_image("JPEG", 50), (MAX_UPLOAD - 10_000) // 4)
    stop = threading.Event()
    abusive: list[httpx.Response] = []

    def abuse() -> None:
        with api.client("bob") as client:
            for _ in range(15):
                if stop.is_set():
                    break
                abusive.append(client.post("/v1/images", content=crafted))

    attackers = [threading.Thread(target=abuse) for _ in range(2)]
    for attacker in attackers:
        attacker.start()
    deadline = time.monotonic() + 60
    while not abusive and time.monotonic() < deadline:  # the attack is under way
        time.sleep(0.01)
    latencies = []
    with api.client() as client:
        for number in range(5):
            start = time.monotonic()
            assert client.post("/v1/images", content=small_image("PNG", 60 + number)).status_code == 201
            latencies.append(time.monotonic() - start)
    stop.set()
    for attacker in attackers:
        attacker.join(timeout=120)
    assert abusive and {(r.status_code, r.json()["code"]) for r in abusive} == {(422, "too_complex")}
    assert max(latencies) < 2, latencies
    # the same refused bytes are kept once (per client and hour), not once per attempt: no disk to fill
    copies = [r for r in api.quarantined() if r["sha256"] == hashlib.sha256(crafted).hexdigest()]
    hours = [copy["quarantined_at"][:13] for copy in copies]
    assert len(abusive) > 1 and len(hours) == len(set(hours)) <= 2 and copies[0]["reason"] == "too_complex"


def test_batches_take_waiting_clients_in_turn():
    """A client with many uploads queued delays another's by at most one batch (UploadBatches' fairness)."""
    batches = UploadBatches(lander=None, workers=0, max_batch=8, max_batch_bytes=100)  # only forms batches here

    def submit(data: bytes, client: str) -> None:
        batches.submit(Queued(Upload(data, "api", client), None, answer=None))

    for number in range(20):
        submit(b"g%02d" % number, "greedy")
    submit(b"p", "polite")
    submit(b"q", "polite")
    first = [(queued.upload.client, queued.upload.data) for queued in batches.next_batch()]
    assert first[:4] == [("greedy", b"g00"), ("polite", b"p"), ("greedy", b"g01"), ("polite", b"q")]
    greedy = [data for client, data in first if client == "greedy"]
    assert len(first) == 8 and greedy == [b"g%02d" % n for n in range(6)]
    submit(b"x" * 60, "big")
    submit(b"y" * 60, "big")
    second = [(queued.upload.client, len(queued.upload.data)) for queued in batches.next_batch()]
    sizes = [size for _, size in second]
    assert second[:2] == [("greedy", 3), ("big", 60)]
    assert sum(sizes[:-1]) < 100 <= sum(sizes)  # a batch stops growing once it holds max_batch_bytes


def test_a_form_of_very_many_parts_is_refused_without_parsing_them_all(api):
    """200,000 tiny form fields before the file part cost python-multipart ~14 s of CPU to parse."""
    boundary = "b0undary"
    field = f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nx\r\n'.encode()
    image = small_image("PNG", 74)
    file_part = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'.encode()
    few, many = (field * count + file_part + image + f"\r\n--{boundary}--\r\n".encode() for count in (3, 20_000))
    with api.client() as client:
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        assert client.post("/v1/images", content=few, headers=headers).status_code == 201
        start = time.monotonic()
        refused = client.post("/v1/images", content=many, headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (400, "bad_multipart"), refused.text
    assert "more than 16 parts" in refused.json()["detail"] and time.monotonic() - start < 5


def test_oversized_multipart_is_413(api):
    big = b"\xff\xd8\xff" + b"\0" * (MAX_UPLOAD + 10)
    with api.client() as client:
        response = client.post("/v1/images", files={"file": ("big.jpg", big)})
    assert response.status_code == 413


def test_fifty_concurrent_uploads_all_land_distinct_and_intact(api):
    base = jpeg_of_about(100_000, seed=11)
    images = [unique_jpeg(base, 1000 + n) for n in range(50)]

    def upload(data: bytes) -> httpx.Response:
        with api.client() as client:
            return client.post("/v1/images", content=data)

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(upload, images))
    assert [r.status_code for r in responses] == [201] * 50
    ids = [r.json()["image_id"] for r in responses]
    assert len(set(ids)) == 50
    with psycopg2.connect(api.dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT image_id, landing_path, sha256 FROM images.registry WHERE image_id = ANY(%s)", (ids,))
        rows = {image_id: (path, sha) for image_id, path, sha in cursor.fetchall()}
    assert set(rows) == set(ids)
    for data, image_id in zip(images, ids, strict=True):
        path, sha = rows[image_id]
        assert hashlib.sha256((api.data_dir / path).read_bytes()).hexdigest() == sha == hashlib.sha256(data).hexdigest()
        assert (api.data_dir / path).with_suffix(".json").exists()
    assert staged_leftovers(api) == []


def staged_leftovers(api: Api) -> list[Path]:
    """Files left in landing/.tmp/, where the API stages each upload's files before its claim."""
    return [p for p in (api.data_dir / "landing").rglob("*.tmp") if p.is_file()]


def test_concurrent_copies_of_the_same_bytes_land_once_and_leave_no_staged_files(api):
    """Each copy is staged (written under temporary names) before the registry says it is a duplicate:
    one lands, every other is answered as a duplicate of it and its staged files are removed."""
    data = unique_jpeg(jpeg_of_about(30_000, seed=5), 77)

    def upload(_: int) -> httpx.Response:
        with api.client() as client:
            return client.post("/v1/images", content=data)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(upload, range(8)))
    responses.append(upload(8))  # a later re-send, in a group of its own
    assert sorted(r.status_code for r in responses) == [200] * 8 + [201], [r.text for r in responses]
    assert len({r.json()["image_id"] for r in responses}) == 1
    assert [r.json()["duplicate"] for r in responses].count(False) == 1
    image_id = responses[0].json()["image_id"]
    assert len([p for p in api.landed() if p.stem == image_id]) == 2  # the image and its sidecar, once
    assert staged_leftovers(api) == []


def test_a_failed_folder_fsync_after_the_renames_is_503_and_lands_nothing(api, monkeypatch):
    """The renames are done but not known to be durable: no 201, nothing visible, the registry forgets
    the claim, and a retry lands the image as new."""
    fsync_paths = zones_module._fsync_paths

    def folders_fail(paths):
        if os.path.isdir(paths[0]):
            raise OSError(errno.EIO, "Input/output error")
        fsync_paths(paths)

    data = unique_jpeg(jpeg_of_about(30_000, seed=6), 78)
    image_id = image_id_for("alice", hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(zones_module, "_fsync_paths", folders_fail)
    with api.client() as client:
        failed = client.post("/v1/images", content=data)
        assert failed.status_code == 503, failed.text
        assert failed.json() == {"code": "unavailable", "detail": "the image storage is unavailable"}
        assert failed.headers["retry-after"] == "5"
        assert [p for p in api.landed() if p.stem == image_id] == [] and staged_leftovers(api) == []
        assert client.get(f"/v1/images/{image_id}").status_code == 404
        monkeypatch.setattr(zones_module, "_fsync_paths", fsync_paths)
        retried = client.post("/v1/images", content=data)
    assert retried.status_code == 201 and retried.json()["duplicate"] is False
    assert len([p for p in api.landed() if p.stem == image_id]) == 2


# -- S3 ----------------------------------------------------------------------------------------------
def test_upload_to_s3_zones_on_moto(s3_env, pg_dsn, tmp_path):
    zones = Zones.from_settings()
    key, line = mint_key("alice")
    app = create_app(ingest_settings(tmp_path, line), zones, pg_dsn, pool_size=4)
    data = unique_jpeg(jpeg_of_about(40_000), 12)
    with ApiServer(app) as url, httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as client:
        assert client.get("/healthz").status_code == 200
        response = client.post("/v1/images", content=data)
        again = client.post("/v1/images", content=data)
        bad = client.post("/v1/images", content=b"not an image at all")
    assert response.status_code == 201 and again.status_code == 200
    files = zones.list_files(layout.LANDING_PREFIX, recursive=True)
    image_id = response.json()["image_id"]
    assert sorted(f.name for f in files) == [f"{image_id}.jpg", f"{image_id}.json"]
    image = next(f for f in files if f.name.endswith(".jpg"))
    assert zones.read_bytes(image.relpath) == data
    sidecar = layout.Sidecar.from_json(zones.read_bytes(image.relpath.replace(".jpg", ".json")))
    assert sidecar.image_relpath == image.relpath
    assert bad.status_code == 415
    assert any(f.name.endswith(".reason.json") for f in zones.list_files(layout.QUARANTINE_PREFIX, recursive=True))


# -- failures of what the API depends on ------------------------------------------------------------
def test_answers_never_carry_driver_messages_or_socket_paths_when_the_database_is_down(pg_server_uri, tmp_path):
    database = f"test_api_down_{uuid.uuid4().hex[:8]}"
    ensure_database(pg_server_uri, database)
    key, line = mint_key("alice")
    dsn = migrated(with_database(pg_server_uri, database))
    app = create_app(ingest_settings(tmp_path, line), Zones(str(tmp_path)), dsn, 2)
    admin = psycopg2.connect(pg_server_uri)
    admin.autocommit = True
    socket_dir = pg_server_uri.split("host=", 1)[1].split("&", 1)[0]

    def database_accepts_connections(allowed: bool) -> None:
        with admin.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
            if not allowed:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))

    try:
        with ApiServer(app) as url, httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as client:
            assert client.get("/healthz").status_code == 200
            database_accepts_connections(False)
            answers = [client.get("/healthz") for _ in range(3)]  # a broken pooled connection, then new ones
            answers += [client.post("/v1/images", content=small_image("PNG", 40)), client.get(f"/v1/images/{'0' * 32}")]
            for answer in answers:
                assert answer.status_code == 503 and answer.json()["code"] == "unavailable", answer.text
                assert answer.json()["detail"] == "the image registry is unavailable"
                assert answer.headers.get("retry-after") == "5", answer.request.url
                for internal in (socket_dir, ".s.PGSQL", "psycopg2", "FATAL", database, "server"):
                    assert internal not in answer.text
            database_accepts_connections(True)
            assert client.get("/healthz").status_code == 200  # recovers by itself
    finally:
        admin.close()


@pytest.mark.parametrize("page, script", [("/docs", "SwaggerUIBundle"), ("/redoc", "Redoc")])
def test_docs_pages_load_every_asset_from_the_api_itself(api, page, script):
    """Offline (no CDN) the pages must still work: every script, style and icon comes from this server."""
    with api.client(None) as client:
        html = client.get(page)
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        assert "http://" not in html.text and "https://" not in html.text and "//cdn" not in html.text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert assets and all(asset.startswith("/docs-assets/") for asset in assets), assets
        bodies = {asset: client.get(asset) for asset in assets}
        assert all(response.status_code == 200 for response in bodies.values())
        assert any(script in response.text for response in bodies.values() if asset_is_script(response))
        assert "'/openapi.json'" in html.text or '"/openapi.json"' in html.text
        assert client.get("/openapi.json").status_code == 200


def asset_is_script(response: httpx.Response) -> bool:
    return "javascript" in response.headers["content-type"]


# -- slow and stalled bodies -------------------------------------------------------------------------
BODY_TIMEOUT = 2.0  # a test's steps while bodies are stalled must fit in this, on a loaded machine too
BODY_DEADLINE = 5.0
BODY_MEMORY = 4 * MAX_UPLOAD  # each client may hold half: two stalled bodies of almost MAX_UPLOAD


@pytest.fixture(scope="module")
def strict_api(pg_server_uri, tmp_path_factory):
    """An API with short body timeouts and a small memory budget for bodies."""
    database = f"test_api_strict_{uuid.uuid4().hex[:8]}"
    ensure_database(pg_server_uri, database)
    data_dir = tmp_path_factory.mktemp("strict") / "data"
    keys, lines = {}, []
    for client in ("alice", "bob", "carol"):
        keys[client], line = mint_key(client)
        lines.append(line)
    settings = dataclasses.replace(
        ingest_settings(data_dir, ",".join(lines)),
        api_body_timeout_seconds=BODY_TIMEOUT,
        api_body_deadline_seconds=BODY_DEADLINE,
        api_max_bodies=8,
        api_max_body_memory_bytes=BODY_MEMORY,
    )
    dsn = migrated(with_database(pg_server_uri, database))  # as the deployment's migrate step leaves it
    with ApiServer(create_app(settings, Zones(str(data_dir)), dsn, pool_size=4)) as url:
        yield Api(url, data_dir, dsn, settings.api_keys_file, keys)


def start_upload(api: Api, who: str, declared: int | None, sent: bytes) -> socket.socket:
    """A raw upload that sends its headers and `sent`, then nothing more (a stalled client)."""
    framing = f"Content-Length: {declared}" if declared is not None else "Transfer-Encoding: chunked"
    head = f"POST /v1/images HTTP/1.1\r\nHost: x\r\nX-API-Key: {api.keys[who]}\r\n{framing}\r\n\r\n"
    body = sent if declared is not None else b"%x\r\n%s\r\n" % (len(sent), sent) if sent else b""
    sock = socket.create_connection(("127.0.0.1", int(api.url.rsplit(":", 1)[1])), timeout=30)
    sock.sendall(head.encode() + body)
    return sock


def wait_for_uploads_in_progress(api: Api, count: int) -> dict:
    """Wait until the server holds `count` uploads (it reads a new connection's request asynchronously)."""
    with api.client(None) as client:

        def holding() -> dict | None:
            health = client.get("/healthz").json()
            return health if health["uploads_in_progress"] == count else None

        return wait_until(holding, 30, f"{count} uploads in progress", every=0.01)


def answer_of(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """Status, headers and JSON body of the server's (first) answer on a raw connection, which is then closed."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    sock.close()
    return int(status_line.split()[1]), headers, json.loads(body)


def test_a_stalled_body_is_answered_408_and_nothing_lands(strict_api):
    before = strict_api.landed()
    start = time.monotonic()
    sock = start_upload(strict_api, "alice", 100_000, small_image("PNG", 70)[:50])
    status, headers, body = answer_of(sock)
    assert (status, body["code"]) == (408, "body_timeout") and headers["connection"] == "close"
    assert BODY_TIMEOUT <= time.monotonic() - start < BODY_DEADLINE
    assert strict_api.landed() == before


def test_a_body_that_trickles_in_is_answered_408_at_the_deadline(strict_api):
    start = time.monotonic()  # before the request: the server's deadline runs from its first byte
    sock = start_upload(strict_api, "alice", 100_000, b"\xff\xd8")
    try:
        while time.monotonic() - start < 3 * BODY_DEADLINE:  # a byte every half timeout: never idle for long
            sock.sendall(b"\0")
            if select.select([sock], [], [], BODY_TIMEOUT / 2)[0]:
                break
    except OSError:
        pass  # the server answered and closed while we were sending
    status, _, body = answer_of(sock)
    assert (status, body["code"]) == (408, "body_timeout") and "not complete after" in body["detail"]
    assert BODY_DEADLINE <= time.monotonic() - start < 3 * BODY_DEADLINE


ALMOST_FULL = MAX_UPLOAD - 1000  # two such bodies take one client's share of BODY_MEMORY


def stall_almost_full_bodies(api: Api, *clients: str) -> list[socket.socket]:
    stalled = [start_upload(api, who, ALMOST_FULL, b"\xff\xd8" + bytes(ALMOST_FULL // 2)) for who in clients]
    assert wait_for_uploads_in_progress(api, len(clients))["upload_bytes_held"] == len(clients) * ALMOST_FULL
    return stalled


def assert_they_time_out_and_free_what_they_held(api: Api, stalled: list[socket.socket]) -> None:
    assert [answer_of(sock)[0] for sock in stalled] == [408] * len(stalled)
    assert wait_for_uploads_in_progress(api, 0)["upload_bytes_held"] == 0


def test_one_clients_stalled_bodies_cannot_hold_more_than_its_share_of_memory(strict_api):
    small = small_image("PNG", 71)
    stalled = stall_almost_full_bodies(strict_api, "bob", "bob")
    try:
        # bob's share (half the budget) is taken: his next upload is refused before its body is read
        status, headers, body = answer_of(start_upload(strict_api, "bob", ALMOST_FULL, b""))
        assert (status, body["code"], headers["retry-after"]) == (503, "busy", "5"), body
        assert "this client" in body["detail"]
        # a body of undeclared length is refused once it needs more than the share
        assert answer_of(start_upload(strict_api, "bob", None, b"\xff\xd8" + bytes(100)))[0] == 503
        with strict_api.client("alice") as client:  # another client still uploads
            assert client.post("/v1/images", content=small).status_code == 201
    finally:
        assert_they_time_out_and_free_what_they_held(strict_api, stalled)
    with strict_api.client("bob") as client:
        assert client.post("/v1/images", content=small_image("PNG", 72)).status_code == 201


def test_stalled_bodies_cannot_hold_more_than_the_memory_budget(strict_api):
    half_the_limit = jpeg_of_about(MAX_UPLOAD // 2)  # made before the clock runs
    stalled = stall_almost_full_bodies(strict_api, "bob", "bob", "carol", "carol")
    try:
        with strict_api.client("alice") as client:
            refused = client.post("/v1/images", content=half_the_limit)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert "all the memory" in refused.json()["detail"]
    finally:
        assert_they_time_out_and_free_what_they_held(strict_api, stalled)
    with strict_api.client("alice") as client:
        assert client.post("/v1/images", content=half_the_limit).status_code == 201


def test_one_client_cannot_hold_every_upload_slot(strict_api):
    small = small_image("PNG", 73)
    stalled = [start_upload(strict_api, "bob", 1000, b"\xff\xd8") for _ in range(4)]  # half of 8 slots
    try:
        wait_for_uploads_in_progress(strict_api, 4)
        status, _, body = answer_of(start_upload(strict_api, "bob", 1000, b""))
        assert (status, body["code"]) == (503, "busy") and "4 uploads in progress" in body["detail"]
        with strict_api.client("alice") as client:
            assert client.post("/v1/images", content=small).status_code == 201
    finally:
        assert_they_time_out_and_free_what_they_held(strict_api, stalled)


def test_the_api_rebuilds_at_start_an_acknowledged_sidecar_a_power_failure_lost(api, tmp_path):
    uploads = [unique_jpeg(jpeg_of_about(30_000), 900 + n) for n in range(2)]
    with api.client() as client:
        answers = [client.post("/v1/images", content=data).json() for data in uploads]
    sidecars = [
        api.data_dir / layout.sidecar_relpath(datetime.fromisoformat(body["received_at"]), body["image_id"])
        for body in answers
    ]
    written = sidecars[0].read_bytes()
    # Without a journal, the sidecar (never fsynced) can lose its inode in a power failure and its name
    # with it; the image and the registry row are durable.
    sidecars[0].unlink()

    settings = dataclasses.replace(ingest_settings(api.data_dir, ""), api_keys_file=tmp_path / "keys.txt")
    with ApiServer(create_app(settings, Zones(str(api.data_dir)), api.dsn, pool_size=2)):
        assert sidecars[0].read_bytes() == written
        assert sidecars[1].exists()
