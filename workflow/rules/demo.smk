# The embedded demo data set: simulated raw ramps, their reference files and the truth.
if DEMO:

    rule simulate_demo:
        output:
            demo_outputs(),
        log:
            "logs/simulate_demo.log",
        conda:
            "../../envs/detcal.yaml"
        params:
            demo=config["demo"],
            outdir=demo_outdir,
        script:
            "../scripts/simulate_demo.py"
