"""Snakemake script of rule `phases`: phase table, T-histograms and a slice of one medium."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
from cosmicflow.io import one_line_errors  # noqa: E402

one_line_errors()  # bad input, full disk: one line naming the file

from cosmicflow.phases import run_phases  # noqa: E402

run_phases(
    snapshot=snakemake.input.snapshot,  # noqa: F821
    table=snakemake.output.table,  # noqa: F821
    histograms=snakemake.output.histograms,  # noqa: F821
    slices=snakemake.output.slices,  # noqa: F821
    phases_config=snakemake.params.phases,  # noqa: F821
    medium=snakemake.wildcards.medium,  # noqa: F821
    num_workers=snakemake.threads,  # noqa: F821
)
