"""``python -m enginesim ARGS``: the process the cluster's runner starts for engine pods."""

import os

from caldera.logging import configure_logging
from enginesim.cli import sim_command

configure_logging(os.environ.get("CALDERA_LOG_LEVEL", "INFO"), os.environ.get("CALDERA_LOG_FORMAT", "text"))
sim_command(prog_name="enginesim")
