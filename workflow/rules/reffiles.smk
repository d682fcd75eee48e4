# Reference files from the darks, one set per configuration group, in the JWST layouts.
# Inputs and outputs are named after the arguments of the detcal builder (params.function).


rule dark_reffile:
    input:
        ramp_paths=group_paths("jump"),
    output:
        out_path="results/reffiles/{group}/dark.fits",
        counts_path="results/reffiles/{group}/dark_counts.fits",
        table_path=group_report(
            "results/analysis/{group}/dark_reffile.tsv",
            "dark_reffile_table",
            "Reference files",
            "DARK contributions table",
        ),
        figure_path=group_report(
            "results/plots/{group}/dark_reffile.png", "dark_reffile", "Reference files", "DARK contributions"
        ),
    log:
        "logs/reffiles/dark/{group}.log",
    benchmark:
        "results/benchmarks/reffiles/dark_{group}.tsv"
    conda:
        "../../envs/detcal.yaml"
    params:
        function="detcal.reffiles.dark.make_dark",
        kwargs=reffile_kwargs("dark"),
    script:
        "../scripts/group_analysis.py"


rule superbias_reffile:
    input:
        ramp_paths=group_saturation_products,
        gain_path=group_reference("gain"),
    output:
        out_path="results/reffiles/{group}/superbias.fits",
        table_path=group_report(
            "results/analysis/{group}/superbias_reffile.tsv",
            "superbias_reffile_table",
            "Reference files",
            "SUPERBIAS table",
        ),
        figure_path=group_report(
            "results/plots/{group}/superbias_reffile.png", "superbias_reffile", "Reference files", "SUPERBIAS"
        ),
    log:
        "logs/reffiles/superbias/{group}.log",
    conda:
        "../../envs/detcal.yaml"
    params:
        function="detcal.reffiles.superbias.make_superbias",
        kwargs=reffile_kwargs("superbias"),
    script:
        "../scripts/group_analysis.py"


rule readnoise_reffile:
    input:
        ramp_paths=group_paths("jump"),
        gain_path=group_reference("gain"),
    output:
        out_path="results/reffiles/{group}/readnoise.fits",
        table_path=group_report(
            "results/analysis/{group}/readnoise_reffile.tsv",
            "readnoise_reffile_table",
            "Reference files",
            "READNOISE per amplifier",
        ),
        figure_path=group_report(
            "results/plots/{group}/readnoise_reffile.png",
            "readnoise_reffile",
            "Reference files",
            "READNOISE map and histogram",
        ),
    log:
        "logs/reffiles/readnoise/{group}.log",
    conda:
        "../../envs/detcal.yaml"
    params:
        function="detcal.reffiles.readnoise.make_readnoise",
        kwargs=reffile_kwargs("readnoise"),
    script:
        "../scripts/group_analysis.py"


rule mask_reffile:
    input:
        rateints_paths=group_paths("rateints"),
        jump_paths=group_paths("jump"),
        raw_paths=group_paths("raw"),  # a dead output is flat only in the raw files
        gain_path=group_reference("gain"),
    output:
        out_path="results/reffiles/{group}/mask.fits",
        table_path=group_report(
            "results/analysis/{group}/mask_reffile.tsv", "mask_reffile_table", "Reference files", "bad pixels per type"
        ),
        figure_path=group_report(
            "results/plots/{group}/mask_reffile.png", "mask_reffile", "Reference files", "bad-pixel map"
        ),
    log:
        "logs/reffiles/mask/{group}.log",
    conda:
        "../../envs/detcal.yaml"
    params:
        function="detcal.reffiles.badpix.make_mask",
        kwargs=reffile_kwargs("mask"),
    script:
        "../scripts/group_analysis.py"
