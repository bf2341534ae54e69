"""Test oracle: the piano-roll rules of pypianoroll 0.3.0's ``Multitrack.parse_pretty_midi``
(with which the Lakh Pianoroll Dataset was made), restated over a pretty_midi object, in plain
Python loops, slow and literal. pypianoroll 0.3.0 no longer installs on current numpy, so the
tests compare our compiled path against this restatement (and against pypianoroll 1.0.4 itself
for ``semantics="pypianoroll"``).
"""

from __future__ import annotations

import numpy as np


def parse_lpd030(pm, resolution: int = 24):
    """Return ([(roll uint8 (n_steps, 128), program, is_drum) per non-empty instrument], tempo, downbeat)."""
    if pm.time_signature_changes:
        pm.time_signature_changes.sort(key=lambda x: x.time)
        first_beat_time = pm.time_signature_changes[0].time
    else:
        first_beat_time = pm.estimate_beat_start()
    beat_times = pm.get_beats(first_beat_time)
    beat_times.sort()
    n_steps = resolution * len(beat_times)
    one_more_beat = 2 * beat_times[-1] - beat_times[-2]
    beat_times_one_more = np.append(beat_times, one_more_beat)
    bpm = 60.0 / np.diff(beat_times_one_more)
    tempo = np.tile(bpm, (1, 24)).reshape(-1)  # LPD's (wrong) tempo array, kept for reference
    downbeat = np.zeros(n_steps, bool)
    downbeat[0] = True

    tracks = []
    for instrument in pm.instruments:
        roll = np.zeros((n_steps, 128), np.uint8)
        kept = [note for note in instrument.notes if note.end > first_beat_time]
        pitches = np.array([note.pitch for note in kept], int)
        starts = np.array([note.start for note in kept])
        idx = np.searchsorted(beat_times, starts) - 1
        ratios = (starts - beat_times[idx]) / (beat_times_one_more[idx + 1] - beat_times[idx])
        note_ons = ((idx + ratios) * resolution).astype(int)
        if instrument.is_drum:
            for on, p, note in zip(note_ons, pitches, kept):
                if on < n_steps:
                    roll[on, p] = note.velocity
        else:
            ends = np.array([note.end for note in kept])
            idx = np.searchsorted(beat_times, ends) - 1
            ratios = (ends - beat_times[idx]) / (beat_times_one_more[idx + 1] - beat_times[idx])
            note_offs = ((idx + ratios) * resolution).astype(int)
            for k, start in enumerate(note_ons):
                end = note_offs[k] + 1
                velocity = kept[k].velocity  # 0.3.0 reads instrument.notes[k]: see the README
                if velocity < 1:
                    continue
                p = pitches[k]
                if 0 < start < n_steps and roll[start - 1, p]:
                    roll[start - 1, p] = 0
                if end < n_steps - 1 and roll[end + 1, p]:
                    end -= 1
                lo = max(start, 0)
                roll[lo:end, p] = np.maximum(roll[lo:end, p], velocity)
        if roll.any():
            tracks.append((roll, int(instrument.program), bool(instrument.is_drum)))
    return tracks, tempo, downbeat
