"""The audit's stages as small functions over a run context, and the orchestrator that chains them:
inputs -> methods -> models -> embedding -> probes -> scoring -> verdict -> examples."""
