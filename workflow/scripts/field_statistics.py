"""Snakemake script of rule `field_statistics`: results/{medium}/field_statistics.json."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")

from cosmicflow.regime import write_field_statistics  # noqa: E402

write_field_statistics(snakemake.input.snapshot, snakemake.output.statistics)  # noqa: F821
