"""Snakemake script of rule `fig6_dmumu_vs_mu0`: one mono-mu0 transport result per medium."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
from cosmicflow.io import one_line_errors  # noqa: E402

one_line_errors()  # bad input, full disk: one line naming the file

import xarray as xr  # noqa: E402

from cosmicflow.plotting import save_figure  # noqa: E402
from cosmicflow.plotting_transport import fig6_dmumu_vs_mu0  # noqa: E402

mono = {m: xr.load_dataset(p, engine="h5netcdf")
        for m, p in zip(snakemake.params.media, snakemake.input.results)}  # noqa: F821
save_figure(fig6_dmumu_vs_mu0(mono), snakemake.output.png, snakemake.output.pdf)  # noqa: F821
