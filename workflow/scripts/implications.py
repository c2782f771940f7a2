"""Snakemake script of rule `implications`: results/implications.csv from the transport summary."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821

from cosmicflow.implications import write_implications  # noqa: E402

write_implications(snakemake.input.summary, snakemake.output.implications,  # noqa: F821
                   snakemake.params.implications)  # noqa: F821
