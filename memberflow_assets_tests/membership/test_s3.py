"""The same membership code path with every zone in S3 (moto's server), PostgreSQL real."""

import json

import boto3
import dagster as dg
import psycopg2
import pyarrow.parquet as pq

from memberflow_assets.membership.sensors import build_landing_applications_sensor
from memberflow_assets.settings import Settings
from memberflow_assets.zones import Zones
from memberflow_assets_tests.helpers import HEADER, check_results, land, read_output, run_batch, run_partition


def bucket_keys(endpoint: str, storage_url: str) -> list[str]:
    bucket, _, prefix = storage_url.removeprefix("s3://").partition("/")
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"].removeprefix(prefix + "/") for item in listing.get("Contents", []))


def test_sensor_pipeline_and_quarantine_on_s3(instance, s3_env, moto_endpoint, pg_dsn):
    zones = Zones.from_settings()
    assert zones.is_s3
    land(zones, "s3_batch.csv", f"{HEADER}\nAnn Lee,ann@mail.net,1985-02-03,81234567\nX,bad,bad,bad\n")
    land(zones, "broken.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR garbage")

    tick = build_landing_applications_sensor(Settings.from_env())(
        dg.build_sensor_context(instance=instance, resources={"zones": zones})
    )
    assert sorted(request.partition_key for request in tick.run_requests) == ["broken", "s3_batch"]

    good = run_batch(instance, "s3_batch")
    bad = run_batch(instance, "broken")

    assert good.success and all(check_results(good).values())
    assert not bad.success
    keys = bucket_keys(moto_endpoint, s3_env)
    assert "members/successful/s3_batch.parquet" in keys
    assert "members/unsuccessful/s3_batch.parquet" in keys
    assert "quarantine/applications/broken.csv" in keys
    assert "landing/applications/broken.csv" in keys  # landing is never modified
    assert not any(key.startswith("members/") and "broken" in key for key in keys)
    reason = json.loads(zones.read_bytes("quarantine/applications/broken.csv.reason.txt"))
    assert reason["problem"] == "not_csv"
    assert list(read_output(zones, "successful", "s3_batch")["last_name"]) == ["Lee"]
    assert list(read_output(zones, "unsuccessful", "s3_batch")["row_number"]) == [2]
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT last_name, source_batch FROM sales.members")
        assert cursor.fetchall() == [("Lee", "s3_batch")]


def test_poisoned_rows_and_colliding_ids_on_s3(instance, s3_env, pg_dsn):
    """The hostile cases on the S3 path: each bad row stays in its own file's unsuccessful output, the
    good neighbour and the poisoned file both load their members, a collision is recorded, and names
    differing only in the extension's case are separate partitions that read their own object."""
    zones = Zones.from_settings()
    poisoned = (
        f"{HEADER}\nAnn Lee,ann@mail.net,1985-02-03,81234567\n"
        "Nul Byte\x00,nul@example.com,1980-01-01,81234567\n"
        '"Unclosed Quote,quote@example.com,1980-01-01,81234567\n'
        "Long " + "Y" * 3000 + ",long@example.com,1980-01-01,81234567\n"
        "Bea Lee,bea@mail.net,1985-02-03,91234567\n"
    )
    land(zones, "poisoned.CSV", poisoned)
    land(zones, "poisoned.csv", f"{HEADER}\nCat Ng,cat@example.com,1990-01-01,81234567\n")

    tick = build_landing_applications_sensor(Settings.from_env())(
        dg.build_sensor_context(instance=instance, resources={"zones": zones})
    )
    requests = {request.tags["memberflow/source_file"]: request for request in tick.run_requests}
    assert len({request.partition_key for request in requests.values()}) == 2
    instance.add_dynamic_partitions("application_files", [request.partition_key for request in requests.values()])
    results = {name: run_batch(instance, r.partition_key, tags=r.tags) for name, r in requests.items()}

    assert all(result.success for result in results.values())
    bad_key = requests["poisoned.CSV"].partition_key
    unsuccessful = read_output(zones, "unsuccessful", bad_key)
    assert dict(zip(unsuccessful["line_number"], unsuccessful["rejection_reasons"], strict=True)) == {
        3: "control_characters",
        4: "malformed_record",
        5: "field_too_long",
    }
    assert list(read_output(zones, "successful", "poisoned")["last_name"]) == ["Ng"]
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT first_name, source_batch FROM sales.members ORDER BY first_name")
        assert cursor.fetchall() == [("Ann", bad_key), ("Cat", "poisoned")]
        cursor.execute("SELECT first_name, row_number FROM sales.membership_id_collisions")
        assert cursor.fetchall() == [("Bea", 5)]
    connection.close()


def test_chunked_outputs_on_s3_appear_whole_or_not_at_all(instance, s3_env, moto_endpoint, pg_dsn, monkeypatch):
    """On S3 a file is written locally and uploaded once complete: a failure mid-way uploads nothing."""
    zones = Zones.from_settings()
    content = f"{HEADER}\n" + "".join(
        f"Ann Lee{n},ann{n}@mail.net,1985-02-03,81234567\nX{n},bad,bad,bad\n" for n in range(5)
    )
    land(zones, "chunks.csv", content)
    real_write = pq.ParquetWriter.write_table
    calls = []

    def failing_write(writer, table, *args, **kwargs):
        calls.append(table.num_rows)
        if len(calls) == 3:  # the second chunk's
            raise OSError("No space left on device")
        return real_write(writer, table, *args, **kwargs)

    chunked = {"ops": {"application_batch": {"config": {"chunk_lines": 4}}}}
    with monkeypatch.context() as patched:
        patched.setattr(pq.ParquetWriter, "write_table", failing_write)
        assert not run_partition(instance, "membership_batch", "chunks", run_config=chunked).success
    assert not [key for key in bucket_keys(moto_endpoint, s3_env) if key.startswith("members/")]

    assert run_partition(instance, "membership_batch", "chunks", run_config=chunked).success
    successful = zones.read_parquet("members/successful/chunks.parquet")
    assert successful["row_number"].to_pylist() == [1, 3, 5, 7, 9]
    with zones.fs.open(zones.path("members/unsuccessful/chunks.parquet"), "rb") as handle:
        assert pq.ParquetFile(handle).metadata.num_row_groups == 3  # lines 2-5, 6-9, 10-11


def test_odd_keys_on_s3_neither_copy_other_files_nor_stop_the_sensor(instance, s3_env, moto_endpoint, pg_dsn):
    """A name with glob characters was quarantined as whatever objects its pattern matched (another
    file's applicants among them); a key with `?versionId=` made every tick fail; the empty `<prefix>/`
    object an S3 console makes for a folder became a partition of its own that failed."""
    zones = Zones.from_settings()
    good = f"{HEADER}\nAnn Lee,ann@mail.net,1985-02-03,81234567\n"
    binary = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR garbage"
    land(zones, "bad1.csv", good)
    land(zones, "bad[1].csv", binary)
    land(zones, "star*.csv", binary + b"2")
    land(zones, "starX.csv", good)
    bucket, _, prefix = s3_env.removeprefix("s3://").partition("/")
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.put_object(Bucket=bucket, Key=f"{prefix}/landing/applications/", Body=b"")
    client.put_object(Bucket=bucket, Key=f"{prefix}/landing/applications/v?versionId=1.csv", Body=good.encode())

    tick = build_landing_applications_sensor(Settings.from_env())(
        dg.build_sensor_context(instance=instance, resources={"zones": zones})
    )

    sources = sorted(request.tags["memberflow/source_file"] for request in tick.run_requests)
    assert sources == ["bad1.csv", "bad[1].csv", "star*.csv", "starX.csv"]
    for request in tick.run_requests:
        run_batch(instance, request.partition_key, tags=request.tags)
    keys = bucket_keys(moto_endpoint, s3_env)
    quarantined = sorted(key for key in keys if key.startswith("quarantine/") and not key.endswith(".reason.txt"))
    assert quarantined == ["quarantine/applications/bad[1].csv", "quarantine/applications/star*.csv"]
    assert zones.read_bytes("quarantine/applications/bad[1].csv") == binary
    assert zones.read_bytes("quarantine/applications/star*.csv") == binary + b"2"
