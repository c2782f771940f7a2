"""Snakemake script of rule `field_cache`: the integrator's padded, interleaved field file."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")

from cosmicflow.integrate import write_field_cache  # noqa: E402

write_field_cache(snakemake.input.snapshot, snakemake.output.field_cache,  # noqa: F821
                  layout=snakemake.params.layout,  # noqa: F821
                  thresholds_K=snakemake.params.thresholds_K)  # noqa: F821
