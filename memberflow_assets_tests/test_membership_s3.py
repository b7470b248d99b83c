"""The same membership code path with every zone in S3 (moto's server), PostgreSQL real."""

import json

import boto3
import dagster as dg
import psycopg2

from memberflow_assets.membership.sensors import landing_applications_sensor
from memberflow_assets.resources import ZonesResource
from memberflow_assets.zones import Zones

from .helpers import HEADER, check_results, land, read_output, run_batch


def bucket_keys(endpoint: str, storage_url: str) -> list[str]:
    bucket, _, prefix = storage_url.removeprefix("s3://").partition("/")
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"].removeprefix(prefix + "/") for item in listing.get("Contents", []))


def test_sensor_pipeline_and_quarantine_on_s3(instance, s3_env, moto_endpoint, pg_dsn):
    zones = Zones.from_settings()
    assert zones.is_s3
    land(zones, "s3_batch.csv", f"{HEADER}\nAnn Lee,ann@mail.net,1985-02-03,81234567\nX,bad,bad,bad\n")
    land(zones, "broken.csv", b"\xff\xfe\x00garbage")

    tick = landing_applications_sensor(dg.build_sensor_context(instance=instance, resources={"zones": ZonesResource()}))
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
