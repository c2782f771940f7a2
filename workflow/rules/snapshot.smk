# Stage 1: every medium (synthetic or AthenaK) becomes a canonical snapshot in physical units.
# Realisation 0 is results/{medium}/snapshot.h5; a medium with several files (`path` a list)
# or seeds (`seeds`) also gets results/{medium}/snapshot_r{realisation}.h5 for the others.


rule snapshot:
    input:
        medium_input_files,
        code=script_code("snapshot"),
    output:
        snapshot="results/{medium}/snapshot.h5",
    params:
        medium=medium_config,
    conda:
        "../envs/cosmicflow.yaml"
    resources:
        mem_mb=snapshot_mem_mb,
    benchmark:
        "results/benchmarks/snapshot/{medium}.tsv"
    log:
        "results/logs/snapshot/{medium}.log",
    script:
        "../scripts/snapshot.py"


use rule snapshot as snapshot_realisation with:
    output:
        snapshot="results/{medium}/snapshot_r{realisation}.h5",
    benchmark:
        "results/benchmarks/snapshot/{medium}_r{realisation}.tsv"
    log:
        "results/logs/snapshot/{medium}_r{realisation}.log",
