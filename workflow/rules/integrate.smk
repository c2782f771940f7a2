# Stage 4: test particles through each snapshot. One job per (medium, energy, injection) runs
# its batches in one process locally; with a cluster executor one job per batch (SLURM arrays),
# see integrate.jobs. Batch b uses realisation b % n of its medium. A killed batch resumes from
# <output>.ckpt.npz (written at output times, the first after 60 s of integration) when rerun.


# The pusher's field layout (B and T interleaved per cell, periodic ghost layer), written once
# per snapshot and memory-mapped by every integrate job: they share it in the page cache.
rule field_cache:
    input:
        snapshot="results/{medium}/snapshot.h5",
        code=script_code("field_cache"),
    output:
        field_cache="results/{medium}/field_cache.h5",
    params:
        layout=config["integrate"].get("field_layout", "full"),
        thresholds_K=config["phases"]["thresholds_K"],
    resources:
        mem_mb=1024,  # slab-wise copy: ~64 MB output slabs plus their sources
    benchmark:
        "results/benchmarks/field_cache/{medium}.tsv"
    conda:
        "../envs/cosmicflow.yaml"
    log:
        "results/logs/field_cache/{medium}.log",
    script:
        "../scripts/field_cache.py"


use rule field_cache as field_cache_realisation with:
    input:
        snapshot="results/{medium}/snapshot_r{realisation}.h5",
        code=script_code("field_cache"),
    output:
        field_cache="results/{medium}/field_cache_r{realisation}.h5",
    benchmark:
        "results/benchmarks/field_cache/{medium}_r{realisation}.tsv"
    log:
        "results/logs/field_cache/{medium}_r{realisation}.log",


if integrate_per_run():

    rule integrate:
        input:
            unpack(integrate_inputs),
            code=script_code("integrate"),
        output:
            batches=expand(particle_batch_path("{{medium}}", "{{energy}}", "{{injection}}", "{b}"),
                           b=range(config["integrate"]["batches"])),
        params:
            runs=integrate_runs,
            config=integrate_config,
        resources:
            mem_mb=integrate_mem_mb,
            runtime=integrate_runtime_min,
        conda:
            "../envs/cosmicflow.yaml"
        benchmark:
            "results/benchmarks/integrate/{medium}_E{energy}_{injection}.tsv"
        log:
            "results/logs/integrate/{medium}_E{energy}_{injection}.log",
        threads: 2
        script:
            "../scripts/integrate.py"

else:

    rule integrate:
        input:
            unpack(integrate_inputs),
            code=script_code("integrate"),
        output:
            batches=particle_batch_path("{medium}", "{energy}", "{injection}", "{batch}"),
        params:
            runs=integrate_runs,
            config=integrate_config,
        resources:
            mem_mb=integrate_mem_mb,
            runtime=integrate_runtime_min,
        conda:
            "../envs/cosmicflow.yaml"
        benchmark:
            "results/benchmarks/integrate/{medium}_E{energy}_{injection}_b{batch}.tsv"
        log:
            "results/logs/integrate/{medium}_E{energy}_{injection}_b{batch}.log",
        threads: 2
        script:
            "../scripts/integrate.py"
