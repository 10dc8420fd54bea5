"""What a study costs before it runs.

    cost      the arithmetic (trial-hours, GPU-hours, wall time, ASHA's savings), the
              step-time cache and the lines `show` and `run` print; no torch
    measure   timing a model's steps on a device (imports torch)
    profiles  step times measured on a GPU elsewhere (accelerators.json), by name
"""
