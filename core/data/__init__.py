"""Data: Kaldi-style data dirs, LibriSpeech preparation, audio I/O, dynamic batching."""
