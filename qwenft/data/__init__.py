"""Reading, validating and formatting training and evaluation data."""
