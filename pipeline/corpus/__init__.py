"""The built-in corpus: MIDI that needs no download.

``music21_works`` exports a fixed list of works from the corpus shipped inside music21;
``band`` generates seeded multitrack band arrangements that use all five LPD-5 families.
"""
