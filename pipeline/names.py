"""The fixed names of the project, each defined once with one meaning.

A ``Literal`` type (for ``Params`` fields and CLI options: ``--help`` lists its values and anything
else is refused) and the tuple of its values, in the order the CLI and the stages list them. This
module imports nothing of the project, so ``pipeline.cli`` can take its choices from here without
loading a stage. A model family has one name everywhere: the params section, the CLI command
(``pipeline train|sample|evaluate <family>``), the DVC stage prefix (``train_<family>...``), the
modules (``stages/<family>.py``, ``pipeline/models/<family>.py``, ``pipeline/training/<family>.py``)
and the output folder (``datasets/models/<family>``).

The splits of songs (``train``/``valid``/``test`` and the VQ-VAE's ``train``/``heldout``) and the
rule that assigns them live in :mod:`pipeline.splits`.
"""

from __future__ import annotations

from typing import Literal, get_args

#: the model families (params sections, CLI commands, stage modules, output folders)
Family = Literal["lstm", "musegan", "vqvae", "jukebox"]
FAMILIES: tuple[str, ...] = get_args(Family)

#: token vocabularies (build_vocab --kind, lstm.vocab, datasets/vocab/<kind>)
VocabKind = Literal["notes", "remi", "midilike"]
VOCAB_KINDS: tuple[str, ...] = get_args(VocabKind)

#: the LSTM family's variants (datasets/models/lstm/<variant>)
LstmVariant = Literal["lstm", "lstm_attention"]
LSTM_VARIANTS: tuple[str, ...] = get_args(LstmVariant)

#: MuseGAN's six generators (datasets/models/musegan/<variant>)
MuseganVariant = Literal["jamming", "composer", "hybrid", "temporal", "track_conditional", "musegan"]
MUSEGAN_VARIANTS: tuple[str, ...] = get_args(MuseganVariant)

#: the Jukebox family's trained parts: the top-level prior and the upsamplers of the lower levels
#: (params jukebox.prior / jukebox.upsampler, folders jukebox/prior and jukebox/upsampler_<level>)
JukeboxPart = Literal["prior", "upsampler"]
JUKEBOX_PARTS: tuple[str, ...] = get_args(JukeboxPart)

#: the Jukebox family's ways to sample (datasets/models/jukebox/samples/<mode>)
JukeboxMode = Literal["ancestral", "windowed", "primed"]
JUKEBOX_MODES: tuple[str, ...] = get_args(JukeboxMode)

#: the factorized attention patterns of the Jukebox transformer (jukebox.prior.pattern)
AttentionKind = Literal["dense", "row", "column", "prev_row"]
ATTENTION_KINDS: tuple[str, ...] = get_args(AttentionKind)

#: the archives of the Lakh MIDI Dataset (fetch-lmd --variant)
LmdVariant = Literal["full", "matched", "aligned", "clean"]
LMD_VARIANTS: tuple[str, ...] = get_args(LmdVariant)

#: how a stereo render or recording becomes the mono training signal (render_audio, ingest_audio)
Downmix = Literal["mean", "left", "right", "random", "none"]

#: training precisions (lstm/musegan/vqvae/jukebox ``train.precision``; pipeline.training.precision)
Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
