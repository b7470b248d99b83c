"""The notebook app's warehouse access: the chart queries, the sandboxed SQL cell, following new versions."""

import html
import os
import re
import threading
from decimal import Decimal

import psycopg2
import pytest

from memberflow_assets.settings import ConfigurationError, Settings
from memberflow_assets.warehouse import analyst as analyst_module
from memberflow_assets.warehouse import charts, versions
from memberflow_assets.warehouse.analyst import AnalystWarehouse, keep_charts_drawn, sample_queries
from memberflow_assets.warehouse.refresh import refresh_warehouse
from memberflow_assets.zones import Zones
from memberflow_assets_tests.helpers import wait_until
from memberflow_assets_tests.sales_data import add_transaction
from memberflow_assets_tests.warehouse_data import KNOWN, build_known_warehouse


@pytest.fixture
def analyst(memberflow_env, pg_dsn, zones) -> AnalystWarehouse:
    build_known_warehouse(pg_dsn, zones, Settings.from_env().warehouse)
    return AnalystWarehouse.from_settings()


def test_the_chart_queries_answer_with_the_known_figures(analyst):
    members = analyst.chart_data("top_members")
    assert len(members) == 10 and list(members.columns) == ["rank", "member", "transactions", "total_spent"]
    assert (members.member[0], str(members.total_spent[0])) == KNOWN["top_member"]
    assert (members.member[1], str(members.total_spent[1])) == KNOWN["second_member"]
    assert list(analyst.chart_data("top_items").item_name) == KNOWN["top_items"]
    sales = analyst.chart_data("sales_per_day")
    assert len(sales) == KNOWN["sales_days"] and str(sales.revenue.iloc[-1]) == KNOWN["revenue_2025_03_03"]
    outcomes = analyst.chart_data("applications_by_outcome")
    assert dict(zip(outcomes.outcome, outcomes.applications_in_outcome, strict=True)) == KNOWN["applications"]
    assert (
        tuple(outcomes[outcomes.outcome == "unsuccessful"].iloc[0][["reason", "applications"]])
        == (KNOWN["top_rejection"])
    )
    per_hour = analyst.chart_data("images_per_hour")
    assert per_hour.images.sum() == KNOWN["images"] and per_hour[per_hour.status == "rejected"].images.sum() == 1
    formats = analyst.chart_data("image_formats")
    assert dict(zip(formats.format, formats.images, strict=True)) == KNOWN["image_formats"]
    assert analyst.chart_data("image_sizes").images.sum() == sum(KNOWN["image_formats"].values())


def test_the_sql_cell_runs_queries_with_a_row_limit_and_a_time_limit(analyst):
    result = analyst.run("SELECT item_name, times_bought FROM bi.top_items_by_purchases ORDER BY rank")
    assert result.error is None and list(result.frame.item_name) == KNOWN["top_items"] and not result.truncated
    many = AnalystWarehouse(analyst.warehouse_path, analyst.zones, max_rows=5).run("FROM range(100)")
    assert many.truncated and len(many.frame) == 5
    assert analyst.run("SELEC 1").error.startswith("Parser Error")
    assert analyst.run("   ").error == "no query"
    slow = AnalystWarehouse(analyst.warehouse_path, analyst.zones, query_timeout=0.5)
    stopped = slow.run("SELECT count(*) FROM range(100000000) a, range(100000) b WHERE a.range + b.range = -1")
    assert stopped.error.startswith("stopped after 0.5 s")
    assert slow.run("SELECT 42 AS answer").frame.answer.tolist() == [42]  # the next query works
    for name, sql in sample_queries().items():  # the sample analyst queries offered in the cell all run
        assert analyst.run(sql).error is None, name


@pytest.mark.parametrize(
    "attack",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/proc/self/environ')",  # the process's secrets
        "SELECT * FROM read_parquet('{zones}/members/successful/known.parquet')",  # personal data in the zones
        "SELECT * FROM read_parquet('{zones}/images/metadata/../../members/successful/known.parquet')",
        "COPY (SELECT 1) TO '{zones}/images/metadata/evil.parquet'",
        "ATTACH '{warehouse}' AS writable",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "SET memory_limit = '100GB'",
        "CREATE TABLE mine AS SELECT 1",
        "SELECT * FROM glob('/*')",
    ],
)
def test_the_sql_cell_cannot_leave_the_warehouse(analyst, attack):
    sql = attack.format(zones=analyst.zones.url(""), warehouse=analyst.warehouse_path)
    result = analyst.run(sql)
    assert result.error is not None and result.frame is None, sql
    assert analyst.run("SELECT count(*) AS n FROM bi.image_metadata").frame.n.tolist() == [KNOWN["images"]]


@pytest.mark.parametrize(
    "statement",
    [
        "EXPLAIN ANALYZE CREATE TEMP VIEW dim_member AS SELECT 1 AS pwned",  # would shadow the table, per session
        "EXPLAIN ANALYZE CREATE OR REPLACE TEMP TABLE big AS SELECT range AS x FROM range(1000)",
        "EXPLAIN ANALYZE SET VARIABLE x = 1",
        "EXPLAIN ANALYZE CALL checkpoint()",
        "explain /* hidden */ analyse (FORMAT json) create temp macro m(x) AS x + 1",
        "EXPLAIN CREATE TABLE mine AS SELECT 1",
    ],
)
def test_the_sql_cell_explains_only_select_statements(analyst, statement):
    """Reproduced: the cell let any EXPLAIN through, and EXPLAIN ANALYZE runs the statement it wraps."""
    result = analyst.run(statement)
    assert result.error == "the SQL cell runs one SELECT statement (or an EXPLAIN of one), nothing else"
    assert analyst.run("SELECT * FROM dim_member LIMIT 1").frame.columns.tolist() != ["pwned"]
    for explained in ["EXPLAIN SELECT * FROM dim_member", "EXPLAIN ANALYZE /* why slow */ FROM fact_sales"]:
        assert analyst.run(explained).error is None, explained


def test_the_app_follows_newer_versions_without_a_restart(analyst, pg_dsn, zones):
    first = analyst.current()
    other_session = AnalystWarehouse.from_settings()  # another browser tab: same process, same database
    assert other_session.current() == first and other_session.run("SELECT 1 AS one").frame.one.tolist() == [1]
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        add_transaction(cursor, "turing_f6a7b", [(3, 4)], created_at="2025-03-04T10:00:00Z")  # 4 toasters
    connection.close()
    assert analyst.chart_data("top_members").member[0] == "Grace Hopper"
    refresh_warehouse(pg_dsn, analyst.warehouse_path, zones)
    assert analyst.current() != first
    top = analyst.chart_data("top_members")
    assert (top.member[0], top.total_spent[0]) == ("Alan Turing", Decimal("196.50"))
    assert analyst.published_at().endswith(" UTC")


def test_without_a_warehouse_the_cell_says_so(memberflow_env):
    analyst = AnalystWarehouse.from_settings()
    assert analyst.current() is None
    assert "no warehouse published" in analyst.run("SELECT 1").error
    with pytest.raises(FileNotFoundError):
        analyst.chart_data("top_members")


def test_on_s3_zones_the_image_views_are_readable_and_nothing_else(s3_env, pg_dsn, tmp_path):
    zones = Zones.from_settings()
    build_known_warehouse(pg_dsn, zones, Settings.from_env().warehouse)
    analyst = AnalystWarehouse.from_settings()
    assert analyst.chart_data("images_per_hour").images.sum() == KNOWN["images"]
    assert analyst.run(f"FROM read_parquet('{zones.url('members/successful/known.parquet')}')").error is not None


def test_a_version_that_cannot_be_opened_is_not_switched_to(analyst):
    first = analyst.current()
    broken = os.path.join(versions.versions_folder(analyst.warehouse_path), "99999999999999999-deadbeef.duckdb")
    with open(broken, "wb") as handle:
        handle.write(b"not a database" * 1000)
    link = analyst.warehouse_path + ".new-link"
    os.symlink(broken, link)
    os.replace(link, analyst.warehouse_path)  # as if a broken file had been published
    assert analyst.current() == first
    assert analyst.run("SELECT count(*) AS n FROM bi.top_members_by_spending").frame.n.tolist() == [10]
    fresh = AnalystWarehouse.from_settings()  # a new session has nothing to fall back on: it says so
    assert fresh.run("SELECT 1").error is not None


def titles(svg: str) -> list[str]:
    """The hover texts of a drawn chart's marks."""
    return [html.unescape(title) for title in re.findall(r"<title>(.*?)</title>", svg)]


def images_drawn(drawn: dict) -> int:
    """Images per hour, added up from the chart's bars ("2026-12-01 20:00 UTC: 4 processed")."""
    return sum(int(title.split(": ")[1].split()[0]) for title in titles(drawn["images_per_hour"].svg))


@pytest.fixture
def drawings(monkeypatch) -> list[str]:
    """The names of the charts drawn from here on (each a query and a drawing)."""
    drawn = []
    draw = charts.svg
    monkeypatch.setattr(charts, "svg", lambda name, frame: drawn.append(name) or draw(name, frame))
    return drawn


def test_the_charts_are_drawn_once_per_change_of_the_data_for_every_session(analyst, zones, pg_dsn, drawings):
    drawn = analyst.drawn_charts()
    assert set(drawn) == set(charts.TITLES) and all(chart.error is None for chart in drawn.values())
    assert "1. Grace Hopper: spent 109.99, transactions 1" in titles(drawn["top_members"].svg)
    assert images_drawn(drawn) == KNOWN["images"] and len(drawings) == 7
    other_session = AnalystWarehouse.from_settings()  # the next analyst: no query, no drawing
    assert other_session.drawn_charts() is drawn and len(drawings) == 7

    # The image views read live files: an hour purged, or rewritten under the same name, is drawn at once.
    zones.delete(f"images/metadata/{KNOWN['image_hours'][1]}.parquet")
    purged = other_session.drawn_charts()
    assert images_drawn(purged) == KNOWN["images"] - 2 and len(drawings) == 14
    first_hour = f"images/metadata/{KNOWN['image_hours'][0]}.parquet"
    zones.write_parquet(first_hour, zones.read_parquet(first_hour).slice(1))
    assert images_drawn(analyst.drawn_charts()) == KNOWN["images"] - 3

    # A new version: drawn again, for everyone.
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        add_transaction(cursor, "turing_f6a7b", [(3, 4)], created_at="2025-03-04T10:00:00Z")  # 4 toasters
    connection.close()
    refresh_warehouse(pg_dsn, analyst.warehouse_path, zones)
    newest = other_session.drawn_charts()
    assert "1. Alan Turing: spent 196.50, transactions 2" in titles(newest["top_members"].svg)
    assert analyst.drawn_charts() is newest


def test_a_chart_that_fails_says_why_the_others_are_drawn_and_it_is_tried_again(analyst, monkeypatch):
    monkeypatch.setattr(analyst_module, "CHART_RETRY_SECONDS", 0.5)
    working = charts.CHARTS["image_sizes"]
    monkeypatch.setitem(charts.CHARTS, "image_sizes", lambda frame: frame["no such column"])
    drawn = analyst.drawn_charts()
    assert drawn["image_sizes"].svg is None and "no such column" in drawn["image_sizes"].error
    assert all(chart.svg for name, chart in drawn.items() if name != "image_sizes")
    monkeypatch.setitem(charts.CHARTS, "image_sizes", working)  # whatever failed has passed
    wait_until(lambda: analyst.drawn_charts()["image_sizes"].svg, 30, "the chart drawn again")


def test_the_app_draws_the_charts_of_new_data_before_anyone_asks(analyst, pg_dsn, zones, drawings):
    stop = threading.Event()
    ahead = threading.Thread(target=keep_charts_drawn, args=(0.1, stop))
    ahead.start()
    try:
        wait_until(lambda: len(drawings) == 7, 60, "the charts drawn")
        analyst.drawn_charts()  # an analyst opens the app: nothing left to draw
        assert len(drawings) == 7
        with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
            add_transaction(cursor, "turing_f6a7b", [(3, 4)], created_at="2025-03-04T10:00:00Z")
        connection.close()
        refresh_warehouse(pg_dsn, analyst.warehouse_path, zones)
        wait_until(lambda: len(drawings) == 14, 60, "the new version's charts drawn")
        assert "1. Alan Turing: spent 196.50, transactions 2" in titles(analyst.drawn_charts()["top_members"].svg)
        assert len(drawings) == 14
    finally:
        stop.set()
        ahead.join(timeout=60)
    assert not ahead.is_alive()


@pytest.mark.parametrize(
    ("setting", "seconds"), [("30s", 30), ("1s", 1), ("5m", 300), ("1h", 3600), ("2.5", 2.5), ("", 30)]
)
def test_how_often_the_app_looks_for_new_data(monkeypatch, setting, seconds):
    monkeypatch.setenv("MEMBERFLOW_ANALYTICS_CHECK_EVERY", setting)
    assert Settings.from_env().analytics_check_every_seconds == seconds


def test_an_unreadable_check_interval_is_refused_not_taken_as_30_s(monkeypatch):
    monkeypatch.setenv("MEMBERFLOW_ANALYTICS_CHECK_EVERY", "soon")
    with pytest.raises(ConfigurationError, match='MEMBERFLOW_ANALYTICS_CHECK_EVERY must be a duration such as "30s"'):
        Settings.from_env()
