"""PyTorch datasets over the shards this project writes, and aligned views across them.

- :class:`PianorollBars`: windows of bars from the build_lpd tensor shards (map-style).
- :class:`TokenWindows` (map-style) and :class:`TokenStream` (iterable, many shards) over the
  build_vocab token shards.
- :class:`PhraseTensors`: MuseGAN's phrase tensors of a split from the build_phrases NPZ (map-style).
- :class:`AudioClips`: clips from the render_audio / ingest_audio Parquet shards (map-style).
- :func:`aligned`: the piano-roll, tokens and audio of the same bars of one song.

Every dataset checks its folder's ``schema.json`` (kind, ``schema_version``, required keys) and
its shards' columns before reading them (:mod:`pipeline.schema`; a mismatch is a
:class:`~pipeline.errors.SchemaError` naming the file, the expected and the found value), and
never unpickles. Every dataset keeps only plain metadata after ``__init__``; files are opened
lazily in the process that reads them, so the datasets are safe in a ``DataLoader`` with workers.
"""

from pipeline.data.aligned import aligned
from pipeline.data.audio import AudioClips
from pipeline.data.phrases import PhraseTensors
from pipeline.data.pianoroll import PianorollBars
from pipeline.data.tokens import TokenStream, TokenWindows

__all__ = ["AudioClips", "PhraseTensors", "PianorollBars", "TokenStream", "TokenWindows", "aligned"]
