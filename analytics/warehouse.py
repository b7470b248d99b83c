"""The analysts' notebook app: charts over the warehouse's `bi` views and a SQL cell (marimo).

Served by `memberflow analytics` (and by `./dev.sh start` beside Dagster); edit it with
`.venv/bin/marimo edit analytics/warehouse.py`. It opens the published warehouse read-only and
follows newer versions on its own; the queries are sql/analyst/notebook/*.sql, the access rules
memberflow_assets/warehouse/analyst.py, the charts memberflow_assets/warehouse/charts.py.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="full", app_title="memberflow analytics")


@app.cell
def _():
    import os

    import marimo as mo

    from memberflow_assets.warehouse import charts
    from memberflow_assets.warehouse.analyst import AnalystWarehouse, sample_queries

    warehouse = AnalystWarehouse.from_settings()
    check_every = os.environ.get("MEMBERFLOW_ANALYTICS_CHECK_EVERY", "30s")
    return charts, check_every, mo, sample_queries, warehouse


@app.cell
def _(check_every, mo, warehouse):
    # Looks for a newer published version every `check_every`; the charts follow when there is one.
    ticker = mo.ui.refresh(default_interval=check_every, label="check for new data")
    get_version, set_version = mo.state(warehouse.current())
    mo.hstack([mo.md("# memberflow analytics"), ticker], justify="space-between", align="center")
    return get_version, set_version, ticker


@app.cell
def _(get_version, set_version, ticker, warehouse):
    # Reruns on every tick, but changes the state (and so reruns the charts) only for a new version.
    ticker.value
    if warehouse.current() != get_version():
        set_version(warehouse.current())
    return


@app.cell
def _(get_version, mo, warehouse):
    version = get_version()
    if version is None:
        header = mo.callout(
            mo.md("No warehouse has been published yet: it appears here after the first warehouse refresh."),
            kind="warn",
        )
    else:
        header = mo.md(f"Warehouse version published **{warehouse.published_at()}** (read-only).")
    header
    return (version,)


@app.cell
def _(charts, mo, version, warehouse):
    def chart(name):
        if version is None:
            return mo.md("")
        try:
            return charts.draw(name, warehouse.chart_data(name))
        except Exception as error:  # one failing chart never takes the others down
            return mo.callout(mo.md(f"**{name}** could not be drawn: `{error}`"), kind="danger")

    mo.vstack(
        [
            mo.md("## Sales"),
            mo.hstack([chart("sales_per_day"), chart("top_members")], wrap=True),
            mo.hstack([chart("top_items"), chart("applications_by_outcome")], wrap=True),
            mo.md("## Images (the last 7 days)"),
            mo.hstack([chart("images_per_hour"), chart("image_formats"), chart("image_sizes")], wrap=True),
        ]
    )
    return


@app.cell
def _(mo, sample_queries):
    samples = sample_queries()
    start_with = mo.ui.dropdown(options=["(your own)", *samples], value="(your own)", label="start from a sample query")
    return samples, start_with


@app.cell
def _(mo, samples, start_with):
    first_query = samples.get(start_with.value, "SELECT * FROM bi.sales_per_day ORDER BY date DESC LIMIT 20")
    editor = mo.ui.code_editor(value=first_query, language="sql", min_height=120, label="")
    query = editor.form(submit_button_label="Run query", bordered=False)
    mo.vstack([mo.md("## SQL on the warehouse (read-only; one SELECT per run)"), start_with, query])
    return (query,)


@app.cell
def _(mo, query, version, warehouse):
    version  # a new version reruns the query
    if query.value is None:
        answer = mo.md("Write a query and press *Run query*.")
    else:
        result = warehouse.run(query.value)
        if result.error is not None:
            answer = mo.callout(mo.md(f"```\n{result.error}\n```"), kind="danger")
        else:
            note = f"{len(result.frame)} rows in {result.seconds:.2f} s"
            if result.truncated:
                note += f" (the first {warehouse.max_rows} only)"
            answer = mo.vstack([mo.md(note), mo.ui.table(result.frame, selection=None, page_size=20)])
    answer
    return


if __name__ == "__main__":
    app.run()
