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

# The same, also when the asset's code version changed (its SQL, for the image BI views): the asset runs
# once its definitions change, not only after what it reads changed.
AFTER_UPSTREAM_OR_CODE_UPDATES = AFTER_UPSTREAM_UPDATES.replace(
    "any_deps_updated", dg.AutomationCondition.any_deps_updated() | dg.AutomationCondition.code_version_changed()
).with_label("after upstream or code updates")
