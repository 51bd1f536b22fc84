"""Entry point: ``python tools/synth_librispeech ...`` (or ``python -m synth_librispeech``)."""

import sys
from pathlib import Path

if not __package__:
    # Run as a folder, Python put the folder itself first on sys.path. Its parent instead makes
    # the modules importable as the package, here and in the spawned workers (which inherit
    # sys.path and unpickle their tasks by module name).
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from synth_librispeech.cli import main  # noqa: E402 (needs the path set above)

if __name__ == "__main__":
    sys.exit(main())
