"""``elastic worker`` as a real process, with an evolution_mutation that does what its
genome says: ``{"slow": s}`` works ``s`` seconds first (reporting progress, so a cancel
or a time limit stops it); ``{"poison": 1}`` kills its own worker process (SIGKILL), as
a task that crashes a kernel or runs out of memory would.

Run it as ``python tests/scripted_worker.py worker --type evolution --id ... [options]``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from elastic.cli import main
from elastic.executors import EXECUTORS, ExecutionContext
from elastic.executors.evolution import Mutation, MutationParams


class ScriptedMutation(Mutation):
    """A mutation that is slow or deadly when its genome says so."""

    def run(self, params: MutationParams, context: ExecutionContext) -> dict[str, Any]:
        """Die, dawdle, then mutate."""
        if "poison" in params.genome:
            os.kill(os.getpid(), signal.SIGKILL)
        ends_at = time.monotonic() + float(params.genome.get("slow", 0.0))
        while time.monotonic() < ends_at:
            context.report_progress(0.5)
            context.cancelled.wait(0.02)
        return super().run(params, context)


if __name__ == "__main__":
    EXECUTORS["evolution_mutation"] = ScriptedMutation()
    sys.exit(main())
