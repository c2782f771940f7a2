# Stage 1: every medium (synthetic or AthenaK) becomes a canonical snapshot in physical units.


rule snapshot:
    input:
        medium_input_files,
        code=package_code("media", "snapshot", "synthetic", "athenak", "units", "downsample"),
    output:
        snapshot="results/{medium}/snapshot.h5",
    params:
        medium=medium_config,
        phases=config["phases"],
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
