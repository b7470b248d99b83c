"""Defence in depth for S3: a bucket lifecycle rule that expires the image prefixes after 7 days, so
images go even if the retention job stops running. No Dagster.

S3 expires an object at the first midnight UTC after `creation + Days`, i.e. never before it is 7 days
old; the retention job normally deletes it earlier in that window (about an hour after its hour turns
7 days old). One rule per image prefix, each with a stable id: applying again replaces our rules and
keeps every other rule of the bucket. On a versioned bucket the expiry only adds a delete marker, so
each rule also expires non-current versions one day later, and abandoned multipart uploads.
"""

from __future__ import annotations

import boto3
from botocore.exceptions import ClientError

from memberflow_assets.images.layout import LANDING_PREFIX, METADATA_PREFIX, PROCESSED_PREFIX, QUARANTINE_PREFIX
from memberflow_assets.zones import Zones

RETENTION_DAYS = 7
RULE_ID_PREFIX = "memberflow-images-"
IMAGE_PREFIXES = {
    "landing": LANDING_PREFIX,
    "quarantine": QUARANTINE_PREFIX,
    "processed": PROCESSED_PREFIX,
    "metadata": METADATA_PREFIX,
}


def bucket_and_prefix(zones: Zones) -> tuple[str, str]:
    if not zones.is_s3:
        raise ValueError("the zones are on a local folder (MEMBERFLOW_STORAGE_URL is not s3://...): no bucket")
    bucket, _, prefix = zones.root.partition("/")
    return bucket, prefix.strip("/")


def image_rules(zones: Zones, days: int = RETENTION_DAYS) -> list[dict]:
    if days < RETENTION_DAYS:
        raise ValueError(f"images are kept {RETENTION_DAYS} days: an expiry after {days} days would cut that short")
    _, root = bucket_and_prefix(zones)
    return [
        {
            "ID": f"{RULE_ID_PREFIX}{name}",
            "Filter": {"Prefix": f"{root}/{prefix}/" if root else f"{prefix}/"},
            "Status": "Enabled",
            "Expiration": {"Days": days},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
        for name, prefix in IMAGE_PREFIXES.items()
    ]


def _client(zones: Zones):
    return boto3.client("s3", endpoint_url=zones.s3_endpoint_url)


def current_rules(zones: Zones) -> list[dict]:
    bucket, _ = bucket_and_prefix(zones)
    try:
        return _client(zones).get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return []
        raise


def apply_lifecycle(zones: Zones, days: int = RETENTION_DAYS) -> list[dict]:
    """Put the image expiry rules on the zones' bucket, keeping its other rules; returns all rules."""
    bucket, _ = bucket_and_prefix(zones)
    ours = image_rules(zones, days)
    others = [rule for rule in current_rules(zones) if not rule.get("ID", "").startswith(RULE_ID_PREFIX)]
    _client(zones).put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": others + ours})
    return current_rules(zones)
