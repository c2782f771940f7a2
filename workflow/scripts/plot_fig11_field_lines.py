"""Snakemake script of rule fig11_field_lines: field-line results and isotropic transport results."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
from cosmicflow.io import load_netcdf, one_line_errors  # noqa: E402

one_line_errors()  # bad input, full disk: one line naming the file

from cosmicflow.plotting import save_figure  # noqa: E402
from cosmicflow.plotting_mechanisms import fig11_field_lines  # noqa: E402
from cosmicflow.plotting_transport import load_results  # noqa: E402

lines = {m: load_netcdf(p)
         for m, p in zip(snakemake.params.media, snakemake.input.field_lines)}  # noqa: F821
media = load_results(snakemake.input.results)  # noqa: F821
save_figure(fig11_field_lines(lines, media), snakemake.output.png, snakemake.output.pdf)  # noqa: F821
