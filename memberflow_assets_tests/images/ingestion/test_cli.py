"""The ingestion commands: `memberflow api-key`, `memberflow api`, the API beside `memberflow start`,
`memberflow kafka-send` + `memberflow kafka-ingest --once`."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from memberflow_assets.cli import main
from memberflow_assets.images.ingestion.api_keys import hash_key
from memberflow_assets.testing.images import small_image
from memberflow_assets.testing.network import free_port
from memberflow_assets_tests.conftest import create_topic
from memberflow_assets_tests.helpers import children_of, start_beside_dagster, wait_until
from memberflow_assets_tests.images.ingestion.kafka_messages import sidecars

BESIDE = "memberflow_assets.cli.image_ingestion"


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_api_key_prints_the_key_once_and_stores_only_its_hash(memberflow_env, capsys):
    assert main(["api-key", "--client", "alice"]) == 0
    key = capsys.readouterr().out.strip()
    stored = (memberflow_env / "api_keys.txt").read_text()
    assert key.startswith("mfk_") and key not in stored
    assert stored == f"alice:{hash_key(key)}\n"
    assert oct((memberflow_env / "api_keys.txt").stat().st_mode & 0o777) == "0o600"
    assert main(["api-key", "--client", "../etc"]) == 2
    assert "client name" in capsys.readouterr().err


@contextlib.contextmanager
def memberflow_api(**environment: str) -> Iterator[str]:
    """`memberflow api` in a process of its own; yields its URL."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "memberflow_assets.cli", "api", "--port", str(port)],
        env={**os.environ, "MEMBERFLOW_API_PORT": "1", **environment},  # the flag wins over the variable
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(url) or server.poll() is not None, what="the API to serve")
        assert server.poll() is None, "the API did not start"
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_memberflow_api_serves_uploads(memberflow_env, capsys):
    main(["api-key", "--client", "alice"])
    key = capsys.readouterr().out.strip()
    with memberflow_api() as url:
        response = httpx.post(f"{url}/v1/images", content=small_image("PNG"), headers={"X-API-Key": key})
        assert response.status_code == 201
        # served with the API's HTTP protocol, which bounds a request's head (test_api.py tests it further)
        too_many = {f"X-{n}": "1" for n in range(100)}
        assert httpx.get(f"{url}/healthz", headers=too_many).status_code == 431
    assert len(list((memberflow_env / "landing" / "images").rglob("*.json"))) == 1


def _answer_when_closed(connection: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (fails if it does not within `timeout`)."""
    connection.settimeout(timeout)
    received = b""
    while chunk := connection.recv(4096):
        received += chunk
    return received


def test_memberflow_api_closes_connections_whose_headers_do_not_arrive_in_time(memberflow_env, capsys):
    """A silent connection, headers sent a byte at a time, and an idle keep-alive connection kept open
    with blank lines are each answered 408 and closed after the header timeout; an upload whose headers
    arrive at once but whose body takes longer than that timeout is not affected."""
    main(["api-key", "--client", "alice"])
    key = capsys.readouterr().out.strip()
    image = small_image("PNG")
    with memberflow_api(MEMBERFLOW_API_HEADER_TIMEOUT_SECONDS="1.5") as url:
        port = int(url.rsplit(":", 1)[1])
        silent = socket.create_connection(("127.0.0.1", port))
        trickling = socket.create_connection(("127.0.0.1", port))
        kept_alive = socket.create_connection(("127.0.0.1", port))
        kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept_alive.recv(4096).startswith(b"HTTP/1.1 200")
        head = f"POST /v1/images HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n".encode()
        for byte in head[:24]:  # a byte every 50 ms for 1.2 s: uvicorn alone would wait for the rest for ever
            trickling.sendall(bytes([byte]))
            kept_alive.sendall(b"\r\n")  # each cancels uvicorn's own keep-alive timeout
            time.sleep(0.05)
        for connection in (silent, trickling, kept_alive):
            with connection:
                assert b"408 Request Timeout" in _answer_when_closed(connection, timeout=10)

        slow_body = socket.create_connection(("127.0.0.1", port))
        with slow_body:
            slow_body.sendall(
                f"POST /v1/images HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n"
                f"Content-Type: image/png\r\nContent-Length: {len(image)}\r\nConnection: close\r\n\r\n".encode()
            )
            half = len(image) // 2
            slow_body.sendall(image[:half])
            time.sleep(2.5)  # longer than the header timeout: only the body's own timeout (30 s) applies
            slow_body.sendall(image[half:])
            assert _answer_when_closed(slow_body, timeout=30).startswith(b"HTTP/1.1 201")
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def test_start_serves_the_api_beside_dagster_and_it_stops_with_it(memberflow_env, monkeypatch):
    port = free_port()
    monkeypatch.setenv("MEMBERFLOW_API_PORT", str(port))
    parent = start_beside_dagster(BESIDE)
    api = children_of(parent.pid)
    try:
        assert len(api) == 1
        wait_until(lambda: healthy(f"http://127.0.0.1:{port}"), what="the API beside dagster")
        parent.kill()  # `dagster dev` going away, however it goes
        parent.wait()
        wait_until(
            lambda: not Path(f"/proc/{api[0]}").exists() or "Z" in Path(f"/proc/{api[0]}/stat").read_text(),
            what="the API to stop with its parent",
        )
    finally:
        parent.kill()
        for pid in api:
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)


def test_start_without_the_api(memberflow_env, monkeypatch):
    monkeypatch.setenv("MEMBERFLOW_START_API", "0")
    parent = start_beside_dagster(BESIDE)
    try:
        assert children_of(parent.pid) == []  # start_beside_dagster has returned without starting the API
    finally:
        parent.kill()
        parent.wait()


def test_kafka_send_and_ingest_once(memberflow_env, kafka_bootstrap, monkeypatch, tmp_path):
    topic = create_topic(kafka_bootstrap)
    monkeypatch.setenv("MEMBERFLOW_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("MEMBERFLOW_KAFKA_TOPIC", topic)
    files = []
    for number, fmt in enumerate(["JPEG", "PNG", "GIF"]):
        files.append(tmp_path / f"photo{number}.img")
        files[-1].write_bytes(small_image(fmt, number))
    assert main(["kafka-send", "--source-application", "phone-app", *map(str, files)]) == 0
    assert main(["kafka-ingest", "--once"]) == 0
    landed = sidecars(memberflow_env)
    assert sorted(s.kafka["key"] for s in landed) == ["photo0", "photo1", "photo2"]
    assert {s.client for s in landed} == {"phone-app"}
