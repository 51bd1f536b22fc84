"""Shared building blocks: subsampling, positional encodings, attention, FFN, convolution,
encoder blocks and encoders, CTC head and loss."""
