"""amc: step-level critique datasets for math reasoning (AutoMathCritique), and the loops that use them."""

__version__ = "0.1.0"
