"""The compiled kernels of the monitors (detectors/_kernels.c); everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "detectors._kernels",
            sources=["detectors/_kernels.c"],
            # -ffp-contract=off: no fused multiply-adds, so scores match the numpy reference bit for bit
            extra_compile_args=["-O3", "-ffp-contract=off", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ],
)
