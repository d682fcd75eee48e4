# The ramps the noise analyses read (noise decomposition, effective noise): superbias-corrected
# NIR ramps through refpix again, with the top/bottom reference rows only, as NRC-09/pynrc
# prepare them (detcal.noise_conventions.REFPIX_PARAMETERS): the side reference columns would
# remove part of the 1/f being measured and add their own noise. The main chain keeps jwst's
# refpix (side pixels on by default).


rule refpix_noise:
    input:
        ramp=noise_input,
    output:
        ramp=temp(noise_path("{exposure}")),
    log:
        "logs/refpix_noise/{exposure}.log",
    conda:
        "../../envs/detcal.yaml"
    params:
        step="refpix",
        parameters=noise_refpix_parameters,
        pixels=[],
    script:
        "../scripts/step.py"
