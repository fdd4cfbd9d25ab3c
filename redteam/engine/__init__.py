"""The audit's stages as small functions over a run context, and the orchestrator that chains them:
models -> inputs -> methods -> probes (one pass over the images) -> scoring -> verdict -> examples.
"""

from redteam.engine.orchestrator import AuditRun, run_audit

__all__ = ["AuditRun", "run_audit"]
