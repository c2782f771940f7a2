"""Snakemake script of rule `fig4_trajectory_3d`: density/temperature, field lines, one trajectory."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
from cosmicflow.io import load_netcdf, one_line_errors  # noqa: E402

one_line_errors()  # bad input, full disk: one line naming the file

from cosmicflow.plotting import save_figure  # noqa: E402
from cosmicflow.plotting_transport import fig4_trajectory_3d  # noqa: E402
from cosmicflow.snapshot import read_snapshot  # noqa: E402

snap = read_snapshot(snakemake.input.snapshot, validate=False)  # noqa: F821
batch = load_netcdf(snakemake.input.batch)  # noqa: F821
save_figure(fig4_trajectory_3d(snap, batch), snakemake.output.png, snakemake.output.pdf)  # noqa: F821
