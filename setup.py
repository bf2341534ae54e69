"""Build of the compiled part of lakh-pipeline (everything else is in pyproject.toml).

``pipeline.io._smf``: the SMF kernels in C. No contraction into fused multiply-adds and no fast
math, so the beat grid rounds exactly as pretty_midi's Python does.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pipeline.io._smf",
            sources=["pipeline/io/_smf.c"],
            extra_compile_args=["-O2", "-ffp-contract=off", "-fno-fast-math"],
        )
    ]
)
