"""`python -m memberflow_assets.cli`: the `memberflow` command."""

import sys

from memberflow_assets.cli import main

sys.exit(main())
