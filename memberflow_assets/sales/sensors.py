import dagster as dg

from memberflow_assets.resources import SalesDatabase
from memberflow_assets.sales import access
from memberflow_assets.sales.assets import sales_database, sales_demo_data
from memberflow_assets.sales.observation import sales_data_version
from memberflow_assets.settings import Settings

# Each observation of a new version may start a warehouse refresh (a new copy of its file): at most one
# every 5 minutes for what is written outside Dagster.
OBSERVATION_INTERVAL_SECONDS = 300


def build_sales_demo_sensor(settings: Settings) -> dg.AutomationConditionSensorDefinition:
    """The demo's own automation condition sensor, so that only the demo materialises sales_demo_data
    (after members, by the asset's automation condition); everything else is the default sensor's.
    Running when `settings.sales_demo` (MEMBERFLOW_SALES_DEMO=1, set by `memberflow start`)."""
    return dg.AutomationConditionSensorDefinition(
        "sales_demo_sensor",
        target=dg.AssetSelection.assets(sales_demo_data),
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING if settings.sales_demo else dg.DefaultSensorStatus.STOPPED,
        description="Demo only (running when MEMBERFLOW_SALES_DEMO=1): demo transactions for new members after "
        "each members load.",
    )


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 30 s: a team user who set their own password (bypassing `memberflow access` and its "
    "rules) gets a random one and loses their sessions (docs/access.md, Passwords). Launches no runs.",
)
def team_password_audit_sensor(context: dg.SensorEvaluationContext, sales_db: SalesDatabase) -> dg.SkipReason:
    with sales_db.connect() as connection:
        audit = access.audit_passwords(connection)
    if audit is None:
        return dg.SkipReason(
            "the platform's role cannot read password verifiers on this server (not a superuser); there "
            "rds.restrict_password_commands must keep team users from setting passwords"
        )
    for user in audit.replaced:
        context.log.warning(
            f"{user} had set their own password: replaced by a random one, sessions ended; "
            f"give a new one with `memberflow access set-password {user}`"
        )
    return dg.SkipReason(
        f"{audit.checked} team user(s) checked; password replaced: {', '.join(audit.replaced) or 'none'}; "
        f"newly recorded: {', '.join(audit.adopted) or 'none'}"
    )


@dg.sensor(
    minimum_interval_seconds=OBSERVATION_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 5 minutes: observes sales_database (one query) and records its data version when it "
    "changed, so the warehouse's automation condition refreshes it after writes from outside Dagster. "
    "Launches no runs.",
)
def sales_database_observation_sensor(context: dg.SensorEvaluationContext, sales_db: SalesDatabase):
    with sales_db.connect() as connection:
        version = sales_data_version(connection)
    if version == context.cursor:
        return dg.SkipReason(f"unchanged: {version}")
    # the tag `observe` gives a DataVersion; a sensor's observation carries it the same way
    observation = dg.AssetObservation(sales_database.key, tags={"dagster/data_version": version})
    return dg.SensorResult(asset_events=[observation], cursor=version)
