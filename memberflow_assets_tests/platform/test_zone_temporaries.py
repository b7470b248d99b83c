"""Crash leftovers: a landing killed (SIGKILL) between writing its files and renaming them leaves its
temporary files in `<zone>/.tmp/`, never beside the data; they are removed, and counted, when a lander
opens again (API and Kafka start, each Kafka run) and by retention, once older than the safe age — a
younger one may belong to a write in progress and stays."""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest
from confluent_kafka import Producer

from memberflow_assets import cli, postgres
from memberflow_assets.images.ingestion.landing import open_lander
from memberflow_assets.images.retention import expiry
from memberflow_assets.settings import Settings
from memberflow_assets.testing.images import jpeg_of_about, small_image, unique_jpeg
from memberflow_assets.zones import TEMPORARY_DIR, TEMPORARY_SAFE_AGE, Zones

KILLED_BEFORE_RENAME = """
import os, signal, sys
from pathlib import Path
from memberflow_assets import zones
from memberflow_assets.images.ingestion.landing import Lander, Upload
from memberflow_assets.postgres import ConnectionPool

def crash(*args):
    os.kill(os.getpid(), signal.SIGKILL)  # the files are written, none renamed into place yet

{kill_point} = crash
lander = Lander(zones.Zones(sys.argv[1]), ConnectionPool(sys.argv[2], 1), max_pixels=10_000_000, durable=True)
uploads = [Upload(Path(name).read_bytes(), "api", "alice") for name in sys.argv[3:]]
if {staged}:  # as the upload API lands: staged before the claim
    lander.land_prepared(lander.stage_many([lander.prepare(upload) for upload in uploads]))
else:  # as Kafka ingestion lands: written once claimed
    lander.land_many(uploads)
"""


def temporaries(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob(f"*/{TEMPORARY_DIR}/*.tmp")) + sorted(data_dir.glob(f"{TEMPORARY_DIR}/*.tmp"))


def age(paths: list[Path], seconds: float) -> None:
    for path in paths:
        moment = time.time() - seconds
        os.utime(path, (moment, moment))


@pytest.mark.parametrize(
    ("staged", "kill_point", "claimed"),
    [(False, "zones._fsync_paths", True), (True, "zones._fsync_paths", True), (True, "Lander._claim", False)],
    ids=["claimed then written", "staged and claimed", "staged"],
)
def test_a_killed_landing_leaves_temporaries_that_the_next_start_removes(
    memberflow_env, pg_dsn, tmp_path, staged, kill_point, claimed
):
    """Killed once the registry has claimed the images (their files written or staged before) or before
    the claim (their files staged): the next start removes the temporaries, and a retry of each upload
    lands it once."""
    postgres.apply_migrations(pg_dsn)
    uploads = []
    for number in range(3):
        uploads.append(tmp_path / f"upload{number}.png")
        uploads[-1].write_bytes(small_image("PNG", 50 + number))
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_BEFORE_RENAME.replace("{kill_point}", kill_point).replace("{staged}", str(staged)),
            str(memberflow_env),
            pg_dsn,
            *map(str, uploads),
        ],
        capture_output=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()

    left = temporaries(memberflow_env)
    assert len(left) == 6 and all(path.parent == memberflow_env / "landing" / TEMPORARY_DIR for path in left)
    assert not [p for p in (memberflow_env / "landing").rglob("*") if p.is_file() and TEMPORARY_DIR not in p.parts]
    age(left, TEMPORARY_SAFE_AGE + 60)
    in_progress = memberflow_env / "landing" / TEMPORARY_DIR / "photo.jpg.0123abcd.tmp"  # another writer, now
    in_progress.write_bytes(b"half")

    with open_lander(Zones.from_settings(), pg_dsn, Settings.from_env().ingest, pool_size=1) as lander:
        assert lander.temporaries_removed == 6
        retried = [lander.land(path.read_bytes(), source="api", client="alice") for path in uploads]
    assert temporaries(memberflow_env) == [in_progress]
    # The retry finishes the interrupted landings at their claimed place, or lands them anew: each image once.
    assert [r.duplicate for r in retried] == [claimed] * 3
    assert len(list((memberflow_env / "landing" / "images").rglob("*.json"))) == 3


def test_retention_removes_old_temporaries_anywhere_in_the_zones_and_counts_them(memberflow_env, pg_dsn):
    postgres.apply_migrations(pg_dsn)
    zones = Zones.from_settings()
    for relpath in ("landing/images/2026/01/01/00/a.jpg", "images/metadata/2026-01-01-00.parquet", "x.json"):
        with zones.writing(relpath) as temp:  # a write whose process died before the rename
            Path(temp).write_bytes(b"partial")
            leftover = Path(temp).with_name(Path(temp).name + ".copy.tmp")
            os.link(temp, leftover)
    left = temporaries(memberflow_env)
    assert len(left) == 3 and {p.parent.parent.name for p in left} == {"landing", "images", memberflow_env.name}
    age(left[:2], TEMPORARY_SAFE_AGE + 60)

    result = expiry.run_retention(zones, pg_dsn, datetime.now(UTC), "r1", "test")

    assert result.summary()["temporary_files_removed"] == 2
    assert temporaries(memberflow_env) == left[2:]  # too young to be sure its write is not in progress
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT temporary_files_removed FROM images.retention_runs WHERE retention_run_id = 'r1'")
        assert cursor.fetchone() == (2,)
    connection.close()


def test_kafka_ingest_killed_mid_write_leaves_nothing_after_its_restart(
    kafka_env, kafka_bootstrap, memberflow_env, pg_dsn
):
    """`memberflow kafka-ingest` SIGKILLed while a batch's files are half-way (temporary files exist);
    restarted later, it removes them and lands every image exactly once."""
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
    for number in range(200):
        producer.produce(kafka_env, partition=number % 2, value=unique_jpeg(jpeg_of_about(60_000), number))
    assert producer.flush(30) == 0
    command = [sys.executable, "-m", "memberflow_assets.cli", "kafka-ingest", "--once"]
    ingest = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while ingest.poll() is None and time.monotonic() < deadline and not temporaries(memberflow_env):
            time.sleep(0.001)
        ingest.kill()
    finally:
        ingest.wait()
    assert ingest.returncode == -signal.SIGKILL and temporaries(memberflow_env), "not killed mid-write"
    age(temporaries(memberflow_env), TEMPORARY_SAFE_AGE + 60)

    assert cli.main(["kafka-ingest", "--once"]) == 0  # the restart

    assert temporaries(memberflow_env) == []
    landed = list((memberflow_env / "landing" / "images").rglob("*.json"))
    assert len(landed) == 200 and len({path.name for path in landed}) == 200
