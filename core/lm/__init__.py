"""Language models for decoding."""
