"""Snakemake script of rule `fig6_dmumu_vs_mu0`: one mono-mu0 transport result per medium."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
from cosmicflow.io import load_netcdf, one_line_errors  # noqa: E402

one_line_errors()  # bad input, full disk: one line naming the file

from cosmicflow.plotting import save_figure  # noqa: E402
from cosmicflow.plotting_transport import fig6_dmumu_vs_mu0  # noqa: E402

mono = {m: load_netcdf(p)
        for m, p in zip(snakemake.params.media, snakemake.input.results)}  # noqa: F821
save_figure(fig6_dmumu_vs_mu0(mono), snakemake.output.png, snakemake.output.pdf)  # noqa: F821
