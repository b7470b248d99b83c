"""A small warehouse with known contents in every domain: sales, membership outcomes, image metadata.

Used by the warehouse publishing tests, the DuckDB shell test and the notebook app's browser test, which
assert the figures in `KNOWN`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg2
import pyarrow as pa

from memberflow_assets.images.layout import hour_key
from memberflow_assets.images.processing import hour_partition
from memberflow_assets.postgres import apply_migrations
from memberflow_assets.testing.images import encode, jpeg, picture
from memberflow_assets.warehouse.refresh import refresh_warehouse
from memberflow_assets.zones import Zones
from memberflow_assets_tests.images.helpers import land_image

from .sales_data import add_item, add_transaction

MEMBERS = [  # (membership_id, first name, last name)
    ("hopper_1a2b3", "Grace", "Hopper"),
    ("lovelace_c4d5e", "Ada", "Lovelace"),
    ("turing_f6a7b", "Alan", "Turing"),
] + [(f"member{number:02d}_{number:05x}", "Test", f"Member{number:02d}") for number in range(10)]

# Images: two hours that ended recently (UTC).
IMAGE_HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)

KNOWN = {
    "top_member": ("Grace Hopper", "109.99"),  # 2 toasters + a kettle
    "second_member": ("Ada Lovelace", "42.99"),
    "top_items": ["Mug", "Lamp", "Kettle"],  # by how many transactions bought them: 11, 3, 2
    "sales_days": 3,
    "revenue_2025_03_03": "109.99",
    "applications": {"successful": 5, "unsuccessful": 6},
    "top_rejection": ("invalid_email", 4),
    "image_hours": [hour_key(IMAGE_HOUR), hour_key(IMAGE_HOUR + timedelta(hours=1))],
    "images": 7,
    "images_rejected": 1,
    "image_formats": {"JPEG": 5, "PNG": 1},
}


def _add_members(cursor) -> None:
    for number, (membership_id, first, last) in enumerate(MEMBERS):
        cursor.execute(
            "INSERT INTO sales.members (membership_id, first_name, last_name, email, date_of_birth, mobile_no,"
            " above_18, source_batch) VALUES (%s, %s, %s, %s, '1980-05-17', %s, true, 'known')",
            (membership_id, first, last, f"{last.lower()}@example.com", f"{81234560 + number}"),
        )


def add_sales(dsn: str) -> None:
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        _add_members(cursor)
        kettle = add_item(cursor, "Kettle", "19.99", "1.200")
        lamp = add_item(cursor, "Lamp", "5.50", "0.250", manufacturer="Globex")
        toaster = add_item(cursor, "Toaster", "45.00", "2.000")
        mug = add_item(cursor, "Mug", "3.25", "0.300", manufacturer="Globex")
        add_transaction(cursor, "hopper_1a2b3", [(toaster, 2), (kettle, 1)], created_at="2025-03-03T10:00:00Z")
        add_transaction(cursor, "lovelace_c4d5e", [(kettle, 1), (lamp, 2)], created_at="2025-03-01T09:00:00Z")
        add_transaction(cursor, "lovelace_c4d5e", [(lamp, 1), (mug, 2)], created_at="2025-03-02T09:00:00Z")
        add_transaction(cursor, "turing_f6a7b", [(lamp, 3)], created_at="2025-03-02T12:00:00Z")
        for number in range(10):  # 10 smaller buyers: 3.25 .. 32.50
            add_transaction(cursor, f"member{number:02d}_{number:05x}", [(mug, number + 1)],
                            created_at="2025-03-01T15:00:00Z")  # fmt: skip
    connection.close()


def add_application_outcomes(zones: Zones) -> None:
    outcomes = {
        "successful": [(True, "")] * 5,
        "unsuccessful": [(False, "invalid_email")] * 3
        + [(False, "under_18")] * 2
        + [(False, "invalid_mobile_no;invalid_email")],
    }
    for kind, rows in outcomes.items():
        zones.write_parquet(
            f"members/{kind}/known.parquet",
            pa.table(
                {
                    "batch": ["known"] * len(rows),
                    "row_number": list(range(1, len(rows) + 1)),
                    "is_successful": [ok for ok, _ in rows],
                    "rejection_reasons": [reasons for _, reasons in rows],
                }
            ),
        )


def add_images(zones: Zones) -> None:
    """Land and process 7 images in two hours: 5 JPEG, 1 PNG, 1 that is not an image."""
    first, second = IMAGE_HOUR, IMAGE_HOUR + timedelta(hours=1)
    land_image(zones, None, jpeg(640, 480, seed=1), first + timedelta(minutes=1))
    land_image(zones, None, jpeg(1600, 1200, seed=2), first + timedelta(minutes=2))
    land_image(zones, None, jpeg(320, 240, seed=3), first + timedelta(minutes=3))
    land_image(zones, None, encode(picture(2000, 1100), "PNG"), first + timedelta(minutes=4), fmt="PNG")
    land_image(zones, None, b"this is not an image", first + timedelta(minutes=5))
    land_image(zones, None, jpeg(800, 600, seed=4), second + timedelta(minutes=1), source="kafka")
    land_image(zones, None, jpeg(800, 600, seed=5), second + timedelta(minutes=2), source="kafka")
    for key in KNOWN["image_hours"]:
        hour_partition.update_hour(zones, key, workers=1)


def build_known_warehouse(pg_dsn: str, zones: Zones, warehouse: str) -> str:
    """Everything above, then a full refresh: returns the published version."""
    apply_migrations(pg_dsn)
    add_sales(pg_dsn)
    add_application_outcomes(zones)
    add_images(zones)
    return refresh_warehouse(pg_dsn, warehouse, zones, full=True).path
