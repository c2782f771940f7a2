"""Snakemake script of rule `field_lines`: results/{medium}/field_lines.nc from the snapshot."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821

from cosmicflow.fieldlines import write_field_lines  # noqa: E402

write_field_lines(
    snakemake.input.snapshot,  # noqa: F821
    snakemake.output.field_lines,  # noqa: F821
    params=snakemake.params.field_lines,  # noqa: F821
    phases=snakemake.params.phases,  # noqa: F821
    config={"medium": snakemake.wildcards.medium, **snakemake.params.field_lines},  # noqa: F821
)
