"""lakh-pipeline: Lakh MIDI to training-ready shards, and the models that use them."""

__version__ = "0.1.0"
