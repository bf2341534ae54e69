"""On-disk formats, one module per format, each with its writer, its reader and its schema:

=================  ==============================================================================
``npz``            deterministic NPZ files (the container of the NPZ formats below), read without pickle
``song_npz``       one song's piano-roll, pypianoroll / LPD NPZ (build_lpd ``songs/``)
``tensor_shards``  5-D piano-roll tensor shards, Parquet + NPZ (build_lpd ``tensors/``)
``phrase_shards``  MuseGAN phrases, ``shape`` + ``nonzero`` NPZ + Parquet (build_phrases; MuseGAN samples)
``token_shards``   token shards, Parquet (build_vocab ``shards/``)
``vocab``          vocabulary files (``vocab.json``)
``audio_shards``   audio clip shards, Parquet in the HF Audio layout + NPZ (render_audio, ingest_audio)
``manifest``       the manifests, one Parquet row per input
``midi``           MIDI files written from events (samples, rendering, the built-in corpus)
``arrow_arrays``   Arrow arrays and tables built without pandas (for the Parquet writers)
=================  ==============================================================================

Each shard kind (``song_npz``, ``tensor_shards``, ``phrase_shards``, ``token_shards``,
``audio_shards``) registers itself in :data:`pipeline.schema.KINDS` when its module is imported; a
reader takes the kind's name from its module, so the kind is registered before it is looked up.
This package imports nothing itself (``formats.midi`` stays free of pyarrow).
"""
