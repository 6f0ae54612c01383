"""amc: step-level critique datasets for math reasoning (AutoMathCritique), and the loops that use them."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `amc.load` is imported on first use: `import amc` stays light (no datasets, no pyarrow) for the CLI.
    if name == "load":
        from amc.publish import load

        return load
    raise AttributeError(f"module 'amc' has no attribute {name!r}")
