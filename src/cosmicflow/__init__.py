"""cosmicflow: cosmic-ray transport through (multiphase) MHD snapshots.

Stages: canonical snapshot (AthenaK ingest or synthetic media) -> phases and gradients ->
test-particle integration -> diffusion coefficients and the phase-phase matrix -> figures.
"""

__version__ = "0.1.0"
