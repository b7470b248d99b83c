"""The notebook app's charts (Vega-Altair), one per chart query in sql/analyst/notebook/. No Dagster.

Rendered as SVG (so every mark and label is in the page, where the browser test reads them) by the
Vega that marimo bundles: nothing is loaded from a CDN. Each chart also prints its values as text
marks, so a figure can be read without hovering.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

EMBED = {"embedOptions": {"renderer": "svg", "actions": False}}
WIDTH = 420
HEIGHT = 220
LABELLED_DAYS = 31


TITLES = {
    "sales_per_day": "Sales per day (revenue, UTC)",
    "top_members": "Top 10 members by spending",
    "top_items": "Top 3 items (transactions that bought them)",
    "applications_by_outcome": "Membership applications by outcome and rejection reason",
    "images_per_hour": "Images per hour (UTC), processed and rejected",
    "image_formats": "Image formats (processed images)",
    "image_sizes": "Image sizes (megapixels) by format",
}


def _chart(frame: pd.DataFrame, name: str) -> alt.Chart:
    return alt.Chart(frame, title=TITLES[name], width=WIDTH, height=HEIGHT)


def _money(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Decimal columns as floats (Vega needs numbers) and as exact text labels."""
    frame = frame.copy()
    for column in columns:
        frame[f"{column}_label"] = frame[column].map(lambda value: f"{value:,.2f}")
        frame[column] = frame[column].astype(float)
    return frame


def sales_per_day(frame: pd.DataFrame) -> alt.TopLevelMixin:
    frame = _money(frame, "revenue")
    base = _chart(frame, "sales_per_day").encode(
        x=alt.X("date:T", title=None, axis=alt.Axis(format="%b %d", tickCount={"interval": "day", "step": 1})),
        y=alt.Y("revenue:Q", title="revenue"),
    )
    line = base.mark_line(point=True).encode(tooltip=["date:T", "transactions:Q", "units_sold:Q", "revenue_label:N"])
    if len(frame) > LABELLED_DAYS:  # a label per day would cover the line
        return line
    return line + base.mark_text(dy=-10).encode(text="revenue_label:N")


def top_members(frame: pd.DataFrame) -> alt.TopLevelMixin:
    frame = _money(frame, "total_spent")
    frame["label"] = frame["rank"].astype(str) + ". " + frame["member"]  # two people may share a name
    base = _chart(frame, "top_members").encode(
        y=alt.Y("label:N", sort=None, title=None), x=alt.X("total_spent:Q", title="total spent")
    )
    bars = base.mark_bar().encode(tooltip=["member:N", "transactions:Q", "total_spent_label:N"])
    return bars + base.mark_text(align="left", dx=3).encode(text="total_spent_label:N")


def top_items(frame: pd.DataFrame) -> alt.TopLevelMixin:
    frame = frame.copy()
    frame["label"] = frame["rank"].astype(str) + ". " + frame["item_name"]
    base = _chart(frame, "top_items").encode(
        y=alt.Y("label:N", sort=None, title=None), x=alt.X("times_bought:Q", title="transactions")
    )
    bars = base.mark_bar().encode(tooltip=["item_name:N", "manufacturer_name:N", "times_bought:Q", "units_sold:Q"])
    return bars + base.mark_text(align="left", dx=3).encode(text="times_bought:Q")


def applications_by_outcome(frame: pd.DataFrame) -> alt.TopLevelMixin:
    base = _chart(frame, "applications_by_outcome").encode(
        y=alt.Y("reason:N", sort=None, title=None),  # the query's order: outcome, then most frequent
        x=alt.X("applications:Q", title="applications"),
        color=alt.Color("outcome:N", scale=alt.Scale(domain=["successful", "unsuccessful"])),
    )
    bars = base.mark_bar().encode(tooltip=["outcome:N", "reason:N", "applications:Q", "applications_in_outcome:Q"])
    return bars + base.mark_text(align="left", dx=3).encode(text="applications:Q")


def images_per_hour(frame: pd.DataFrame) -> alt.TopLevelMixin:
    return (
        _chart(frame, "images_per_hour")
        .mark_bar()
        .encode(
            x=alt.X("yearmonthdatehours(hour_start):T", title=None),
            y=alt.Y("images:Q", title="images", stack=True),
            color=alt.Color("status:N", scale=alt.Scale(domain=["processed", "rejected"])),
            tooltip=["hour_start:T", "status:N", "images:Q"],
        )
    )


def image_formats(frame: pd.DataFrame) -> alt.TopLevelMixin:
    base = _chart(frame, "image_formats").encode(
        y=alt.Y("format:N", sort=None, title=None), x=alt.X("images:Q", title="images")
    )
    bars = base.mark_bar().encode(tooltip=["format:N", "images:Q", "megabytes:Q"])
    return bars + base.mark_text(align="left", dx=3).encode(text="images:Q")


def image_sizes(frame: pd.DataFrame) -> alt.TopLevelMixin:
    return (
        _chart(frame, "image_sizes")
        .mark_bar()
        .encode(
            x=alt.X("size_class:N", title=None),
            y=alt.Y("images:Q", title="images", stack=True),
            color=alt.Color("format:N"),
            tooltip=["size_class:N", "format:N", "images:Q"],
        )
    )


def draw(name: str, frame: pd.DataFrame) -> alt.TopLevelMixin:
    """The chart `name` over its query's result (rendered as SVG, titled TITLES[name])."""
    return CHARTS[name](frame).properties(usermeta=EMBED)


CHARTS = {
    "sales_per_day": sales_per_day,
    "top_members": top_members,
    "top_items": top_items,
    "applications_by_outcome": applications_by_outcome,
    "images_per_hour": images_per_hour,
    "image_formats": image_formats,
    "image_sizes": image_sizes,
}
