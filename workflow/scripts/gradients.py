"""Snakemake script of rule `gradients`: gradient and epsilon histograms of one medium."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
from cosmicflow.io import one_line_errors  # noqa: E402

one_line_errors()  # bad input, full disk: one line naming the file

from cosmicflow.gradients import run_gradients  # noqa: E402

run_gradients(
    snapshot=snakemake.input.snapshot,  # noqa: F821
    output=snakemake.output.gradients,  # noqa: F821
    particles_config=snakemake.params.particles,  # noqa: F821
    phases_config=snakemake.params.phases,  # noqa: F821
    medium=snakemake.wildcards.medium,  # noqa: F821
    num_workers=snakemake.threads,  # noqa: F821
)
