"""Prefect flows, one per DVC stage. Thin: read params, fan out, call library code.

Defaults for running offline are set here, before Prefect is imported: no analytics,
and a project-local Prefect home (so runs do not touch ``~/.prefect``). Values already
in the environment win, so ``PREFECT_API_URL`` pointing at ``prefect server start``
sends the runs to that server's UI.
"""

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", str(_ROOT / ".prefect"))
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# A loaded 2-core machine can take over a minute to start the temporary server.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
