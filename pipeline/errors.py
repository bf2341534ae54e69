"""Domain errors. Expected failures carry a stable code; anything else is a bug."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class ParamsError(PipelineError):
    """A value in params.yaml (or an option) is invalid."""


class StageError(PipelineError):
    """A stage cannot run: missing input, empty source, locked output..."""


class MidiError(PipelineError):
    """One input file is unusable.

    ``code`` is stable and groupable (``midi.truncated``, ``midi.not_midi``...);
    ``detail`` is a human sentence that names the bad value.
    """

    def __init__(self, code: str, path: str, detail: str) -> None:
        super().__init__(f"{path}: {code}: {detail}")
        self.code = code
        self.path = path
        self.detail = detail

    def __reduce__(self):  # picklable across dask workers
        return (type(self), (self.code, self.path, self.detail))


class SourceError(PipelineError):
    """A source folder or archive cannot be read as a whole."""
