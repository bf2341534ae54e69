"""PyTorch datasets over the shards this project writes, and aligned views across them.

- :class:`PianorollBars`: windows of bars from the build_lpd tensor shards (map-style).
- :class:`TokenWindows` (map-style) and :class:`TokenStream` (iterable, many shards) over the
  build_vocab token shards.
- :class:`AudioClips`: clips from the render_audio / ingest_audio Parquet shards (map-style).
- :func:`aligned`: the piano-roll, tokens and audio of the same bars of one song.

Every dataset keeps only plain metadata after ``__init__``; files are opened lazily in the
process that reads them, so the datasets are safe in a ``DataLoader`` with workers.
"""

from pipeline.data.aligned import aligned
from pipeline.data.audio import AudioClips
from pipeline.data.pianoroll import PianorollBars
from pipeline.data.tokens import TokenStream, TokenWindows

__all__ = ["AudioClips", "PianorollBars", "TokenStream", "TokenWindows", "aligned"]
