"""Snakemake script of rule `summary`: results/transport_summary.csv, one row per transport result."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
from cosmicflow.io import one_line_errors  # noqa: E402

one_line_errors()  # bad input, full disk: one line naming the file

from cosmicflow.transport import write_summary  # noqa: E402

write_summary(list(snakemake.input.transport), snakemake.output.summary)  # noqa: F821
