"""The notebook app's charts, drawn on the server as SVG: what is in them, and that data cannot get out of them.

The SVG goes into the analysts' page as it is, so a member's or an item's name must stay text: no element,
attribute or script of its own, whatever it contains.
"""

import html
import re
import xml.etree.ElementTree as ElementTree
from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from memberflow_assets.warehouse import charts

SVG = "{http://www.w3.org/2000/svg}"
DRAWING_ELEMENTS = {"svg", "g", "path", "rect", "line", "text", "title"}  # what Vega's SVG renderer writes
HOSTILE = [
    '</svg><script>alert("member")</script>',
    "<img src=x onerror=alert(1)>",
    '" onmouseover="alert(2)',
    "Zoë & Ørjan ' <b>bold</b> ]]> <!-- -->",
]


def parsed(svg: str) -> ElementTree.Element:
    root = ElementTree.fromstring(svg)  # well-formed, or this raises
    assert {element.tag.removeprefix(SVG) for element in root.iter()} <= DRAWING_ELEMENTS
    assert not any(name.lower().startswith("on") for element in root.iter() for name in element.attrib)
    return root


def texts(root: ElementTree.Element, tag: str) -> list[str]:
    return [element.text or "" for element in root.iter(SVG + tag)]


def members(names: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rank": range(1, len(names) + 1),
            "member": names,
            "transactions": [3] * len(names),
            "total_spent": [100.0 - rank for rank in range(len(names))],  # DuckDB's DECIMAL, as a float
        }
    )


def test_names_stay_text_whatever_they_contain():
    root = parsed(charts.svg("top_members", members(HOSTILE)))
    labels, hovers = texts(root, "text"), texts(root, "title")
    for rank, name in enumerate(HOSTILE, 1):
        label = f"{rank}. {name}"  # the axis label, exactly as written (a long one cut short by Vega)
        assert any(text == label or (text.endswith("…") and label.startswith(text[:-1])) for text in labels)
        assert f"{rank}. {name}: spent {101 - rank:.2f}, transactions 3" in hovers
    items = pd.DataFrame(
        {
            "rank": [1, 2],
            "item_name": HOSTILE[:2],
            "manufacturer_name": HOSTILE[2:],
            "times_bought": [5, 4],
            "units_sold": [9, 4],
            "revenue": [10.0, 4.0],
        }
    )
    hovers = texts(parsed(charts.svg("top_items", items)), "title")
    assert f"1. {HOSTILE[0]} ({HOSTILE[2]}): transactions 5, units 9" in hovers


def test_every_bar_and_point_tells_its_figures_on_hover():
    root = parsed(charts.svg("top_members", members(["Grace Hopper", "Ada Lovelace"])))
    assert texts(root, "title") == [
        "1. Grace Hopper: spent 100.00, transactions 3",
        "2. Ada Lovelace: spent 99.00, transactions 3",
    ]
    assert {"1. Grace Hopper", "100.00", "99.00", "Top 10 members by spending"} <= set(texts(root, "text"))
    hours = pd.DataFrame(
        {"hour_start": [datetime(2025, 3, 3, 10)] * 2, "status": ["processed", "rejected"], "images": [4, 1]}
    )
    hovers = texts(parsed(charts.svg("images_per_hour", hours)), "title")
    assert hovers == ["2025-03-03 10:00 UTC: 4 processed", "2025-03-03 10:00 UTC: 1 rejected"]


def sales(days: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "date": pd.to_datetime([date(2025, 1, 1) + timedelta(days=day) for day in range(days)]),
            "transactions": [10] * days,
            "units_sold": [30] * days,
            "revenue": [1234.5] * days,
            "average_basket": [123.45] * days,
        }
    )


def test_a_year_of_sales_is_one_point_a_day_with_a_readable_axis():
    root = parsed(charts.svg("sales_per_day", sales(365)))
    assert len(texts(root, "title")) == 365 and "Wed 2025-01-01: revenue 1,234.50, transactions 10, units 30" in (
        texts(root, "title")
    )
    date_labels = [text for text in texts(root, "text") if re.fullmatch(r"[A-Z][a-z]{2} \d{2}", text)]
    assert 3 <= len(date_labels) <= 30  # not one label a day, drawn over each other
    assert "1,234.50" not in texts(root, "text")  # no value printed over every point either
    week = parsed(charts.svg("sales_per_day", sales(7)))
    assert [text for text in texts(week, "text") if re.fullmatch(r"[A-Z][a-z]{2} \d{2}", text)] == [
        f"Jan {day:02d}" for day in range(1, 8)
    ]
    assert texts(week, "text").count("1,234.50") == 7


EMPTY = {  # each chart query's columns, as a new deployment (no sale, no image yet) answers them
    "sales_per_day": ["date", "transactions", "units_sold", "revenue", "average_basket"],
    "top_members": ["rank", "member", "transactions", "total_spent"],
    "top_items": ["rank", "item_name", "manufacturer_name", "times_bought", "units_sold", "revenue"],
    "applications_by_outcome": ["outcome", "reason", "applications", "applications_in_outcome"],
    "images_per_hour": ["hour_start", "status", "images"],
    "image_formats": ["format", "images", "megabytes"],
    "image_sizes": ["size_class", "format", "images"],
}


@pytest.mark.parametrize("name", list(charts.CHARTS))
def test_a_chart_without_data_is_drawn_empty_with_its_title(name):
    root = parsed(charts.svg(name, pd.DataFrame(columns=EMPTY[name])))
    assert charts.TITLES[name] in texts(root, "text") and texts(root, "title") == []


def test_hover_texts_are_escaped_as_text():
    svg = '<path aria-label="a &lt;b&gt; &amp; &quot;c&quot; <d>" role="graphics-symbol" d="M0,0h1"/>'
    titled = charts._hover_titles(svg)
    assert titled == '<path role="graphics-symbol" d="M0,0h1"><title>a &lt;b&gt; &amp; "c" &lt;d&gt;</title></path>'
    assert html.unescape(re.search("<title>(.*)</title>", titled)[1]) == 'a <b> & "c" <d>'
