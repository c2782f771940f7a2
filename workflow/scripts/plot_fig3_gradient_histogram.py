"""Snakemake script of rule `fig3_gradient_histogram`: one panel column/row per medium, PNG + PDF."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
from cosmicflow.io import load_netcdf, one_line_errors  # noqa: E402

one_line_errors()  # bad input, full disk: one line naming the file

from cosmicflow.plotting import fig3_gradient_histogram, save_figure  # noqa: E402

data = {
    medium: load_netcdf(path)
    for medium, path in zip(snakemake.params.media, snakemake.input.gradients)  # noqa: F821
}
fig = fig3_gradient_histogram(
    data,
)
save_figure(fig, snakemake.output.png, snakemake.output.pdf)  # noqa: F821
