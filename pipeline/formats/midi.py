"""MIDI files written from events: the one writer of every Standard MIDI File this package makes
(model samples, decoded tokens, sanitized inputs for rendering, the built-in corpus).

A track is built from *events* ``(tick, order, message)``: ``tick`` is absolute, ``order`` any
comparable key that ranks the events of one tick (e.g. note-offs before note-ons). Events are
sorted by ``(tick, order)``, stably, and written with delta times. The bytes are mido's (running
status, no timestamps), so the same events always give the same file.
"""

from __future__ import annotations

import io
from typing import Any, Iterable, Sequence

import mido

#: ``(absolute tick, order among the events of that tick, message)``
Event = tuple[int, Any, mido.Message | mido.MetaMessage]


def track(events: Iterable[Event] = (), *, head: Sequence[mido.Message | mido.MetaMessage] = (),
          end: int | None = None) -> mido.MidiTrack:
    """A track: the ``head`` messages as given (``track_name``, ``program_change``... at their own
    delta times, usually 0), then ``events`` sorted by ``(tick, order)`` with delta times, then an
    ``end_of_track`` at tick ``end`` or at the last event, whichever is later. Without ``end``, mido
    ends the track at its last event when the file is written."""
    out = mido.MidiTrack(head)
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        out.append(message.copy(time=tick - now))
        now = tick
    if end is not None:
        out.append(mido.MetaMessage("end_of_track", time=max(0, end - now)))
    return out


def midi_file(tracks: Iterable[mido.MidiTrack], *, ticks_per_beat: int, type: int = 1) -> mido.MidiFile:
    """A MIDI file of ``tracks`` (see :func:`track`)."""
    mid = mido.MidiFile(type=type, ticks_per_beat=ticks_per_beat)
    mid.tracks.extend(tracks)
    return mid


def midi_bytes(midi: mido.MidiFile) -> bytes:
    """The bytes mido writes for ``midi`` (running status, no timestamps)."""
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()
