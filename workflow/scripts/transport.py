"""Snakemake script of rule `transport`: merge batches, write results/{medium}/transport/E{energy}_{injection}.nc."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
from cosmicflow.io import one_line_errors  # noqa: E402

one_line_errors()  # bad input, full disk: one line naming the file

from cosmicflow.transport import write_transport  # noqa: E402

write_transport(
    batches=list(snakemake.input.batches),  # noqa: F821
    output=snakemake.output.transport,  # noqa: F821
    params=snakemake.params.transport,  # noqa: F821
    field_statistics=snakemake.input.field_statistics,  # noqa: F821
    config={
        "medium": snakemake.wildcards.medium,  # noqa: F821
        "energy_PeV": snakemake.params.energy_PeV,  # noqa: F821
        "injection": snakemake.wildcards.injection,  # noqa: F821
    },
)
