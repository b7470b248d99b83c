"""The notebook app's charts (Vega-Altair), one per chart query in sql/analyst/notebook/. No Dagster.

Drawn on the server as SVG (vl-convert: Vega's own SVG renderer, bundled, nothing loaded from the
network) and sent to the page as it is: the browser only parses it, with no Vega to load, compile and
run per chart and per analyst, and every mark and label is in the page, where the browser test reads
them. Each chart prints its values as text marks, so a figure can be read without hovering; hovering a
bar or point shows its details (an SVG <title>, from the chart's `hover` column).
"""

from __future__ import annotations

import html
import re

import altair as alt
import pandas as pd
import vl_convert

WIDTH = 420
HEIGHT = 220
LABELLED_DAYS = 31
VL_VERSION = "_".join(alt.SCHEMA_VERSION.split(".")[:2])  # vl-convert's name for altair's Vega-Lite: v6_4


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


def _labels(base: alt.Chart, text: str) -> alt.Chart:
    """Text marks printing each bar's value (no hover text of their own: the bar has it)."""
    return base.mark_text(align="left", dx=3, aria=False).encode(text=text)


def _hover(frame: pd.DataFrame, template: str) -> pd.DataFrame:
    """`frame` with a `hover` column: `template` formatted with each row (a few hundred rows at most)."""
    frame = frame.copy()
    frame["hover"] = [template.format(**row) for row in frame.to_dict("records")]
    return frame


def _money(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Decimal columns as floats (Vega needs numbers) and as exact text labels."""
    frame = frame.copy()
    for column in columns:
        frame[f"{column}_label"] = frame[column].map(lambda value: f"{value:,.2f}")
        frame[column] = frame[column].astype(float)
    return frame


def sales_per_day(frame: pd.DataFrame) -> alt.TopLevelMixin:
    frame = _hover(frame, "{date:%a %Y-%m-%d}: revenue {revenue:,.2f}, transactions {transactions}, units {units_sold}")
    frame = _money(frame, "revenue")
    daily = {"tickCount": {"interval": "day", "step": 1}} if len(frame) <= LABELLED_DAYS else {}
    base = _chart(frame, "sales_per_day").encode(
        x=alt.X("date:T", title=None, axis=alt.Axis(format="%b %d", **daily)),
        y=alt.Y("revenue:Q", title="revenue"),
    )
    line = base.mark_line(aria=False) + base.mark_point(filled=True, size=20).encode(description="hover:N")
    if len(frame) > LABELLED_DAYS:  # a label per day would cover the line
        return line
    return line + base.mark_text(dy=-10, aria=False).encode(text="revenue_label:N")


def top_members(frame: pd.DataFrame) -> alt.TopLevelMixin:
    frame = _money(
        _hover(frame, "{rank}. {member}: spent {total_spent:,.2f}, transactions {transactions}"), "total_spent"
    )
    frame["label"] = frame["rank"].astype(str) + ". " + frame["member"]  # two people may share a name
    base = _chart(frame, "top_members").encode(
        y=alt.Y("label:N", sort=None, title=None), x=alt.X("total_spent:Q", title="total spent")
    )
    return base.mark_bar().encode(description="hover:N") + _labels(base, "total_spent_label:N")


def top_items(frame: pd.DataFrame) -> alt.TopLevelMixin:
    frame = _hover(frame, "{rank}. {item_name} ({manufacturer_name}): transactions {times_bought}, units {units_sold}")
    frame["label"] = frame["rank"].astype(str) + ". " + frame["item_name"]
    base = _chart(frame, "top_items").encode(
        y=alt.Y("label:N", sort=None, title=None), x=alt.X("times_bought:Q", title="transactions")
    )
    return base.mark_bar().encode(description="hover:N") + _labels(base, "times_bought:Q")


def applications_by_outcome(frame: pd.DataFrame) -> alt.TopLevelMixin:
    frame = _hover(frame, "{reason}: {applications} of {applications_in_outcome} {outcome} applications")
    base = _chart(frame, "applications_by_outcome").encode(
        y=alt.Y("reason:N", sort=None, title=None),  # the query's order: outcome, then most frequent
        x=alt.X("applications:Q", title="applications"),
        color=alt.Color("outcome:N", scale=alt.Scale(domain=["successful", "unsuccessful"])),
    )
    return base.mark_bar().encode(description="hover:N") + _labels(base, "applications:Q")


def images_per_hour(frame: pd.DataFrame) -> alt.TopLevelMixin:
    frame = _hover(frame, "{hour_start:%Y-%m-%d %H:00} UTC: {images} {status}")
    return (
        _chart(frame, "images_per_hour")
        .mark_bar()
        .encode(
            x=alt.X("yearmonthdatehours(hour_start):T", title=None),
            y=alt.Y("images:Q", title="images", stack=True),
            color=alt.Color("status:N", scale=alt.Scale(domain=["processed", "rejected"])),
            description="hover:N",
        )
    )


def image_formats(frame: pd.DataFrame) -> alt.TopLevelMixin:
    frame = _hover(frame, "{format}: images {images}, {megabytes} MB")
    base = _chart(frame, "image_formats").encode(
        y=alt.Y("format:N", sort=None, title=None), x=alt.X("images:Q", title="images")
    )
    return base.mark_bar().encode(description="hover:N") + _labels(base, "images:Q")


def image_sizes(frame: pd.DataFrame) -> alt.TopLevelMixin:
    frame = _hover(frame, "{size_class}, {format}: images {images}")
    return (
        _chart(frame, "image_sizes")
        .mark_bar()
        .encode(
            x=alt.X("size_class:N", title=None),
            y=alt.Y("images:Q", title="images", stack=True),
            color=alt.Color("format:N"),
            description="hover:N",
        )
    )


# A mark Vega drew with an accessible description: <path aria-label="..." .../>, the label first.
_DESCRIBED_MARK = re.compile(r'<(path|rect|circle|line)\s+aria-label="([^"]*)"([^>]*?)\s*/>')


def _hover_titles(svg: str) -> str:
    """Each described mark's aria-label as an SVG <title>: the browser shows it on hover."""

    def titled(match: re.Match) -> str:
        element, label, attributes = match.groups()
        text = html.escape(html.unescape(label), quote=False)
        return f"<{element}{attributes}><title>{text}</title></{element}>"

    return _DESCRIBED_MARK.sub(titled, svg)


def svg(name: str, frame: pd.DataFrame) -> str:
    """The chart `name` over its query's result, drawn: an <svg> element (the data is only in its marks)."""
    drawn = vl_convert.vegalite_to_svg(CHARTS[name](frame).to_dict(), vl_version=VL_VERSION, allowed_base_urls=[])
    return _hover_titles(drawn)


CHARTS = {
    "sales_per_day": sales_per_day,
    "top_members": top_members,
    "top_items": top_items,
    "applications_by_outcome": applications_by_outcome,
    "images_per_hour": images_per_hour,
    "image_formats": image_formats,
    "image_sizes": image_sizes,
}
