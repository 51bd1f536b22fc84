"""Tokenizers. Id 0 is the CTC blank and the last id is <sos/eos> in every tokenizer."""
