"""memberflow: the Dagster code location (`definitions`) and its domains' plain-Python code."""

from memberflow_assets.arrow_memory import use_retaining_pool

use_retaining_pool()
