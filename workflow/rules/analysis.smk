# Commissioning analyses, one job per configuration group (files with the same DETECTOR,
# SUBARRAY, READPATT, NOUTPUTS, NGROUPS, NFRAMES, GROUPGAP). Inputs and outputs are named
# after the arguments of the detcal function in params.function (scripts/group_analysis.py).


rule jump_statistics:
    input:
        ramp_paths=group_paths("jump"),
        raw_paths=group_paths("raw"),  # dead outputs are found on the raw files
        gain_path=group_reference("gain"),  # the references the jump step used: event
        readnoise_path=group_reference("readnoise"),  # significances, noise expectation, efficiency
    output:
        table_path=group_report("results/analysis/{group}/jumps.tsv", "jumps_table", "Jumps", "jump statistics table"),
        json_path="results/analysis/{group}/jumps.json",
        events_tsv="results/analysis/{group}/jumps_events.tsv",
        map_fits="results/analysis/{group}/jumps_map.fits",
        examples_tsv="results/analysis/{group}/jumps_examples.tsv",
        map_png=group_report("results/plots/{group}/jumps_map.png", "jumps_map", "Jumps", "jumps per pixel"),
        ramp_png=group_report("results/plots/{group}/jumps_ramp.png", "jumps_ramp", "Jumps", "flagged ramp"),
        grid_png=group_report("results/plots/{group}/jumps_grid.png", "jumps_grid", "Jumps", "example ramps"),
        significance_png=group_report(
            "results/plots/{group}/jumps_significance.png", "jumps_significance", "Jumps", "events by significance"
        ),
    log:
        "logs/analysis/jumps/{group}.log",
    benchmark:
        "results/benchmarks/analysis/jumps_{group}.tsv"
    conda:
        "../../envs/detcal.yaml"
    params:
        function="detcal.analysis.jumps.jump_statistics_file",
        kwargs={
            "pixel_pitch_um": config["analysis"]["pixel_pitch_um"] or None,
            "jump_parameters": step_parameters("jump"),
            "memory_mb": config["analysis"]["memory_mb"],
        },
    script:
        "../scripts/group_analysis.py"


rule dark_current_analysis:
    input:
        rateints_paths=group_paths("rateints"),
        ramp_paths=group_paths("jump"),  # MIRI: the anomaly bias is measured on these ramps
        raw_paths=group_paths("raw"),  # dead outputs are found on the raw files
        gain_path=group_reference("gain"),
    output:
        table_path=group_report(
            "results/analysis/{group}/darkcurrent.tsv", "darkcurrent_table", "Dark current", "dark current table"
        ),
        json_path="results/analysis/{group}/darkcurrent.json",
        histogram_tsv="results/analysis/{group}/darkcurrent_histograms.tsv",
        image_fits="results/analysis/{group}/darkcurrent_slopes.fits",
        histogram_png=group_report(
            "results/plots/{group}/darkcurrent_histograms.png",
            "darkcurrent_histograms",
            "Dark current",
            "histograms per amplifier",
        ),
        image_png=group_report(
            "results/plots/{group}/darkcurrent_slopes.png", "darkcurrent_slopes", "Dark current", "slope image"
        ),
    log:
        "logs/analysis/darkcurrent/{group}.log",
    benchmark:
        "results/benchmarks/analysis/darkcurrent_{group}.tsv"
    conda:
        "../../envs/detcal.yaml"
    params:
        function="detcal.analysis.darkcurrent.dark_current_file",
        kwargs={
            "expected": config["analysis"]["dark_expected"],
            "n_sigma": config["analysis"]["dark_n_sigma"],
            "memory_mb": config["analysis"]["memory_mb"],
        },
    script:
        "../scripts/group_analysis.py"


rule stability:
    input:
        unpack(group_baseline),
        rateints_paths=group_paths("rateints"),
        ramp_paths=group_paths("jump"),
        bias_paths=group_paths("raw"),
        gain_path=group_reference("gain"),
    output:
        table_path=group_report(
            "results/analysis/{group}/stability.tsv", "stability_table", "Stability", "stability table"
        ),
        trends_tsv="results/analysis/{group}/stability_trends.tsv",
        json_path="results/analysis/{group}/stability.json",
        baseline_tsv="results/analysis/{group}/stability_baseline.tsv",
        baseline_pixels_tsv="results/analysis/{group}/stability_baseline_pixels.tsv",
        trend_png=group_report("results/plots/{group}/stability_trends.png", "stability_trends", "Stability", "trends"),
        baseline_png=group_report(
            "results/plots/{group}/stability_baseline.png", "stability_baseline", "Stability", "baseline comparison"
        ),
    log:
        "logs/analysis/stability/{group}.log",
    benchmark:
        "results/benchmarks/analysis/stability_{group}.tsv"
    conda:
        "../../envs/detcal.yaml"
    params:
        function="detcal.analysis.stability.stability_file",
        kwargs={
            "hot_threshold": config["analysis"]["hot_threshold"],
            "alpha": config["analysis"]["stability_alpha"],
            "memory_mb": config["analysis"]["memory_mb"],
        },
    script:
        "../scripts/group_analysis.py"


rule effective_noise:
    input:
        ramp_paths=group_paths("noise"),
        gain_path=group_reference("gain"),
        readnoise_path=group_reference("readnoise"),
    output:
        table_path=group_report(
            "results/analysis/{group}/effective_noise.tsv",
            "effective_noise_table",
            "Effective noise",
            "effective noise table",
        ),
        json_path="results/analysis/{group}/effective_noise.json",
        figure_path=group_report(
            "results/plots/{group}/effective_noise.png",
            "effective_noise",
            "Effective noise",
            "effective noise vs time",
        ),
    log:
        "logs/analysis/effective_noise/{group}.log",
    benchmark:
        "results/benchmarks/analysis/effective_noise_{group}.tsv"
    conda:
        "../../envs/detcal.yaml"
    params:
        function="detcal.analysis.effnoise.effective_noise_files",
        kwargs={
            "min_ramps": config["analysis"]["min_ramps"],
            "read_noise_source": config["analysis"]["read_noise_source"],
        },
    script:
        "../scripts/group_analysis.py"


rule noise_decomposition:
    input:
        ramp_paths=group_paths("noise"),
        gain_path=group_reference("gain"),
    output:
        table_path=group_report("results/analysis/{group}/cds_noise.tsv", "cds_noise_table", "Noise", "CDS noise table"),
        spectrum_table_path="results/analysis/{group}/power_spectrum.tsv",
        json_path="results/analysis/{group}/noise_decomposition.json",
        cds_figure_path=group_report(
            "results/plots/{group}/cds_noise.png", "cds_noise", "Noise", "CDS noise components"
        ),
        psd_figure_path=group_report(
            "results/plots/{group}/power_spectrum.png", "power_spectrum", "Noise", "power spectrum"
        ),
    log:
        "logs/analysis/noise_decomposition/{group}.log",
    benchmark:
        "results/benchmarks/analysis/noise_decomposition_{group}.tsv"
    conda:
        "../../envs/detcal.yaml"
    params:
        function="detcal.analysis.noise.noise_decomposition_files",
        kwargs={"window": config["analysis"]["noise_window"]},
    script:
        "../scripts/group_analysis.py"


rule group_summary:
    input:
        unpack(group_analysis_jsons),
    output:
        tsv="results/analysis/{group}/summary.tsv",
        json="results/analysis/{group}/summary.json",
    log:
        "logs/analysis/summary/{group}.log",
    conda:
        "../../envs/detcal.yaml"
    params:
        products=group_products,
    script:
        "../scripts/group_summary.py"


rule summary:
    input:
        expand("results/analysis/{group}/summary.tsv", group=GROUPS),
        ccd_summary_rows(),
    output:
        report("results/analysis/summary.tsv", caption="../report/summary.rst", category="Summary"),
    log:
        "logs/analysis/summary.log",
    conda:
        "../../envs/detcal.yaml"
    script:
        "../scripts/summary.py"
