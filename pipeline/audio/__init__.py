"""Audio: FluidSynth rendering (render.py), downmix (downmix.py) and fixed-length clips (clips.py)."""

from pipeline.errors import MidiError


class AudioError(MidiError):
    """One audio input is unusable (``audio.undecodable``, ``audio.not_finite``, ``skip.*``).

    A MidiError in all but name (``pipeline.errors.MidiError`` is "one input file is unusable"),
    so the stages' one except clause for bad inputs covers both formats.
    """
