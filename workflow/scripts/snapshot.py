"""Snakemake script of rule `snapshot`: build results/{medium}/snapshot.h5."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
from cosmicflow.io import one_line_errors  # noqa: E402

one_line_errors()  # bad input, full disk: one line naming the file

from cosmicflow.media import build_medium  # noqa: E402

build_medium(
    name=snakemake.wildcards.medium,  # noqa: F821
    medium=snakemake.params.medium,  # noqa: F821
    output=snakemake.output.snapshot,  # noqa: F821
)
