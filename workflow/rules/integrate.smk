# Stage 4: test particles through each snapshot, one job per (medium, energy, injection, batch).
# A killed job resumes from <output>.ckpt.npz (written at output times) when rerun.


# The pusher's field layout (B and T interleaved per cell, periodic ghost layer), written once
# per snapshot and memory-mapped by every integrate job: they share it in the page cache.
rule field_cache:
    input:
        snapshot="results/{medium}/snapshot.h5",
        code=package_code("integrate", "snapshot"),
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


rule integrate:
    input:
        snapshot="results/{medium}/snapshot.h5",
        field_cache=rules.field_cache.output.field_cache,
        code=package_code("integrate", "_numba", "snapshot", "phase_rule"),
    output:
        batch="results/{medium}/particles/E{energy}_{injection}_b{batch}.h5",
    params:
        job=integrate_job,
        config={k: config[k] for k in ("particles", "integrate", "phases")},
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
