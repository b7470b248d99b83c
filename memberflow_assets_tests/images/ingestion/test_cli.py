"""The ingestion commands: `memberflow api-key`, `memberflow api`, the API beside `memberflow start`,
`memberflow kafka-send` + `memberflow kafka-ingest --once`."""

import os
import signal
import subprocess
import sys
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


def test_memberflow_api_serves_uploads(memberflow_env, capsys):
    main(["api-key", "--client", "alice"])
    key = capsys.readouterr().out.strip()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "memberflow_assets.cli", "api", "--port", str(port)],
        env={**os.environ, "MEMBERFLOW_API_PORT": "1"},  # the flag wins over the variable
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(url) or server.poll() is not None, what="the API to serve")
        assert server.poll() is None, "the API did not start"
        response = httpx.post(f"{url}/v1/images", content=small_image("PNG"), headers={"X-API-Key": key})
        assert response.status_code == 201
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert len(list((memberflow_env / "landing" / "images").rglob("*.json"))) == 1


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
