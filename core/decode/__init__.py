"""Decoding: CTC searches, recognizer API, the decode entry point."""
