"""Snakemake script of rule `fig5_scattering_histograms`: batches merged per (medium, energy)."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
from cosmicflow.io import load_netcdf, one_line_errors  # noqa: E402

one_line_errors()  # bad input, full disk: one line naming the file

from cosmicflow.plotting import save_figure  # noqa: E402
from cosmicflow.plotting_transport import fig5_rows, fig5_scattering_histograms  # noqa: E402

paths = iter(snakemake.input.batches)  # noqa: F821  (ordered medium, energy, batch)
merged = {}
for medium in snakemake.params.media:  # noqa: F821
    for energy in snakemake.params.energies:  # noqa: F821
        batches = [load_netcdf(next(paths)) for _ in range(snakemake.params.batches)]  # noqa: F821
        merged.setdefault(medium, {})[float(energy)] = batches
fig = fig5_scattering_histograms(fig5_rows(merged))
save_figure(fig, snakemake.output.png, snakemake.output.pdf)  # noqa: F821
