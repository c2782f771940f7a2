"""Snakemake script of rule `integrate`: particle batch files (docs/data-contracts.md), one per
entry of params.runs (several batches of one run share the start-up when run locally).

Each batch file gets the global attributes `realisation` (0-based) and `realisation_source`
(snapshot file or "seed=<n>") of the snapshot it ran through. The console gets a line when a
batch starts and ends and, for long batches, the progress bar's state every minute."""

import logging
import sys
import threading
import time

console = sys.stderr
sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
from cosmicflow.io import one_line_errors  # noqa: E402

one_line_errors()  # bad input, full disk: one line naming the file
import h5py  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402

from cosmicflow.integrate import IntegrateSettings, integrate_batch  # noqa: E402

# use the job's threads (never more than Numba's pool)
numba.set_num_threads(max(1, min(snakemake.threads, numba.config.NUMBA_NUM_THREADS)))  # noqa: F821
HEARTBEAT_S = 60.0


def heartbeat(label, done, log_path, t0):
    """Every HEARTBEAT_S seconds until `done` is set: the latest progress-bar state to the console."""
    while not done.wait(HEARTBEAT_S):
        with open(log_path, errors="replace") as f:
            bar = f.read().replace("\n", "\r").rstrip("\r").rpartition("\r")[2].strip()
        print(f"integrate {label}: {(time.time() - t0) / 60:.1f} min; {bar[-100:]}", file=console, flush=True)


for run in snakemake.params.runs:  # noqa: F821
    job = dict(run["job"])
    label = f"{job['medium']} E={job['energy_pev']:g} PeV {job['injection']} b{job['batch']}"
    print(f"integrate {label}: started (realisation {run['realisation']})", file=console, flush=True)
    t0, done = time.time(), threading.Event()
    threading.Thread(target=heartbeat, args=(label, done, snakemake.log[0], t0), daemon=True).start()  # noqa: F821
    try:
        integrate_batch(
            run["snapshot"],
            run["output"],
            settings=IntegrateSettings.from_config(snakemake.params.config, job["injection"]),  # noqa: F821
            config=snakemake.params.config,  # noqa: F821
            progress=True,
            field_cache=run["field_cache"],
            **job,
        )
    finally:
        done.set()
    with h5py.File(run["output"], "r+") as f:
        f.attrs["realisation"] = np.int64(run["realisation"])
        f.attrs["realisation_source"] = str(run["realisation_source"])
    print(f"integrate {label}: done in {(time.time() - t0) / 60:.1f} min", file=console, flush=True)
