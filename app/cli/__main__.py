"""`python -m app.cli`: the same entry point as the `mcp-tee` script."""

import sys

from app.cli import main

sys.exit(main())
