"""The landing sensor, evaluated with build_sensor_context against a real local landing zone."""

import json
import os
import time

import dagster as dg
import pytest

from memberflow_assets.membership import sensors
from memberflow_assets.membership.layout import batch_key
from memberflow_assets.membership.partitions import application_files
from memberflow_assets.membership.sensors import SHA256_TAG, build_landing_applications_sensor
from memberflow_assets.settings import Settings
from memberflow_assets.zones import Zones
from memberflow_assets_tests.helpers import HEADER, land, read_output, run_batch

GOOD = f"{HEADER}\nAnn Lee,ann@mail.net,1985-02-03,81234567\n"


@pytest.fixture
def settled(monkeypatch):
    """Files count as finished as soon as they are seen (the settle rule has its own test)."""
    monkeypatch.setenv("MEMBERFLOW_LANDING_SETTLE_SECONDS", "0")


class Ticker:
    """Evaluates the sensor tick after tick, carrying the cursor like the daemon does."""

    def __init__(self, instance):
        self.instance = instance
        self.cursor = None

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources={"zones": Zones.from_settings()}
        )
        result = build_landing_applications_sensor(Settings.from_env())(context)
        self.cursor = result.cursor
        added = [key for request in result.dynamic_partitions_requests for key in request.partition_keys]
        if added:  # what the daemon does with the request
            self.instance.add_dynamic_partitions(application_files.name, added)
        return result


def keys(result: dg.SensorResult) -> list[str]:
    return sorted(request.partition_key for request in result.run_requests)


def test_new_files_get_a_partition_and_a_run_once(instance, zones, settled):
    land(zones, "week_1.csv", GOOD)
    land(zones, "week 2 (final).csv", GOOD.replace("Ann", "Bea"))
    ticker = Ticker(instance)

    first = ticker.tick()

    assert len(keys(first)) == 2 and "week_1" in keys(first)
    odd_key = next(key for key in keys(first) if key != "week_1")
    assert odd_key.startswith("week_2_final_.csv~") and len(odd_key) == len("week_2_final_.csv~") + 16
    added = first.dynamic_partitions_requests[0].partition_keys
    assert sorted(added) == keys(first)
    request = next(r for r in first.run_requests if r.partition_key == "week_1")
    assert request.tags[SHA256_TAG] and request.tags["memberflow/source_file"] == "week_1.csv"
    assert request.run_key.startswith("week_1:")
    assert ticker.tick().run_requests == []


def test_files_still_being_written_are_left_alone(instance, zones):
    land(zones, "upload.csv.part", GOOD)
    land(zones, "upload.tmp", GOOD)
    land(zones, ".hidden.csv", GOOD)
    path = zones.path("landing/applications/growing.csv")
    with open(path, "w") as handle:
        handle.write(HEADER + "\n")
    ticker = Ticker(instance)

    assert ticker.tick().run_requests == []  # first sight: growing.csv is brand new
    with open(path, "a") as handle:
        handle.write("Ann Lee,ann@mail.net,1985-02-03,81234567\n")
    assert ticker.tick().run_requests == []  # its size changed since the last tick
    assert keys(ticker.tick()) == ["growing"]  # unchanged since the last tick: finished
    assert ticker.tick().run_requests == []


def test_a_file_unchanged_for_the_settle_time_is_taken_at_first_sight(instance, zones, monkeypatch):
    monkeypatch.setenv("MEMBERFLOW_LANDING_SETTLE_SECONDS", "0.5")
    land(zones, "quiet.csv", GOOD)
    time.sleep(0.6)
    assert keys(Ticker(instance).tick()) == ["quiet"]


def test_every_landed_file_is_a_partition_and_unchanged_content_runs_nothing(instance, zones, settled):
    """Two days' identical files (header-only days, a copy under another name) are two landed files, two
    partitions; a file touched or dropped again unchanged is not run again."""
    land(zones, "day_1.csv", f"{HEADER}\n")
    land(zones, "day_2.csv", f"{HEADER}\n")
    ticker = Ticker(instance)
    first = ticker.tick()
    assert keys(first) == ["day_1", "day_2"]
    for request in first.run_requests:
        assert run_batch(instance, request.partition_key, tags=request.tags).success

    time.sleep(0.01)
    os.utime(zones.path("landing/applications/day_1.csv"))  # touched
    land(zones, "day_2.csv", f"{HEADER}\n")  # dropped again, the same bytes
    land(zones, "day_3.csv", f"{HEADER}\n")
    assert keys(ticker.tick()) == ["day_3"]


def test_a_file_changed_back_to_earlier_content_runs_again(instance, zones, settled):
    """v1, then a correction v2, then upstream reverts it: the partition's outputs must be v1's again."""
    ticker = Ticker(instance)
    corrected = GOOD.replace("81234567", "87654321")
    requests = []
    for content in (GOOD, corrected, GOOD):
        time.sleep(0.01)
        land(zones, "monthly.csv", content)
        [request] = ticker.tick().run_requests
        assert run_batch(instance, request.partition_key, tags=request.tags).success
        requests.append(request)
    assert len({request.run_key for request in requests}) == 3
    assert list(read_output(zones, "successful", "monthly")["mobile_no"]) == ["81234567"]


def test_a_file_stamped_in_the_future_does_not_hide_the_files_after_it(instance, zones, settled):
    """A skewed clock, `touch -d`, an archive's time stamps: the cursor never moves past the tick's time."""
    land(zones, "skewed.csv", GOOD)
    future = time.time() + 30 * 86400
    os.utime(zones.path("landing/applications/skewed.csv"), (future, future))
    ticker = Ticker(instance)
    # not settled by its time at first sight (its change lies ahead): by being unchanged since the last tick
    assert keys(ticker.tick()) + keys(ticker.tick()) == ["skewed"]
    assert ticker.tick().run_requests == []  # and it is not requested again

    land(zones, "next.csv", GOOD.replace("Ann", "Bea"))
    assert keys(ticker.tick()) == ["next"]
    assert json.loads(ticker.cursor)["hwm"] <= time.time()


def test_a_rewritten_file_runs_its_partition_again(instance, zones, settled):
    land(zones, "monthly.csv", GOOD)
    ticker = Ticker(instance)
    first = ticker.tick().run_requests[0]
    time.sleep(0.01)
    land(zones, "monthly.csv", GOOD + "Bob Tan,bob@example.com,1970-01-01,91234567\n")

    second = ticker.tick()

    assert keys(second) == ["monthly"]
    assert second.run_requests[0].run_key != first.run_key
    assert second.dynamic_partitions_requests == []  # the partition exists already


def test_thousands_of_files_in_bounded_ticks_without_rereading_old_ones(instance, zones, settled, monkeypatch):
    monkeypatch.setattr(sensors, "OVERLAP_SECONDS", 0.5)
    for number in range(450):
        land(zones, f"bulk_{number:04d}.csv", f"{HEADER}\nP{number} Q,p{number}@example.com,1990-01-01,81234567\n")
    reads = []
    real_sha256 = sensors._sha256
    monkeypatch.setattr(sensors, "_sha256", lambda z, relpath: reads.append(relpath) or real_sha256(z, relpath))
    ticker = Ticker(instance)

    requested = [key for _ in range(3) for key in keys(ticker.tick())]

    assert len(requested) == 450 == len(set(requested))  # 200 + 200 + 50: every file exactly once
    assert len(reads) == 450
    reads.clear()
    time.sleep(0.6)  # the bulk is now older than the overlap window
    land(zones, "one_more.csv", GOOD)
    assert keys(ticker.tick()) == ["one_more"]
    assert reads == ["landing/applications/one_more.csv"]  # the 450 old files were not read again
    # the cursor remembers only files inside the overlap window, not every file ever seen
    assert list(json.loads(ticker.cursor)["seen"]) == ["landing/applications/one_more.csv"]


def test_a_wrongly_named_file_is_picked_up_to_be_quarantined_not_ignored(instance, zones, settled):
    land(zones, "applications.xlsx", b"PK\x03\x04 not really a spreadsheet")
    assert keys(Ticker(instance).tick()) == [batch_key("applications.xlsx")]
    assert batch_key("applications.xlsx").startswith("applications.xlsx~")


def test_folders_links_and_special_files_in_the_landing_zone_are_reported_once_and_never_read(
    instance, zones, settled, tmp_path, capfd
):
    landing = zones.path("landing/applications")
    land(zones, "good.csv", GOOD)
    os.makedirs(os.path.join(landing, "2026-12"))
    with open(os.path.join(landing, "2026-12", "nested.csv"), "w") as nested:
        nested.write(GOOD.replace("Ann", "Cy"))
    secret = tmp_path / "elsewhere.csv"
    secret.write_text(GOOD.replace("Ann", "Di"))
    os.symlink(secret, os.path.join(landing, "linked.csv"))
    os.symlink(tmp_path / "missing.csv", os.path.join(landing, "dangling.csv"))
    os.mkfifo(os.path.join(landing, "pipe.csv"))  # reading it would block the sensor for ever
    ticker = Ticker(instance)

    def warnings() -> list[str]:  # the sensor's log lines (Dagster's handler writes to the process's stderr)
        return [
            line.split(" - WARNING - ", 1)[1] for line in capfd.readouterr().err.splitlines() if " - WARNING - " in line
        ]

    capfd.readouterr()
    first = ticker.tick()

    assert keys(first) == ["good"]  # the good file is not held up by the others
    assert sorted(line.split(", not read")[0] for line in warnings()) == [
        "landing/applications/2026-12: a folder",
        "landing/applications/dangling.csv: a symbolic link",
        "landing/applications/linked.csv: a symbolic link",
        "landing/applications/pipe.csv: a special file",
    ]
    assert ticker.tick().run_requests == [] and warnings() == []  # said once

    os.rename(os.path.join(landing, "2026-12"), os.path.join(landing, "2026-12-again"))
    ticker.tick()
    assert [line.split(", not read")[0] for line in warnings()] == ["landing/applications/2026-12-again: a folder"]


def test_a_file_whose_name_is_not_utf8_is_reported_once_and_does_not_stop_the_others(
    instance, zones, settled, capfd, pg_dsn
):
    """A local file name is bytes: one that is not UTF-8 (b"bad\\xff.csv") cannot be a run tag, a log line
    or a database value, and once stopped every tick (UnicodeEncodeError), so no file was picked up at all."""
    landing = os.fsencode(zones.path("landing/applications"))
    land(zones, "good.csv", GOOD)
    with open(os.path.join(landing, b"bad\xff.csv"), "wb") as bad:
        bad.write(GOOD.replace("Ann", "Bo").encode())
    ticker = Ticker(instance)
    capfd.readouterr()

    first = ticker.tick()

    assert keys(first) == ["good"]
    logged = capfd.readouterr().err.splitlines()
    warned = [line.split(" - WARNING - ", 1)[1] for line in logged if " - WARNING - " in line]
    assert warned == [
        "landing/applications/bad\\xff.csv: a file whose name is not UTF-8, not read: rename it (UTF-8) to have it read"
    ]
    assert ticker.tick().run_requests == [] and "WARNING" not in capfd.readouterr().err  # said once
    [request] = first.run_requests
    assert run_batch(instance, request.partition_key, tags=request.tags).success  # members included


def test_a_file_that_cannot_be_read_now_is_tried_again_and_holds_up_no_other(instance, zones, settled, monkeypatch):
    land(zones, "flaky.csv", GOOD)
    land(zones, "fine.csv", GOOD.replace("Ann", "Bea"))
    real, failures = sensors._sha256, []

    def flaky(zones_, relpath):
        if relpath.endswith("flaky.csv") and not failures:
            failures.append(relpath)
            raise OSError("connection reset")  # an S3 hiccup, a file gone for a moment
        return real(zones_, relpath)

    monkeypatch.setattr(sensors, "_sha256", flaky)
    ticker = Ticker(instance)
    assert keys(ticker.tick()) == ["fine"]
    assert keys(ticker.tick()) == ["flaky"]
    assert ticker.tick().run_requests == []
