"""The compiled parts of the monitors: detectors/_kernels.c and the JSON decoder detectors/_decode.c (with
yyjson, vendored in detectors/vendor/yyjson); everything else is in pyproject.toml."""
from setuptools import Extension, setup

_WARNINGS = ["-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(
    ext_modules=[
        Extension(
            "detectors._kernels",
            sources=["detectors/_kernels.c"],
            depends=["detectors/_columns.h"],
            # -ffp-contract=off: no fused multiply-adds, so scores match the numpy reference bit for bit
            extra_compile_args=["-O3", "-ffp-contract=off", "-std=c11", *_WARNINGS],
        ),
        Extension(
            "detectors._decode",
            sources=["detectors/_decode.c", "detectors/vendor/yyjson/yyjson.c"],
            depends=["detectors/_columns.h", "detectors/vendor/yyjson/yyjson.h"],
            # strict JSON only (as orjson reads it), and no writer: only the reader is used
            define_macros=[("YYJSON_DISABLE_WRITER", "1"), ("YYJSON_DISABLE_NON_STANDARD", "1"),
                           ("YYJSON_DISABLE_UTILS", "1")],
            extra_compile_args=["-O3", "-std=c11", *_WARNINGS],
        ),
    ],
)
