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


class FetchError(SourceError):
    """A download failed: HTTP error, connection lost, or a checksum that does not match."""


class SchemaError(PipelineError):
    """A shard folder or file does not match what this version of the pipeline reads.

    The message names the file, what was expected and what was found (and, for a version
    mismatch, what to do about it); ``path``, ``expected`` and ``found`` keep them apart.
    """

    def __init__(self, path: str, what: str, *, expected=None, found=None, hint: str = "") -> None:
        msg = f"{path}: {what}"
        if expected is not None or found is not None:
            msg += f": expected {expected}, found {found}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)
        self.path, self.what, self.expected, self.found, self.hint = str(path), what, expected, found, hint

    def __reduce__(self):  # picklable across DataLoader and dask workers
        return (_rebuild_schema_error, (self.path, self.what, self.expected, self.found, self.hint))


def _rebuild_schema_error(path, what, expected, found, hint):
    return SchemaError(path, what, expected=expected, found=found, hint=hint)


class UnsafeFileError(PipelineError):
    """A file would need unpickling (an object array in an NPZ, a checkpoint holding arbitrary
    Python objects) or is not the format it claims: refused, never loaded."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path, self.detail = str(path), detail

    def __reduce__(self):
        return (type(self), (self.path, self.detail))


#: modules that only an extra of lakh-pipeline installs (a plain ``pip install lakh-pipeline`` runs
#: the data stages and ``inspect``): the module's top-level name -> the extra
EXTRAS = {"torch": "models", "matplotlib": "report", "librosa": "report", "dvc": "dvc"}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """One line for a module that an extra installs (``None`` for any other missing module: a bug)."""
    top = (exc.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    return f"this command needs {top}, which `pip install 'lakh-pipeline[{EXTRAS[top]}]'` installs"
