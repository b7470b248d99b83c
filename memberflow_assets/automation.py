"""Declarative automation shared by the domains (evaluated by the automation condition sensors)."""

import dagster as dg

# Dagster's eager condition — after any upstream update, once nothing upstream or itself is in
# progress — without "no upstream is missing": `sales_database` is written outside Dagster and never
# materialised, and one failed application file (a partition of the membership assets) must not stop
# the warehouse. A new deployment does not materialise on its first evaluation, only after an update.
AFTER_UPSTREAM_UPDATES = (
    dg.AutomationCondition.eager()
    .without(~dg.AutomationCondition.any_deps_missing())
    .with_label("after upstream updates")
)
