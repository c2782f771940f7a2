r"""Test-particle integration: ultra-relativistic charges through a static snapshot field.

The package has one module per part of the design (README, "package layout"):

``field``
    The field the pusher reads: the padded, interleaved layouts (full float32, compact 8 B per
    cell), the field-cache file, the look-ups and the one trilinear blend, ∇|B|.
``step``
    One particle step: drift–kick–drift Boris (as CRPropa's PropagationBP), the step rule and
    the scattering slot with its rate model.
``recorders``
    What is observed along the trajectories: phase accounting, statistics samples (paper
    Fig. 5), trajectories, and their histogram specs; one recorder per statistic.
``push``
    Lanes (vectorised passes over 8 particles per thread), prefetching and threads: the kernels
    that push many particles (and the plain one-particle-at-a-time reference kernel).
``settings`` and ``run``
    The settings from the config, injection, the segment loop with checkpoints and the
    particle batch file.

Kernels get their constants as named tuples (:class:`~.step.StepParams`,
:class:`~.step.ScatterRates`, :class:`~.recorders.RecordParams`) and their state as named
tuples of arrays (:class:`~.push.Particles`, :class:`~.recorders.Records`).

Cost (``benchmarks/bench_integrate.py``, r_L = 10 cells, one 2-core VM shared with other
jobs): see the README's "Scaling" section.
"""

from cosmicflow.integrate import field, push, recorders, run, settings, step
from cosmicflow.integrate.field import (
    GRID_VALUES,
    LAYOUTS,
    Field,
    build_field,
    compact_field,
    field_view,
    interpolate,
    padded_field,
    phase_grid,
    phase_volume_fraction,
    read_field_cache,
    write_field_cache,
)
from cosmicflow.integrate.field import grad_bmag as _grad_bmag  # noqa: F401 (tests)
from cosmicflow.integrate.recorders import HIST_EDGES
from cosmicflow.integrate.run import (
    INJECTIONS,
    _unit_perp,  # noqa: F401 (tests)
    batch_seed,
    inject,
    integrate_batch,
    integrate_particles,
)
from cosmicflow.integrate.settings import IntegrateSettings, ScatteringSettings, output_t_omega
from cosmicflow.integrate.step import C_PC_S, boris_rotate
from cosmicflow.phase_rule import phase_of as _phase_of  # noqa: F401 (the one phase rule)

__all__ = [
    "IntegrateSettings",
    "ScatteringSettings",
    "HIST_EDGES",
    "INJECTIONS",
    "C_PC_S",
    "GRID_VALUES",
    "LAYOUTS",
    "Field",
    "boris_rotate",
    "phase_grid",
    "phase_volume_fraction",
    "padded_field",
    "compact_field",
    "build_field",
    "field_view",
    "write_field_cache",
    "read_field_cache",
    "interpolate",
    "inject",
    "integrate_particles",
    "integrate_batch",
    "batch_seed",
    "output_t_omega",
    "field",
    "push",
    "recorders",
    "run",
    "settings",
    "step",
]
