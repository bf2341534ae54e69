"""Token sequences from MIDI: the music21 note/chord recipe (``notes``), event vocabularies
(``events``: REMI and MIDI-like), vocabulary files (``vocab``), token shards and training windows
(``shards``) and BPE over event tokens (``bpe``)."""
