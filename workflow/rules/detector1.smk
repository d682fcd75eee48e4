# Detector1 per-file chain: one rule per ramp step (defined in this loop, one definition of the
# rule shape), for every registered step (detcal.steps: a new step module gets its rule here).
# The order per instrument family is its descriptors' (detcal.pipeline.ORDER); each rule's
# input is the previous switched-on step's product. ramp_fit has its own rule (rates.smk).
for step in pipeline.RAMP_STEPS:

    rule:
        name:
            step
        input:
            unpack(step_references(step)),
            ramp=step_input(step),
        output:
            **step_extra_outputs(step),
            ramp=step_output(step),
            table=step_table(step),
            figure=step_figure(step),
        log:
            step_log(step),
        benchmark:
            step_benchmark(step)
        conda:
            "../../envs/detcal.yaml"
        threads: 1
        resources:
            mem_mb=ramp_step_mem_mb,
        params:
            step=step,
            parameters=step_parameters(step),
            pixels=config["sample_pixels"],
        script:
            "../scripts/step.py"
