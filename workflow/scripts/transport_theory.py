"""Snakemake script of rule `transport_theory`: QLT, Bohm and energy slopes beside the measured D's."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821

from cosmicflow.twophase import write_theory_table  # noqa: E402

write_theory_table(snakemake.input.isotropic, snakemake.input.mono,  # noqa: F821
                   snakemake.output.theory)  # noqa: F821
