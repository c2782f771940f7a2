# Regime diagnostics (issue 12): per-medium field statistics (median |B|, correlation length of
# dB by FFT) cached once per medium and read by every transport job of that medium.


rule field_statistics:
    input:
        snapshot="results/{medium}/snapshot.h5",
        code=script_code("field_statistics"),
    output:
        statistics="results/{medium}/field_statistics.json",
    resources:
        mem_mb=4096,  # three FFTs of at most 256^3 float64 plus the |B| median
    conda:
        "../envs/cosmicflow.yaml"
    log:
        "results/logs/field_statistics/{medium}.log",
    script:
        "../scripts/field_statistics.py"
