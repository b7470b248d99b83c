"""Landing (shared by the API and Kafka): ids, atomicity, idempotency, crash recovery, tombstone revival."""

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from memberflow_assets import postgres
from memberflow_assets.images import layout
from memberflow_assets.images.ingestion.content import ImageRejected
from memberflow_assets.images.ingestion.landing import Lander, LandingInProgress, Upload, image_id_for
from memberflow_assets.postgres import ConnectionPool
from memberflow_assets.testing.images import jpeg_of_about, small_image, unique_jpeg
from memberflow_assets.zones import Zones


@pytest.fixture
def lander(memberflow_env, pg_dsn):
    postgres.apply_migrations(pg_dsn)
    pool = ConnectionPool(pg_dsn, size=8)
    yield Lander(Zones(str(memberflow_env)), pool, max_pixels=10_000_000, durable=True)
    pool.close()


def registry_rows(dsn: str) -> list[tuple]:
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT image_id, status, client, sha256, landing_path FROM images.registry ORDER BY 1")
        return cursor.fetchall()


def landed_files(data_dir: Path) -> list[str]:
    """Every file under landing/images (temporary names included: none may be left over)."""
    root = data_dir / "landing" / "images"
    return sorted(str(p.relative_to(data_dir)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_landing_writes_image_then_sidecar_and_registers(lander, memberflow_env, pg_dsn):
    data = jpeg_of_about(30_000)
    landed = lander.land(data, source="api", client="alice")

    assert landed.image_id == image_id_for("alice", landed.sha256) and len(landed.image_id) == 32
    assert not landed.duplicate and landed.status == "landed"
    hour_dir = layout.landing_dir(landed.received_at)
    assert landed_files(memberflow_env) == [f"{hour_dir}/{landed.image_id}.jpg", f"{hour_dir}/{landed.image_id}.json"]
    assert (memberflow_env / landed.landing_path).read_bytes() == data
    sidecar = layout.Sidecar.from_json((memberflow_env / hour_dir / f"{landed.image_id}.json").read_bytes())
    assert (sidecar.source, sidecar.client, sidecar.sha256, sidecar.size_bytes) == (
        "api",
        "alice",
        landed.sha256,
        len(data),
    )
    assert (sidecar.format, sidecar.content_type, sidecar.width) == ("JPEG", "image/jpeg", 640)
    assert sidecar.received_datetime == landed.received_at and sidecar.image_relpath == landed.landing_path
    assert registry_rows(pg_dsn) == [(landed.image_id, "landed", "alice", landed.sha256, landed.landing_path)]
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT hour_key, size_bytes, content_type, source FROM images.registry")
        assert cursor.fetchone() == (layout.hour_key(landed.received_at), len(data), "image/jpeg", "api")


def test_same_bytes_same_client_is_one_image_other_client_another(lander, memberflow_env, pg_dsn):
    data = small_image("PNG")
    first = lander.land(data, source="api", client="alice")
    again = lander.land(data, source="api", client="alice")
    other = lander.land(data, source="api", client="bob")

    assert again.image_id == first.image_id and again.duplicate and again.received_at == first.received_at
    assert other.image_id != first.image_id and not other.duplicate
    assert len(landed_files(memberflow_env)) == 4  # two images, each with its sidecar
    assert len(registry_rows(pg_dsn)) == 2


def test_concurrent_identical_landings_store_one_image(lander, memberflow_env, pg_dsn):
    data = jpeg_of_about(50_000, seed=3)
    results, errors = [], []

    def land():
        try:
            results.append(lander.land(data, source="api", client="alice"))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=land) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len({r.image_id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.received_at for r in results}) == 1
    assert len(landed_files(memberflow_env)) == 2 and len(registry_rows(pg_dsn)) == 1


def test_rejected_bytes_land_nothing(lander, memberflow_env, pg_dsn):
    with pytest.raises(ImageRejected):
        lander.land(b"not an image", source="api", client="alice")
    assert landed_files(memberflow_env) == [] and registry_rows(pg_dsn) == []


class FailingSidecarZones(Zones):
    """The disk fills up after the image, before the sidecar."""

    def write_all(self, files, fsync: bool = False) -> None:
        super().write_all([(relpath, data) for relpath, data in files if not relpath.endswith(".json")], fsync)
        raise OSError("disk full")


def test_failed_write_releases_the_claim_so_a_retry_lands(lander, memberflow_env, pg_dsn):
    data = small_image("GIF")
    broken = Lander(FailingSidecarZones(str(memberflow_env)), lander.pool, lander.max_pixels)
    with pytest.raises(OSError, match="disk full"):
        broken.land(data, source="api", client="alice")
    assert registry_rows(pg_dsn) == []
    assert not any(path.endswith(".json") for path in landed_files(memberflow_env))  # invisible to readers

    landed = lander.land(data, source="api", client="alice")
    assert not landed.duplicate
    assert registry_rows(pg_dsn)[0][1] == "landed"
    assert (memberflow_env / layout.sidecar_relpath(landed.received_at, landed.image_id)).exists()


class PausingZones(Zones):
    """The first landing's files are put in place, then it waits for `go` and, with `fail`, fails as a
    folder fsync after the renames would; later landings write normally."""

    def __init__(self, root: str, fail: bool):
        super().__init__(root)
        self.fail, self.placed, self.go, self.first = fail, threading.Event(), threading.Event(), True

    def write_all(self, files, fsync: bool = False) -> None:
        super().write_all(files, fsync)
        if self.first:
            self.first = False
            self.placed.set()
            assert self.go.wait(30)
            if self.fail:
                raise OSError("folder fsync failed")


@pytest.mark.parametrize("fails", [True, False], ids=["the first landing fails", "the first landing succeeds"])
def test_a_copy_sent_while_the_image_is_landing_is_answered_only_once_it_is_in_place(
    lander, memberflow_env, pg_dsn, fails
):
    """A client retrying while its first upload is still landing: the copy sees the claimed row, even the
    files in place, but the first landing can still fail and withdraw them. The copy must not be answered
    as a duplicate before the first landing is over — a 200 for an image that is then gone."""
    zones = PausingZones(str(memberflow_env), fail=fails)
    pausing = Lander(zones, lander.pool, lander.max_pixels)
    data = small_image("PNG", 77)
    first, copy = {}, {}

    def land(into: dict) -> None:
        try:
            into["result"] = pausing.land(data, source="api", client="alice")
        except Exception as error:
            into["result"] = error

    threads = [threading.Thread(target=land, args=(first,))]
    threads[0].start()
    assert zones.placed.wait(30)  # the image and its sidecar are in place, the first landing not over
    threads.append(threading.Thread(target=land, args=(copy,)))
    threads[1].start()
    threads[1].join(0.5)
    assert threads[1].is_alive()  # the copy waits for the first landing
    zones.go.set()
    for thread in threads:
        thread.join(30)

    if fails:
        assert isinstance(first["result"], OSError)
        assert isinstance(copy["result"], LandingInProgress)  # not a duplicate of an image that is gone
        assert registry_rows(pg_dsn) == [] and landed_files(memberflow_env) == []
        assert not lander.land(data, source="api", client="alice").duplicate  # the retry lands it
    else:
        assert not first["result"].duplicate and copy["result"].duplicate
        assert copy["result"].image_id == first["result"].image_id
    assert len(landed_files(memberflow_env)) == 2 and len(registry_rows(pg_dsn)) == 1


CRASH_AFTER_CLAIM = """
import os, signal, sys
from pathlib import Path
from memberflow_assets.images.ingestion.landing import Lander
from memberflow_assets.postgres import ConnectionPool
from memberflow_assets.zones import Zones

def crash(self, files, fsync=False):
    os.kill(os.getpid(), signal.SIGKILL)  # the process dies after the registry claim, before any file

Zones.write_all = crash
lander = Lander(Zones(sys.argv[1]), ConnectionPool(sys.argv[2], 1), max_pixels=10_000_000)
lander.land(Path(sys.argv[3]).read_bytes(), source="api", client="alice")
"""


def test_crash_after_claim_is_completed_by_the_retry(lander, memberflow_env, pg_dsn, tmp_path):
    data = unique_jpeg(jpeg_of_about(20_000), 1)
    image = tmp_path / "upload.bin"
    image.write_bytes(data)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_CLAIM, str(memberflow_env), pg_dsn, str(image)], capture_output=True
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()
    [(image_id, status, *_), *_] = registry_rows(pg_dsn)
    assert status == "landed" and landed_files(memberflow_env) == []  # claimed, nothing visible

    retry = lander.land(data, source="api", client="alice")
    assert retry.image_id == image_id and retry.duplicate
    files = landed_files(memberflow_env)
    assert len(files) == 2 and (memberflow_env / retry.landing_path).read_bytes() == data
    sidecar = json.loads((memberflow_env / files[1]).read_text())
    assert sidecar["received_at"] == retry.received_at.isoformat()  # the claimed time: same hour folder
    assert len(registry_rows(pg_dsn)) == 1


def tombstone_every_row(dsn: str) -> None:
    """Retention's second step for every registry row: only a tombstone is kept."""
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(
            "UPDATE images.registry SET status = 'purged', purged_at = now(), source = NULL, client = NULL,"
            " sha256 = NULL, size_bytes = NULL, content_type = NULL, received_at = NULL, hour_key = NULL,"
            " landing_path = NULL"
        )


def test_relanding_after_purge_revives_the_tombstone(lander, memberflow_env, pg_dsn):
    data = small_image("WEBP")
    first = lander.land(data, source="api", client="alice")
    # What retention (issue 5) does: delete the files, keep only a tombstone.
    for path in landed_files(memberflow_env):
        os.remove(memberflow_env / path)
    tombstone_every_row(pg_dsn)
    assert lander.lookup(first.image_id).status == "purged"

    again = lander.land(data, source="api", client="alice")
    assert again.image_id == first.image_id and not again.duplicate
    row = lander.lookup(first.image_id)
    assert (row.status, row.client, row.sha256, row.purged_at) == ("landed", "alice", first.sha256, None)
    assert len(landed_files(memberflow_env)) == 2


def test_a_copy_sent_while_retention_purges_its_hour_is_not_written_back_into_it(lander, memberflow_env, pg_dsn):
    """Retention deletes an expired hour's files, then makes its rows tombstones: a copy arriving in between
    sees a row without its sidecar, which is not an interrupted landing to finish in the purged hour."""
    data = small_image("WEBP", 5)
    expired = datetime.now(UTC) - timedelta(days=8)
    [first] = lander.land_prepared([lander.prepare(Upload(data, "api", "alice"), received_at=expired)])
    for path in landed_files(memberflow_env):  # retention's first step
        os.remove(memberflow_env / path)

    with pytest.raises(LandingInProgress):
        lander.land(data, source="api", client="alice")
    assert landed_files(memberflow_env) == []

    tombstone_every_row(pg_dsn)  # retention's second step; the retry lands the image anew, now
    again = lander.land(data, source="api", client="alice")
    assert again.image_id == first.image_id and not again.duplicate
    assert again.received_at > first.received_at and len(landed_files(memberflow_env)) == 2


def test_producer_key_reused_for_different_bytes_is_a_conflict(lander, pg_dsn):
    kafka = {"topic": "t", "partition": 0, "offset": 1, "key": "k1"}
    lander.land(small_image("JPEG", 1), source="kafka", client="cams", kafka=kafka, source_key="k1")
    same = lander.land(small_image("JPEG", 1), source="kafka", client="cams", kafka=kafka, source_key="k1")
    assert same.duplicate
    with pytest.raises(ImageRejected) as caught:
        lander.land(small_image("JPEG", 2), source="kafka", client="cams", kafka=kafka, source_key="k1")
    assert (caught.value.status, caught.value.code) == (409, "key_conflict")
    other_source = lander.land(small_image("JPEG", 2), source="kafka", client="phones", source_key="k1")
    assert not other_source.duplicate
    # A purge clears the producer key with everything else (trigger of migration 0020).
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        cursor.execute("UPDATE images.registry SET status = 'purged', client = NULL, sha256 = NULL, received_at = NULL")
        cursor.execute("SELECT count(*) FROM images.registry WHERE source_key IS NOT NULL")
        assert cursor.fetchone() == (0,)


def test_quarantine_keeps_bytes_and_reason(lander, memberflow_env):
    rejection = ImageRejected(415, "unsupported_type", "not an image")
    reason_path = lander.quarantine(b"hello", rejection, source="kafka", client="cams", quarantine_id="kafka-t-0-5")
    assert reason_path.startswith(layout.QUARANTINE_PREFIX + "/") and reason_path.endswith("/kafka-t-0-5.reason.json")
    reason = json.loads((memberflow_env / reason_path).read_text())
    assert (reason["reason"], reason["client"], reason["size_bytes"]) == ("unsupported_type", "cams", 5)
    assert (memberflow_env / reason_path.replace(".reason.json", ".bin")).read_bytes() == b"hello"


def test_a_batch_lands_once_per_image_and_reports_each_upload(lander, memberflow_env, pg_dsn):
    first, second = small_image("JPEG", 11), small_image("PNG", 12)
    kafka = {"topic": "t", "partition": 0, "offset": 0, "key": "k1"}
    results = lander.land_many(
        [
            Upload(first, "kafka", "cams", kafka=kafka, source_key="k1"),
            Upload(b"garbage", "kafka", "cams", source_key="k2"),
            Upload(first, "kafka", "cams", kafka=kafka, source_key="k1"),  # sent twice in one batch
            Upload(second, "kafka", "cams", source_key="k1"),  # k1 already names `first`
            Upload(second, "kafka", "phones", source_key="k1"),
        ]
    )
    landed, garbage, repeat, conflict, other = results
    assert not landed.duplicate and repeat.duplicate and repeat.image_id == landed.image_id
    assert isinstance(garbage, ImageRejected) and garbage.code == "unsupported_type"
    assert isinstance(conflict, ImageRejected) and conflict.code == "key_conflict"
    assert not other.duplicate and other.received_at == landed.received_at
    assert len(registry_rows(pg_dsn)) == 2 and len(landed_files(memberflow_env)) == 4


@pytest.mark.parametrize("order", sorted(set(itertools.permutations(["resent", "other", "resent", "third"]))))
def test_a_resent_image_is_a_duplicate_whatever_else_its_batch_holds(lander, memberflow_env, pg_dsn, order):
    """An image already landed under key k, sent again in a batch beside other images that reuse k: the
    copy is answered as a duplicate, the others are key conflicts, in any order."""
    kept, other, third = small_image("PNG", 21), small_image("PNG", 22), small_image("PNG", 23)
    first = lander.land(kept, source="kafka", client="cams", source_key="k")
    data = {"resent": kept, "other": other, "third": third}
    results = lander.land_many([Upload(data[name], "kafka", "cams", source_key="k") for name in order])

    for name, result in zip(order, results, strict=True):
        if name == "resent":
            assert not isinstance(result, ImageRejected), (order, result)
            assert result.duplicate and result.image_id == first.image_id
        else:
            assert isinstance(result, ImageRejected) and result.code == "key_conflict", (order, name, result)
    assert len(registry_rows(pg_dsn)) == 1 and len(landed_files(memberflow_env)) == 2


def test_in_a_new_batch_the_first_image_under_a_key_takes_it(lander, memberflow_env, pg_dsn):
    first, second = small_image("GIF", 31), small_image("GIF", 32)
    taker, loser = lander.land_many(
        [Upload(first, "kafka", "cams", source_key="k"), Upload(second, "kafka", "cams", source_key="k")]
    )
    assert not taker.duplicate and isinstance(loser, ImageRejected) and loser.code == "key_conflict"
    assert len(registry_rows(pg_dsn)) == 1


def test_a_staged_batch_fsyncs_every_image_and_only_the_sidecars_that_cannot_be_rebuilt(lander, monkeypatch):
    """Staging only starts the disk writes; landing waits for them before the first rename."""
    from memberflow_assets import zones as zones_module

    events: list[tuple[str, str]] = []  # ("fsync", path) and ("rename", temporary path), in order
    real_fsync_paths, real_rename = zones_module._fsync_paths, zones_module._rename_into_place

    def fsync_paths(paths):
        events.extend(("fsync", path) for path in paths)
        real_fsync_paths(paths)

    def rename_into_place(temp, final):
        events.append(("rename", temp))
        return real_rename(temp, final)

    monkeypatch.setattr(zones_module, "_fsync_paths", fsync_paths)
    monkeypatch.setattr(zones_module, "_rename_into_place", rename_into_place)
    api = lander.prepare(Upload(unique_jpeg(jpeg_of_about(20_000), 1), "api", "alice"))
    kafka_upload = Upload(unique_jpeg(jpeg_of_about(20_000), 2), "kafka", "app", kafka={"topic": "t", "offset": 1})
    kafka = lander.prepare(kafka_upload)

    staged = lander.stage_many([api, kafka])
    assert events == []  # the registry claim runs while the disk writes
    lander.land_prepared(staged)

    temporaries = {final: temp for each in staged for temp, final in each.staged.files}
    path = lander.zones.path
    first_rename = next(index for index, (kind, _) in enumerate(events) if kind == "rename")
    fsynced_before_renames = {p for kind, p in events[:first_rename] if kind == "fsync"}
    assert temporaries[path(api.sidecar.image_relpath)] in fsynced_before_renames
    assert temporaries[path(kafka.sidecar.image_relpath)] in fsynced_before_renames
    assert temporaries[path(kafka.sidecar.relpath)] in fsynced_before_renames  # its topic and offset are nowhere else
    # rebuilt from the registry after a crash
    assert temporaries[path(api.sidecar.relpath)] not in {p for kind, p in events if kind == "fsync"}
    assert all(os.path.exists(path(p.sidecar.relpath)) for p in (api, kafka))
