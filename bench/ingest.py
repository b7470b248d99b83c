"""Image ingestion benchmark (issues 4, 10, 13), on loopback with ~200 KB JPEGs, every image distinct.

Upload API: throughput and p50/p99 latency at concurrency 1 and 16 of `memberflow api` (uvicorn, one
worker; embedded PostgreSQL; local zones) against two ceilings on the same uvicorn: a FastAPI no-op
endpoint that reads the body and answers 201, and the durable ceiling that does the minimum the
guarantee needs — read the body, write it to a new file, fsync the file and its folder, answer 201 —
as a plain ASGI endpoint, as the API serves uploads.
Measured durable (the default: files fsynced and the registry commit flushed before the 201) and
with MEMBERFLOW_INGEST_DURABLE=0. Target (issue 13): durable >= 70% of the durable ceiling at
concurrency 16, p99 < 100 ms. Then where a durable upload's time goes (validation, registry, fsync).

Abuse (issue 10), on a fresh `memberflow api` with its default limits: a normal client's p50/p99 and
the API's memory (RSS) while 2 connections keep sending crafted 10 MB JPEGs of 2.5 million empty
segments (target p99 < 2 s), and while 30 clients each hold a body stalled at 19 of 20 MiB (target
memory < 512 MB).

Kafka: images/s landed by `KafkaIngestor` against two ceilings measured in the same run on the same
topic and consumer settings (both until the end of every partition): raw consumption, and a durable
ceiling that consumes the same and does the minimum the at-least-once guarantee needs (each value to a
new file, fsync, offset commit). Target: durable landing >= 70% of the durable ceiling. Also prints where
the durable ingestor's time goes (validation, registry, files, fsync, commits).

    .venv/bin/python bench/ingest.py [--images 400] [--kafka-images 600] [--skip-api | --skip-kafka] [--skip-abuse]

The client is a minimal keep-alive HTTP/1.1 client over raw sockets (one thread per connection) so
that its own cost is small and identical for both servers. Everything runs on the same machine:
client, server, PostgreSQL and broker share the cores, so figures move with the machine's load.
"""

import argparse
import functools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from memberflow_assets.testing.images import jpeg_of_about, unique_jpeg  # noqa: E402
from memberflow_assets.testing.network import free_port  # noqa: E402

IMAGE_BYTES = 200_000


# -- the ceiling: uvicorn + FastAPI, reading the body and doing nothing with it ------------------------
def noop_app():
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.post("/v1/images", status_code=201)
    async def upload(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"size_bytes": len(body)}, status_code=201)

    return app


def write_durably(folder: Path, data: bytes) -> None:
    """The durable ceiling's work: `data` in a new file, fsynced with its folder."""
    descriptor = os.open(folder / uuid.uuid4().hex, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with memoryview(data) as view:
            written = 0
            while written < len(data):
                written += os.write(descriptor, view[written:])
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)  # the new name is durable too
    finally:
        os.close(directory)


def durable_app():
    """The durable ceiling: the minimum a durable 201 needs — the body in a new file, fsynced with its
    folder — served as the API serves uploads: a plain ASGI endpoint (no FastAPI routing), the write on
    a thread."""
    import asyncio

    folder = Path(os.environ["BENCH_DURABLE_DIR"])
    folder.mkdir(parents=True, exist_ok=True)

    async def upload(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        await asyncio.to_thread(write_durably, folder, body)
        answer = json.dumps({"size_bytes": len(body)}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return upload


def serve_ceiling(kind: str, port: int, workers: int) -> None:
    import uvicorn

    from memberflow_assets.images.ingestion.http_protocol import UVICORN_OPTIONS

    uvicorn.run(  # the API's own uvicorn settings (its HTTP protocol), so that the comparison is the app's
        f"ingest:{kind}_app",
        factory=True,
        app_dir=str(Path(__file__).parent),
        host="127.0.0.1",
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
        **UVICORN_OPTIONS,
    )


# -- a small, cheap HTTP client ----------------------------------------------------------------------
def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def request_bytes(body: bytes, key: str) -> bytes:
    head = (
        f"POST /v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
        f"Content-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def exchange(sock: socket.socket, request: bytes, buffer: bytearray) -> int:
    """Send one request on a keep-alive connection; return the response status."""
    sock.sendall(request)
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        rest += chunk
    buffer[:] = rest[length:]
    return status


def load(port: int, requests: list[bytes], concurrency: int) -> dict:
    """Send every request once over `concurrency` connections: the seconds it took and each latency."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    shares = [requests[i::concurrency] for i in range(concurrency)]
    ready = threading.Barrier(concurrency + 1)

    def worker(share: list[bytes]) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buffer = bytearray()
            ready.wait()
            mine = []
            for request in share:
                start = time.perf_counter()
                status = exchange(sock, request, buffer)
                mine.append(time.perf_counter() - start)
                if status != 201:
                    with lock:
                        failures.append(str(status))
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    ready.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. status {failures[0]}")
    return {"seconds": seconds, "latencies": latencies}


def percentiles(latencies: list[float]) -> tuple[float, float]:
    """p50 and p99 of latencies in seconds, in milliseconds."""
    ordered = sorted(latencies)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def distinct_images(count: int, offset: int) -> list[bytes]:
    base = jpeg_of_about(IMAGE_BYTES)
    return [unique_jpeg(base, offset + number) for number in range(count)]


# -- the API benchmark -------------------------------------------------------------------------------
def start_api(port: int, workers: int, environment: dict) -> subprocess.Popen:
    command = [sys.executable, "-m", "memberflow_assets.cli", "api", "--port", str(port), "--no-access-log"]
    return subprocess.Popen([*command, "--workers", str(workers)], env={**os.environ, **environment})


def bench_api(images: int, workers: int, rounds: int, new_database, work: Path) -> None:
    from memberflow_assets.images.ingestion.api_keys import mint_key

    key, line = mint_key("bench")
    base = jpeg_of_about(IMAGE_BYTES)
    print(f"\n## Upload API: {images} distinct JPEGs of {len(base):,} bytes each, {workers} uvicorn worker(s)\n")
    print(
        "| server | concurrency | images/s | p50 ms | p99 ms | vs no-op | vs durable ceiling "
        "| CPU ms per image: server (+ PostgreSQL) | server context switches per image: voluntary (involuntary) "
        "| disk writes / flushes per image (whole device) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    postgres_pid = int((work / "pg" / "postmaster.pid").read_text().split()[0])
    servers = []
    for kind, name in (("noop", "no-op ceiling"), ("durable", "durable ceiling (write, fsync file + folder)")):
        port = free_port()
        command = [sys.executable, __file__, "--serve", kind, "--port", str(port), "--workers", str(workers)]
        environment = {**os.environ, "BENCH_DURABLE_DIR": str(work / "durable-ceiling")}
        servers.append((name, port, subprocess.Popen(command, env=environment)))
    for durable in ("1", "0"):
        port = free_port()
        environment = {
            "MEMBERFLOW_DATA_DIR": str(work / f"data-durable{durable}"),
            "MEMBERFLOW_PG_DSN": new_database(f"api_durable{durable}"),
            "MEMBERFLOW_API_KEYS": line,
            "MEMBERFLOW_INGEST_DURABLE": durable,
        }
        label = "durable" if durable == "1" else "not durable"
        servers.append((f"memberflow api ({label})", port, start_api(port, workers, environment)))
    try:
        for _, port, process in servers:
            wait_for_port(port, process)
        ceilings: dict[tuple[str, int], float] = {}
        offset = 0
        share = images // rounds
        for concurrency in (1, 16):
            for _, port, _ in servers:
                load(port, [request_bytes(body, key) for body in distinct_images(20, offset)], concurrency)  # warm
                offset += 20
            # In rounds, each server in turn, so that a burst of load elsewhere hits every server alike.
            totals = {
                name: {"seconds": 0.0, "latencies": [], "cpu": 0.0, "db": 0.0, "switches": (0, 0), "disk": (0, 0)}
                for name, *_ in servers
            }
            for _ in range(rounds):
                for name, port, process in servers:
                    batch = [request_bytes(body, key) for body in distinct_images(share, offset)]
                    offset += share
                    server_before, postgres_before = cpu_seconds(process.pid), cpu_seconds(postgres_pid)
                    switches_before, disk_before = context_switches(process.pid), disk_requests(work)
                    result = load(port, batch, concurrency)
                    total = totals[name]
                    total["seconds"] += result["seconds"]
                    total["latencies"] += result["latencies"]
                    total["cpu"] += cpu_seconds(process.pid) - server_before
                    total["db"] += cpu_seconds(postgres_pid) - postgres_before
                    switches = zip(context_switches(process.pid), switches_before, total["switches"], strict=True)
                    total["switches"] = tuple(so_far + after - before for after, before, so_far in switches)
                    disk = zip(disk_requests(work), disk_before, total["disk"], strict=True)
                    total["disk"] = tuple(so_far + after - before for after, before, so_far in disk)
            for name, *_ in servers:
                total = totals[name]
                count = len(total["latencies"])
                rps, (p50, p99) = count / total["seconds"], percentiles(total["latencies"])
                ceilings.setdefault((name.split()[0], concurrency), rps)
                noop, durable = ceilings[("no-op", concurrency)], ceilings.get(("durable", concurrency))
                versus_durable = f"{rps / durable:.0%}" if durable else ""
                database = f" (+ {total['db'] / count * 1000:.2f})" if name.startswith("memberflow") else ""
                voluntary, involuntary = (switches / count for switches in total["switches"])
                writes, flushes = (requests / count for requests in total["disk"])
                print(
                    f"| {name} | {concurrency} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {rps / noop:.0%} | "
                    f"{versus_durable} | {total['cpu'] / count * 1000:.2f}{database} | "
                    f"{voluntary:.1f} ({involuntary:.1f}) | {writes:.1f} / {flushes:.1f} |"
                )
    finally:
        for _, _, process in servers:
            process.terminate()
            process.wait(timeout=30)
    bench_where_the_time_goes(new_database, work)


def bench_where_the_time_goes(new_database, work: Path, groups: int = 20, group_size: int = 16) -> None:
    """A durable upload's work without HTTP, as the API's batch worker does it at concurrency 16, in
    batches of 16: validation + SHA-256 of each, the batch's images and sidecars written under temporary
    names with their disk writes started, the registry claim with its flushed commit (while the disk
    writes), the images' fsyncs (an API sidecar is rebuilt after a power failure instead) and the renames
    with one folder fsync; beside it the durable
    ceiling's work on the same images. Wall time, and CPU time of this process (kernel included: writing
    200 KB into the page cache is most of it)."""
    import dataclasses

    from memberflow_assets.images.ingestion.landing import Upload, open_lander
    from memberflow_assets.settings import Settings
    from memberflow_assets.zones import Zones

    settings = dataclasses.replace(Settings.from_env().ingest, durable=True)
    spent: dict[str, list[float]] = {}  # phase -> [wall, CPU] seconds

    def timed(phase: str, work, items: list) -> list:
        """`work` applied to each of `items`, its time added to `phase`."""
        wall, cpu = time.perf_counter(), time.process_time()
        results = [work(item) for item in items]
        totals = spent.setdefault(phase, [0.0, 0.0])
        totals[0] += time.perf_counter() - wall
        totals[1] += time.process_time() - cpu
        return results

    ceiling = work / "breakdown-ceiling"
    ceiling.mkdir()
    with open_lander(Zones(str(work / "breakdown")), new_database("breakdown"), settings, 2) as lander:
        for group in range(groups):
            blobs = distinct_images(group_size, 30_000_000 + group * group_size)
            uploads = [Upload(data, "api", "bench") for data in blobs]
            prepared = timed("validation + SHA-256 (batch worker)", lander.prepare, uploads)
            staged = timed(
                "images + sidecars written under temporary names, their disk writes started (batch worker)",
                lander.stage_many,
                [prepared],
            )
            timed(
                "registry claim + flushed commit, the images' fsyncs, renames + folder fsync (batch worker)",
                lander.land_prepared,
                staged,
            )
            timed(
                "the durable ceiling's work: a new file, fsynced with its folder",
                functools.partial(write_durably, ceiling),
                blobs,
            )
    images = groups * group_size
    print(
        f"\n| where a durable upload's time goes (groups of {group_size}, no HTTP) | wall ms per image "
        "| CPU ms per image |"
    )
    print("|---|---|---|")
    for phase, (wall, cpu) in spent.items():
        print(f"| {phase} | {wall / images * 1000:.2f} | {cpu / images * 1000:.2f} |")


def family(pid: int) -> list[tuple[Path, list[str]]]:
    """/proc folders and stat fields of a process and its children (uvicorn workers, PostgreSQL backends)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):  # the process itself is one of them
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # a process that just ended
            continue
        if stat.parent.name == str(pid) or int(fields[1]) == pid:
            found.append((stat.parent, fields))
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children so far."""
    return sum(int(fields[11]) + int(fields[12]) for _, fields in family(pid)) / os.sysconf("SC_CLK_TCK")


def disk_requests(folder: Path) -> tuple[int, int]:
    """(write, flush) requests completed so far by the block device holding `folder`, whoever made them:
    each fsync here issues a cache flush to the disk, and the device serves every process's."""
    device = os.stat(folder).st_dev
    for line in Path("/proc/diskstats").read_text().splitlines():
        fields = line.split()
        if (int(fields[0]), int(fields[1])) == (os.major(device), os.minor(device)):
            return int(fields[7]), int(fields[18]) if len(fields) > 18 else 0
    return 0, 0


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches so far of the live threads of a process and its children:
    each hand-off of an upload between threads, and each wait for I/O, is a voluntary one."""
    voluntary = involuntary = 0
    for folder, _ in family(pid):
        for status in folder.glob("task/*/status"):
            try:
                lines = status.read_text().splitlines()
            except OSError:  # a thread that just ended
                continue
            for line in lines:
                if line.startswith("voluntary_ctxt_switches"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    involuntary += int(line.split()[1])
    return voluntary, involuntary


# -- abuse: crafted images and stalled bodies against a normal client ---------------------------------
def memory_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, MB."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def abuse_row(situation: str, normal: dict, pid: int, notes: str) -> None:
    rss, peak = memory_mb(pid)
    print(
        f"| {situation} | {normal['p50_ms']:.1f} | {normal['p99_ms']:.1f} | {normal['statuses']} | "
        f"{rss:.0f} ({peak:.0f}) | {notes} |"
    )


def normal_client(port: int, key: str, count: int, offset: int) -> dict:
    """`count` uploads one after another, as a well-behaved client sends them: p50/p99 and statuses."""
    latencies, statuses = [], []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        buffer = bytearray()
        for body in distinct_images(count, offset):
            start = time.perf_counter()
            statuses.append(exchange(sock, request_bytes(body, key), buffer))
            latencies.append(time.perf_counter() - start)
    p50, p99 = percentiles(latencies)
    return {"p50_ms": p50, "p99_ms": p99, "statuses": sorted(set(statuses))}


def keep_sending(port: int, request: bytes, stop: threading.Event, answers: list) -> None:
    """An abusive connection: the same request again and again until told to stop."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        buffer = bytearray()
        while not stop.is_set():
            start = time.perf_counter()
            answers.append((exchange(sock, request, buffer), time.perf_counter() - start))


def stall(port: int, key: str, declared: int, sent: int) -> socket.socket | None:
    """A body that declares `declared` bytes, sends `sent` of them and goes silent (None: the server
    closed the connection while it was sending)."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = f"POST /v1/images HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\nContent-Length: {declared}\r\n\r\n"
    try:
        sock.sendall(head.encode() + b"\xff\xd8" + bytes(sent - 2))
    except OSError:  # answered 503 and closed while we were sending
        sock.close()
        return None
    return sock


def bench_abuse(new_database, work: Path) -> None:
    from memberflow_assets.images.ingestion.api_keys import mint_key
    from memberflow_assets.testing.images import jpeg_with_empty_segments

    keys = {name: mint_key(name) for name in ["normal", "abuser", *(f"staller{n}" for n in range(30))]}
    port = free_port()
    environment = {
        "MEMBERFLOW_DATA_DIR": str(work / "data-abuse"),
        "MEMBERFLOW_PG_DSN": new_database("api_abuse"),
        "MEMBERFLOW_API_KEYS": ",".join(line for _, line in keys.values()),
    }
    api = start_api(port, 1, environment)
    normal_key = keys["normal"][0]
    print("\n## Abuse: a normal client (one connection, 100 uploads of ~200 KB) while others misbehave\n")
    print("| situation | normal p50 ms | normal p99 ms | normal answers | API memory MB (peak so far) | notes |")
    print("|---|---|---|---|---|---|")
    try:
        wait_for_port(port, api)
        normal_client(port, normal_key, 20, 40_000_000)  # warm
        quiet = normal_client(port, normal_key, 100, 40_000_100)
        abuse_row("nobody else", quiet, api.pid, "")

        crafted = jpeg_with_empty_segments(jpeg_of_about(IMAGE_BYTES), (10 * 1024 * 1024 - IMAGE_BYTES) // 4)
        stop, answers = threading.Event(), []
        attackers = [
            threading.Thread(target=keep_sending, args=(port, request_bytes(crafted, keys["abuser"][0]), stop, answers))
            for _ in range(2)
        ]
        for attacker in attackers:
            attacker.start()
        try:
            attacked = normal_client(port, normal_key, 100, 40_000_200)
        finally:
            stop.set()
            for attacker in attackers:
                attacker.join()
        codes = sorted({status for status, _ in answers})
        per_request = statistics.median(seconds for _, seconds in answers) * 1000
        segments = (len(crafted) - IMAGE_BYTES) // 4
        abuse_row(
            f"2 connections sending crafted {len(crafted) / 1e6:.1f} MB JPEGs of {segments:,} empty segments",
            attacked,
            api.pid,
            f"{len(answers)} crafted uploads answered {codes}, median {per_request:.0f} ms",
        )

        declared, sent = 20 * 1024 * 1024, 19 * 1024 * 1024
        stalled = [stall(port, keys[f"staller{n}"][0], declared, sent) for n in range(30)]
        held = [sock for sock in stalled if sock is not None]
        try:
            during = normal_client(port, normal_key, 100, 40_000_300)
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30).read())
            situation = "30 clients, each a body stalled at 19 of 20 MiB"
            notes = (
                f"{health['uploads_in_progress']} bodies held ({health['upload_bytes_held'] / 2**20:.0f} MiB), "
                f"{30 - health['uploads_in_progress']} answered 503 busy"
            )
            abuse_row(situation, during, api.pid, notes)
        finally:
            for sock in held:
                sock.close()
    finally:
        api.terminate()
        api.wait(timeout=30)


# -- the Kafka benchmark -----------------------------------------------------------------------------
def fill_topic(bootstrap: str, topic: str, images: list[bytes]) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for number, data in enumerate(images):
        producer.produce(topic, value=data, key=f"img-{number}".encode(), headers=[("source-application", b"bench")])
        producer.poll(0)
    assert producer.flush(60) == 0


def raw_consume(bootstrap: str, topic: str, expected: int) -> float:
    """Seconds to receive every message (touching each value) with the ingestion's consumer settings."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    from memberflow_assets.images.ingestion.kafka_ingest import FETCH_BATCH, consumer_config

    consumer = Consumer(consumer_config(bootstrap, "bench-raw"))
    consumer.assign([TopicPartition(topic, p, 0) for p in (0, 1)])
    received, ended, total = 0, set(), 0
    start = time.perf_counter()
    while len(ended) < 2:
        for message in consumer.consume(FETCH_BATCH, timeout=1.0):
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    ended.add(message.partition())
                continue
            received += 1
            total += len(message.value())
    seconds = time.perf_counter() - start
    consumer.close()
    assert received == expected, (received, expected)
    return seconds


def durable_consume(bootstrap: str, topic: str, expected: int, folder: Path) -> float:
    """The ceiling for durable landing: the same consumption, and per fetched batch the minimum the
    guarantee needs — each value written to a new file, the files and their folder fsynced (together,
    as memberflow does), then the offsets committed — on a thread of its own while the next batch is
    fetched, as KafkaIngestor does. No validation, registry, sidecar or rename."""
    from concurrent.futures import ThreadPoolExecutor

    from confluent_kafka import Consumer, KafkaError, TopicPartition

    from memberflow_assets.images.ingestion.kafka_ingest import FETCH_BATCH, consumer_config
    from memberflow_assets.zones import _fsync_paths, fsync_path

    def write(batch: list) -> None:
        paths = []
        for message in batch:
            path = folder / f"{message.partition()}-{message.offset()}.jpg"
            with open(path, "xb") as handle:
                handle.write(message.value())
            paths.append(str(path))
        _fsync_paths(paths)
        fsync_path(str(folder))

    folder.mkdir(parents=True)
    consumer = Consumer(consumer_config(bootstrap, f"bench-durable-{folder.name}"))
    consumer.assign([TopicPartition(topic, p, 0) for p in (0, 1)])
    received, ended, writing, offsets = 0, set(), None, {}
    start = time.perf_counter()
    with ThreadPoolExecutor(1) as writer:
        while len(ended) < 2 or writing is not None:
            batch = []
            for message in consumer.consume(FETCH_BATCH, timeout=1.0) if len(ended) < 2 else []:
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        ended.add(message.partition())
                    continue
                batch.append(message)
            if writing is not None:
                writing.result()
                consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
                writing = None
            if batch:
                offsets = {message.partition(): message.offset() + 1 for message in batch}
                writing = writer.submit(write, batch)
                received += len(batch)
    seconds = time.perf_counter() - start
    consumer.close()
    assert received == expected, (received, expected)
    return seconds


class PhaseTimer:
    """Wall time spent in chosen functions while the ingestor runs (all on its one thread)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._restore: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start

        self._restore.append((owner, name, original))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, original in reversed(self._restore):
            setattr(owner, name, original)


def bench_kafka(count: int, new_database, work: Path, rounds: int = 3) -> None:
    import dataclasses

    from memberflow_assets import zones as zones_module
    from memberflow_assets.images.ingestion import kafka_ingest, landing
    from memberflow_assets.images.ingestion.dev_broker import tansu_broker
    from memberflow_assets.images.ingestion.kafka_ingest import OffsetRange, open_ingestor
    from memberflow_assets.settings import Settings
    from memberflow_assets.zones import Zones

    def ingest(bootstrap: str, topic: str, durable: bool, name: str, phases: PhaseTimer | None) -> float:
        settings = dataclasses.replace(Settings.from_env().ingest, durable=durable)
        with open_ingestor(bootstrap, Zones(str(work / name)), new_database(name), settings, topic, name, None) as i:
            if phases is not None:
                phases.wrap(landing, "inspect_image", "validation (header + framing)")
                phases.wrap(landing.Lander, "_claim", "registry claim (one statement per batch)")
                phases.wrap(zones_module, "_fsync_paths", "fsync (files, then folders)")
                phases.wrap(Zones, "write_all", "files: write + rename (incl. fsync)")
                phases.wrap(kafka_ingest.KafkaIngestor, "_land", "landing the batches (all of the above)")
                phases.wrap(kafka_ingest.KafkaIngestor, "_commit", "offset commits")
            start = time.perf_counter()
            try:
                stats = i.ingest([OffsetRange(p, 0, count) for p in (0, 1)])
            finally:
                if phases is not None:
                    phases.restore()
            seconds = time.perf_counter() - start
        assert stats.landed == count, stats
        return seconds

    with tansu_broker(free_port()) as bootstrap:
        topic = "images.bench"
        fill_topic(bootstrap, topic, distinct_images(count, 10_000_000))
        # Rounds alternate the measurements so that a burst of load elsewhere hits them alike; best of each.
        best: dict[str, float] = {}
        best_phases = PhaseTimer()
        for number in range(rounds):
            phases = PhaseTimer()
            times = {
                "raw": raw_consume(bootstrap, topic, count),
                "ceiling": durable_consume(bootstrap, topic, count, work / f"ceiling-{number}"),
                "durable": ingest(bootstrap, topic, True, f"kafka_durable_{number}", phases),
                "not durable": ingest(bootstrap, topic, False, f"kafka_fast_{number}", None),
            }
            if times["durable"] < best.get("durable", float("inf")):
                best_phases = phases
            best = {name: min(seconds, best.get(name, float("inf"))) for name, seconds in times.items()}
    rate = {name: count / seconds for name, seconds in best.items()}
    print(f"\n## Kafka: {count} distinct JPEGs of ~{IMAGE_BYTES:,} bytes, 2 partitions, best of {rounds} rounds\n")
    print("| consumer | seconds | images/s | vs raw | vs durable ceiling |\n|---|---|---|---|---|")
    for name, label in (
        ("raw", "raw consume (same settings)"),
        ("ceiling", "durable ceiling: consume + new file + fsync + commit"),
        ("durable", "KafkaIngestor (durable)"),
        ("not durable", "KafkaIngestor (not durable)"),
    ):
        print(
            f"| {label} | {best[name]:.2f} | {rate[name]:.0f} | {rate[name] / rate['raw']:.0%} | "
            f"{rate[name] / rate['ceiling']:.0%} |"
        )
    print("\n| durable KafkaIngestor, best round: where the time goes (landing runs beside fetching) | seconds |")
    print("|---|---|")
    for label, spent in best_phases.seconds.items():
        print(f"| {label} | {spent:.2f} |")
    print(f"| the whole run | {best['durable']:.2f} |")


FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_TOPDIR_FL = 0x80086601, 0x40086602, 0x00020000  # linux/fs.h


def prepare_work_dir(folder: Path) -> str:
    """Create `folder` and mark it an Orlov top directory (ext4's `chattr +T`), so that each run's folder
    gets a block group of its own: on ext4 without a journal, creating files where many were deleted in
    the last minutes costs a lookup per recently deleted inode, which would tax every server by its
    files per upload (the API two, the durable ceiling one). Returns what was done, for the output."""
    import array
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(descriptor, FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & FS_TOPDIR_FL:
            flags[0] |= FS_TOPDIR_FL
            fcntl.ioctl(descriptor, FS_IOC_SETFLAGS, flags, True)
        return "a top directory: each run's folder in a block group of its own"
    except OSError as error:
        return f"not marked a top directory ({error.strerror}): figures may depend on files deleted nearby"
    finally:
        os.close(descriptor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400, help="uploads per API measurement")
    parser.add_argument("--kafka-images", type=int, default=600)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers, for both servers")
    parser.add_argument(
        "--rounds", type=int, default=1, help="API: measure each server this many times in turn, --images in all"
    )
    parser.add_argument("--skip-kafka", action="store_true")
    parser.add_argument("--skip-api", action="store_true")
    parser.add_argument("--skip-abuse", action="store_true")
    parser.add_argument(
        "--work-dir",
        default=str(REPO / "bench" / "out" / "work"),
        help="where the run's folders go (zones, PostgreSQL), made an Orlov top directory when the file system "
        "allows; see docs/images_ingestion.md, 'The benchmark's folder'",
    )
    parser.add_argument("--serve", choices=["noop", "durable"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_ceiling(args.serve, args.port, args.workers)
        return

    import pgserver

    from memberflow_assets import postgres

    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"work folder: {args.work_dir} ({prepare_work_dir(Path(args.work_dir))})")
    with tempfile.TemporaryDirectory(prefix="mfbench", dir=args.work_dir) as folder:
        work = Path(folder)
        server = pgserver.get_server(work / "pg", cleanup_mode="stop")

        def new_database(name: str) -> str:  # one per measured server: no image is a duplicate of another run's
            postgres.ensure_database(server.get_uri(), name)
            dsn = postgres.with_database(server.get_uri(), name)
            postgres.apply_migrations(dsn)
            return dsn

        if not args.skip_api:
            bench_api(args.images, args.workers, args.rounds, new_database, work)
            if not args.skip_abuse:
                bench_abuse(new_database, work)
        if not args.skip_kafka:
            bench_kafka(args.kafka_images, new_database, work)
        server.cleanup()
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
