# Stage 4: test particles through each snapshot, one job per (medium, energy, injection, batch).
# A killed job resumes from <output>.ckpt.npz (written at output times) when rerun.


rule integrate:
    input:
        snapshot="results/{medium}/snapshot.h5",
        code=package_code("integrate", "_numba", "snapshot"),
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
