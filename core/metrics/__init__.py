"""Scoring (WER/CER with jiwer, alignments) and experiment reports."""
