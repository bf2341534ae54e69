"""Seeded multitrack band arrangements that use all five LPD-5 families.

Song ``index`` of seed ``seed`` draws everything from ``numpy.random.default_rng([seed, index])``,
so a song does not depend on any other song nor on how many are made, and the same seed gives
byte-identical files (mido writes them: running status, no timestamps).

Each song has five tracks after a conductor track: drums on channel 10 (mido channel 9, GM drum
keys), bass (programs 32-39), guitar (24-31), piano (0-7) and strings (:data:`STRING_PROGRAMS`,
all in the LPD-5 strings family). Every song has a verse and a chorus, and all five play in the
chorus. A song draws:

- a key (12 tonics, major or minor) and a chord progression per section kind (diatonic triads,
  sometimes sevenths, a major V in minor), one chord per bar;
- a form (intro / verse / chorus / bridge / outro) of 16 to 48 bars;
- a meter, 4/4, 3/4 or 6/8, with drum, bass and comping patterns written for it; about one song
  in seven changes meter for one section (``time_signature`` events);
- a tempo of 70-180 bpm (quarter notes); about a third change it: a sudden jump for one section,
  or a ritardando / accelerando ramp of one ``set_tempo`` per beat;
- about a quarter modulate (a lift of one or two semitones for the last chorus, or the relative
  key for one section), with ``key_signature`` events;
- ticks per beat from :data:`TICKS_PER_BEAT`;
- about one in five opens with a silent one-beat pickup bar (``1/4``, or ``3/8`` in 6/8) so that
  its first note starts one beat in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mido
import numpy as np

from pipeline.corpus.music21_works import Note, note_track, resolve_overlaps, time_signature
from pipeline.formats.midi import midi_file, track

FAMILIES = ("drums", "piano", "guitar", "bass", "strings")
TICKS_PER_BEAT = (96, 220, 384, 480)
METERS = ("4/4", "3/4", "6/8")
BASS_PROGRAMS = tuple(range(32, 40))
GUITAR_PROGRAMS = tuple(range(24, 32))
PIANO_PROGRAMS = tuple(range(0, 8))
#: Sustained strings, string ensembles, choir and pads: all in the LPD-5 strings family.
STRING_PROGRAMS = (48, 49, 50, 51, 44, 52, 89, 91, 94)
DRUM_CHANNEL = 9

KICK, RIM, SNARE, CLOSED_HAT, OPEN_HAT, CRASH, RIDE = 36, 37, 38, 42, 46, 49, 51
TOMS = (50, 48, 47, 45, 43, 41)  # high tom ... low floor tom

_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)
_MAJOR_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_NAMES = ("Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm")
_PROGRESSIONS = {  # scale degrees, 0-based
    "major": ((0, 4, 5, 3), (0, 3, 4, 3), (5, 3, 0, 4), (0, 5, 3, 4), (1, 4, 0, 0), (0, 3, 0, 4), (3, 0, 4, 5)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4), (5, 6, 0, 0)),
}
_FORMS = (
    ("intro", "verse", "chorus", "verse", "chorus", "outro"),
    ("intro", "verse", "chorus", "bridge", "chorus", "outro"),
    ("verse", "chorus", "verse", "chorus", "chorus"),
    ("intro", "verse", "verse", "chorus", "outro"),
    ("intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus", "chorus", "outro"),
)
_LENGTHS = {"intro": (2, 4), "verse": (4, 8), "chorus": (4, 8), "bridge": (4,), "outro": (2, 4)}
_ENERGY = {"intro": 0.78, "verse": 0.88, "chorus": 1.0, "bridge": 0.92, "outro": 0.8}
_STEPS = {"4/4": 16, "3/4": 12, "6/8": 12}  # sixteenth notes per bar
_BEAT_STEPS = {"4/4": 4, "3/4": 4, "6/8": 6}
_PICKUP_SIGNATURE = {"4/4": (1, 4), "3/4": (1, 4), "6/8": (3, 8)}

# Patterns on the sixteenth grid: (step, length in steps, what)
_KICKS = {
    "4/4": ((0, 8), (0, 8, 10), (0, 6, 8), (0, 3, 8, 11), (0, 8, 11, 14)),
    "3/4": ((0,), (0, 10), (0, 6)),
    "6/8": ((0,), (0, 10), (0, 4)),
}
_SNARES = {"4/4": (4, 12), "3/4": (4, 8), "6/8": (6,)}
_FILLS = ((SNARE, SNARE, SNARE, SNARE, SNARE, SNARE), (50, 48, 47, 45, 43, 41), (SNARE, 45, 45, 41, 41, 41),
          (SNARE, SNARE, 50, 47, 45, 43))
_BASS = {
    "4/4": (((0, 8, "root"), (8, 8, "fifth")),
            tuple((i, 2, "root") for i in range(0, 16, 2)),
            ((0, 3, "root"), (3, 3, "root"), (6, 2, "octave"), (8, 4, "root"), (12, 2, "fifth"), (14, 2, "approach")),
            ((0, 6, "root"), (6, 2, "root"), (10, 4, "fifth"), (14, 2, "approach"))),
    "3/4": (((0, 12, "root"),), ((0, 4, "root"), (8, 4, "fifth")), ((0, 4, "root"), (4, 4, "fifth"), (8, 4, "approach"))),
    "6/8": (((0, 6, "root"), (6, 6, "fifth")), ((0, 4, "root"), (4, 2, "root"), (6, 4, "fifth"), (10, 2, "approach")),
            ((0, 12, "root"),)),
}
_PIANO = {  # (step, length, "chord" | "low" | "arp<n>")
    "4/4": (((0, 16, "low"), (0, 16, "chord")),
            ((0, 4, "low"), (0, 4, "chord"), (4, 4, "chord"), (8, 4, "chord"), (12, 4, "chord")),
            ((0, 6, "low"), (0, 6, "chord"), (6, 4, "chord"), (12, 4, "chord")),
            tuple((i, 2, f"arp{i // 2}") for i in range(0, 16, 2))),
    "3/4": (((0, 4, "low"), (4, 3, "chord"), (8, 3, "chord")), ((0, 12, "low"), (0, 12, "chord")),
            tuple((i, 2, f"arp{i // 2}") for i in range(0, 12, 2))),
    "6/8": (tuple((i, 2, f"arp{i // 2}") for i in range(0, 12, 2)), ((0, 6, "low"), (0, 6, "chord"), (6, 6, "chord"))),
}
_GUITAR = {  # (step, length, "D" down | "U" up)
    "4/4": (tuple((i, 2, "D" if i % 4 == 0 else "U") for i in range(0, 16, 2)),
            ((0, 3, "D"), (3, 3, "U"), (6, 2, "U"), (8, 2, "D"), (10, 4, "U"), (14, 2, "U")),
            ((2, 1, "D"), (6, 1, "D"), (10, 1, "D"), (14, 1, "D")),
            ((0, 16, "D"),)),
    "3/4": (((0, 4, "D"), (4, 4, "D"), (8, 4, "U")), ((0, 12, "D"),), ((0, 4, "D"), (6, 2, "U"), (8, 4, "D"))),
    "6/8": (((0, 6, "D"), (6, 6, "D")), tuple((i, 2, "D" if i % 6 == 0 else "U") for i in range(0, 12, 2))),
}


def lpd5_family(program: int, *, is_drum: bool) -> str | None:
    """LPD-5 family of a General MIDI program (0-127), or None for the programs LPD-5 drops.

    Examples
    --------
    >>> lpd5_family(33, is_drum=False), lpd5_family(52, is_drum=False), lpd5_family(0, is_drum=True)
    ('bass', 'strings', 'drums')
    >>> lpd5_family(118, is_drum=False) is None
    True
    """
    if is_drum:
        return "drums"
    if 0 <= program <= 7:
        return "piano"
    if 24 <= program <= 31:
        return "guitar"
    if 32 <= program <= 39:
        return "bass"
    if 8 <= program <= 23 or 40 <= program <= 95 or 104 <= program <= 111:
        return "strings"
    return None


def song_filename(index: int) -> str:
    """``band_<index:04d>.mid``."""
    return f"band_{index:04d}.mid"


@dataclass(frozen=True)
class Bar:
    """One bar of a song plan."""

    start: int  # tick
    meter: str
    tonic: int  # pitch class
    mode: str
    chord: tuple[int, ...]  # pitch classes, root first
    section: int  # index into SongPlan.sections
    position: int  # bar number inside its section


@dataclass(frozen=True)
class Section:
    """One section: its kind, which instruments play, and their patterns."""

    kind: str
    n_bars: int
    meter: str
    tonic: int
    mode: str
    playing: frozenset[str]
    kick: int
    hats: str  # "eighths" | "sixteenths" | "ride" | "open"
    bass: int
    piano: int
    guitar: int
    fill: int


@dataclass(frozen=True)
class SongPlan:
    """Everything about a song but its notes."""

    seed: int
    index: int
    ticks_per_beat: int
    pickup_ticks: int
    sections: tuple[Section, ...]
    bars: tuple[Bar, ...]
    end_tick: int
    tempos: tuple[tuple[int, float], ...]  # (tick, quarter-note bpm)
    programs: dict[str, int]
    channels: dict[str, int]
    sevenths: bool


def song_midi(*, seed: int, index: int) -> mido.MidiFile:
    """Generate song ``index`` of ``seed`` as a type-1 MIDI file.

    Parameters
    ----------
    seed : int
        Corpus seed, >= 0.
    index : int
        Song number, >= 0.

    Returns
    -------
    mido.MidiFile
        Six tracks: conductor, Drums, Bass, Guitar, Piano, Strings.
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed={seed} and index={index} must be non-negative")
    rng = np.random.default_rng([seed, index])
    plan = plan_song(rng, seed=seed, index=index)
    return render_song(plan, rng)


def plan_song(rng: np.random.Generator, *, seed: int, index: int) -> SongPlan:
    """Draw the form, meters, keys, chords, tempo map and instruments of a song."""
    tpb = int(rng.choice(TICKS_PER_BEAT))
    meter = str(rng.choice(METERS, p=[0.5, 0.25, 0.25]))
    tonic = int(rng.integers(12))
    mode = "major" if rng.random() < 0.6 else "minor"
    bpm = float(rng.integers(70, 181))
    form = _FORMS[int(rng.integers(len(_FORMS)))]
    lengths = {kind: int(rng.choice(options)) for kind, options in _LENGTHS.items()}
    while sum(lengths[k] for k in form) > 48:
        longest = next(k for k in ("chorus", "verse") if lengths[k] == 8)
        lengths[longest] = 4
    progressions = {kind: _PROGRESSIONS[mode][int(rng.integers(len(_PROGRESSIONS[mode])))] for kind in _LENGTHS}
    sevenths = bool(rng.random() < 0.3)
    middle = list(range(1, len(form) - 1))
    # meter change: one middle section (the bridge when there is one) in another meter
    meters = [meter] * len(form)
    if rng.random() < 0.15:
        at = form.index("bridge") if "bridge" in form else int(rng.choice(middle))
        meters[at] = str(rng.choice([m for m in METERS if m != meter]))
    # key change: a lift for the last chorus onwards, or one middle section in the relative key
    keys = [(tonic, mode)] * len(form)
    if rng.random() < 0.25:
        if rng.random() < 0.5:
            last_chorus = len(form) - 1 - form[::-1].index("chorus")
            lift = int(rng.choice([1, 2]))
            for i in range(last_chorus, len(form)):
                keys[i] = ((tonic + lift) % 12, mode)
        else:
            at = int(rng.choice(middle))
            keys[at] = ((tonic + 9) % 12, "minor") if mode == "major" else ((tonic + 3) % 12, "major")
    primary = "piano" if rng.random() < 0.5 else "guitar"
    sections = []
    for i, kind in enumerate(form):
        playing = {"drums", "bass", "piano", "guitar", "strings"}
        if kind == "verse":
            playing -= {"guitar" if primary == "piano" else "piano"}
            if rng.random() < 0.6:
                playing.discard("strings")
        elif kind in ("intro", "outro"):
            for name, p_keep in (("bass", 0.6), ("guitar", 0.4), ("piano", 0.8)):
                if rng.random() >= p_keep:
                    playing.discard(name)
        elif kind == "bridge" and rng.random() < 0.5:
            playing.discard("guitar")
        m = meters[i]
        sections.append(Section(
            kind=kind, n_bars=lengths[kind], meter=m, tonic=keys[i][0], mode=keys[i][1],
            playing=frozenset(playing),
            kick=int(rng.integers(len(_KICKS[m]))),
            hats=str(rng.choice(["ride", "open", "eighths"] if kind in ("chorus", "bridge") else ["eighths", "sixteenths"])),
            bass=int(rng.integers(len(_BASS[m]))),
            piano=int(rng.integers(len(_PIANO[m]))),
            guitar=int(rng.integers(len(_GUITAR[m]))),
            fill=int(rng.integers(len(_FILLS))),
        ))
    pickup_ticks = _beat_ticks(meter, tpb) if rng.random() < 0.2 else 0
    bars = []
    tick = pickup_ticks
    for s_index, section in enumerate(sections):
        progression = progressions[section.kind]
        for position in range(section.n_bars):
            degree = progression[position % len(progression)]
            chord = _chord(section.tonic, section.mode, degree, sevenths)
            bars.append(Bar(tick, section.meter, section.tonic, section.mode, chord, s_index, position))
            tick += _STEPS[section.meter] * tpb // 4
    end_tick = tick
    tempos = _tempo_map(rng, bpm, sections, bars, tpb)
    programs = {
        "bass": int(rng.choice(BASS_PROGRAMS)),
        "guitar": int(rng.choice(GUITAR_PROGRAMS)),
        "piano": int(rng.choice(PIANO_PROGRAMS)),
        "strings": int(rng.choice(STRING_PROGRAMS)),
    }
    free = [c for c in range(16) if c != DRUM_CHANNEL]
    picked = rng.choice(free, size=4, replace=False)
    channels = {"drums": DRUM_CHANNEL} | {name: int(c) for name, c in zip(("bass", "guitar", "piano", "strings"), picked)}
    return SongPlan(seed=seed, index=index, ticks_per_beat=tpb, pickup_ticks=pickup_ticks,
                    sections=tuple(sections), bars=tuple(bars), end_tick=end_tick, tempos=tempos,
                    programs=programs, channels=channels, sevenths=sevenths)


def _beat_ticks(meter: str, tpb: int) -> int:
    return _BEAT_STEPS[meter] * tpb // 4


def _chord(tonic: int, mode: str, degree: int, seventh: bool) -> tuple[int, ...]:
    scale = _MAJOR_SCALE if mode == "major" else _MINOR_SCALE
    steps = (0, 2, 4, 6) if seventh else (0, 2, 4)
    pcs = [scale[(degree + s) % 7] for s in steps]
    if mode == "minor" and degree == 4:  # harmonic minor: a major dominant with the leading tone
        pcs[1] = 11
    return tuple((tonic + pc) % 12 for pc in pcs)


def _tempo_map(rng: np.random.Generator, bpm: float, sections: list[Section], bars: list[Bar],
               tpb: int) -> tuple[tuple[int, float], ...]:
    tempos = [(0, bpm)]
    if rng.random() >= 0.35:
        return tuple(tempos)
    kind = str(rng.choice(["sudden", "ritardando", "accelerando", "sudden+ritardando"]))
    starts = {}
    for bar in bars:
        starts.setdefault(bar.section, bar.start)
    if kind.startswith("sudden") and len(sections) > 2:
        at = int(rng.integers(1, len(sections) - 1))
        factor = float(rng.choice([0.8, 0.88, 1.12, 1.25]))
        tempos.append((starts[at], round(bpm * factor, 2)))
        tempos.append((starts[at + 1], bpm))
    if kind.endswith("ritardando"):  # the last two bars slow down, one step per beat
        ramp = [(bar.start, bar.meter) for bar in bars[-2:]]
        ticks = [start + b * _beat_ticks(m, tpb) for start, m in ramp for b in range(_STEPS[m] // _BEAT_STEPS[m])]
        for i, tick in enumerate(ticks[1:], start=1):
            tempos.append((tick, round(bpm * (1 - 0.35 * i / (len(ticks) - 1)), 2)))
    if kind == "accelerando":  # the first section speeds up from 80 % to the song tempo
        first = [bar for bar in bars if bar.section == 0]
        ticks = [bar.start + b * _beat_ticks(bar.meter, tpb) for bar in first
                 for b in range(_STEPS[bar.meter] // _BEAT_STEPS[bar.meter])]
        tempos = [(0, round(bpm * 0.8, 2))]
        for i, tick in enumerate(ticks[1:], start=1):
            tempos.append((tick, round(bpm * (0.8 + 0.2 * i / (len(ticks) - 1)), 2)))
    return tuple(sorted(dict(tempos).items()))  # one tempo per tick: the last one drawn


def render_song(plan: SongPlan, rng: np.random.Generator) -> mido.MidiFile:
    """Turn a plan into notes and write them as tracks (conductor first)."""
    step = plan.ticks_per_beat // 4
    parts: dict[str, list[list[int]]] = {name: [] for name in ("drums", "bass", "guitar", "piano", "strings")}
    n_bars = len(plan.bars)

    def add(part: str, start: int, length: int, pitch: int, velocity: float) -> None:
        v = int(np.clip(round(velocity + rng.integers(-6, 7)), 1, 127))
        parts[part].append([start, start + max(1, length), pitch, v])

    for i, bar in enumerate(plan.bars):
        section = plan.sections[bar.section]
        energy = _ENERGY[section.kind]
        last_of_song = i == n_bars - 1
        last_of_section = bar.position == section.n_bars - 1 and not last_of_song
        next_root = plan.bars[i + 1].chord[0] if not last_of_song else bar.chord[0]
        steps = _STEPS[bar.meter]
        bar_ticks = steps * step
        if last_of_song:  # the ending: one crash and one held chord
            add("drums", bar.start, step, CRASH, 110 * energy)
            add("drums", bar.start, step, KICK, 105 * energy)
            root = _in_range(bar.chord[0], 28)
            add("bass", bar.start, bar_ticks - step, root, 95 * energy)
            for p in _close(bar.chord, 55):
                add("piano", bar.start, bar_ticks - step, p, 80 * energy)
                add("strings", bar.start, bar_ticks, p + 12, 70 * energy)
            for j, p in enumerate(_guitar_voicing(bar.chord)):
                add("guitar", bar.start + j * max(1, plan.ticks_per_beat // 40), bar_ticks - step, p, 85 * energy)
            continue
        _drums(add, bar, section, step, energy, first=bar.position == 0 and i > 0, fill=last_of_section)
        if "bass" in section.playing:
            for s, length, what in _BASS[bar.meter][section.bass]:
                root = _in_range(bar.chord[0], 28)
                pitch = {"root": root, "fifth": root + 7, "octave": root + 12,
                         "approach": _in_range(next_root, 28) + (1 if rng.random() < 0.5 else -1)}[what]
                add("bass", bar.start + s * step, length * step - step // 4, pitch, (100 if s == 0 else 88) * energy)
        if "piano" in section.playing:
            chord = _close(bar.chord, 55)
            arp = [_in_range(bar.chord[0], 43)] + chord + [chord[0] + 12] + chord[1:][::-1]
            for s, length, what in _PIANO[bar.meter][section.piano]:
                accent = 8 if s % _BEAT_STEPS[bar.meter] == 0 else 0
                if what == "low":
                    add("piano", bar.start + s * step, length * step, _in_range(bar.chord[0], 43), 78 * energy + accent)
                elif what == "chord":
                    for p in chord:
                        add("piano", bar.start + s * step, length * step, p, 72 * energy + accent)
                else:
                    add("piano", bar.start + s * step, length * step, arp[int(what[3:]) % len(arp)], 70 * energy + accent)
        if "guitar" in section.playing:
            voicing = _guitar_voicing(bar.chord)
            strum = max(1, plan.ticks_per_beat // 40)
            for s, length, direction in _GUITAR[bar.meter][section.guitar]:
                strings = voicing if direction == "D" else voicing[::-1][:3]
                base = (84 if direction == "D" else 70) * energy
                for j, p in enumerate(strings):
                    add("guitar", bar.start + s * step + j * strum, length * step - j * strum - step // 4, p, base)
        if "strings" in section.playing:
            previous = plan.bars[i - 1] if i > 0 else None
            held = previous is not None and previous.section == bar.section and previous.chord == bar.chord
            pad = [_in_range(bar.chord[0], 48)] + [p + 12 for p in _close(bar.chord, 55)]
            for p in pad:
                if held:  # extend the pad of the previous bar instead of restriking
                    for row in reversed(parts["strings"]):
                        if row[2] == p and row[1] == bar.start:
                            row[1] = bar.start + bar_ticks
                            break
                else:
                    add("strings", bar.start, bar_ticks, p, 62 * energy)
    return _write(plan, {name: resolve_overlaps(rows) for name, rows in parts.items()})


def _drums(add: Callable[[str, int, int, int, float], None], bar: Bar, section: Section, step: int, energy: float, *, first: bool, fill: bool) -> None:
    meter, steps = bar.meter, _STEPS[bar.meter]
    beat = _BEAT_STEPS[meter]
    fill_from = steps - beat if fill else steps
    light = section.kind in ("intro", "outro")
    if first or (bar.position == 0 and not light):
        add("drums", bar.start, step, CRASH, 105 * energy)
    for s in _KICKS[meter][section.kick]:
        if s < fill_from:
            add("drums", bar.start + s * step, step, KICK, (104 if s == 0 else 92) * energy)
    for s in _SNARES[meter]:
        if s < fill_from:
            add("drums", bar.start + s * step, step, RIM if light else SNARE, 96 * energy)
    if section.hats == "sixteenths":
        hats = [(s, CLOSED_HAT) for s in range(steps)]
    elif section.hats == "ride":
        hats = [(s, RIDE) for s in range(0, steps, 2)]
    elif section.hats == "open":
        hats = [(s, OPEN_HAT if s % beat == beat // 2 else CLOSED_HAT) for s in range(0, steps, 2)]
    else:
        hats = [(s, CLOSED_HAT) for s in range(0, steps, 2)]
    for s, key in hats:
        if s < fill_from and not (first and s == 0 and key == RIDE):
            accent = 14 if s % beat == 0 else (6 if s % 2 == 0 else 0)
            add("drums", bar.start + s * step, step, key, (66 + accent) * energy)
    if fill:
        pattern = _FILLS[section.fill]
        for j, s in enumerate(range(fill_from, steps)):
            add("drums", bar.start + s * step, step, pattern[j % len(pattern)], (86 + 3 * j) * energy)


def _in_range(pc: int, low: int) -> int:
    """The pitch of class ``pc`` in ``[low, low + 12)``."""
    return low + (pc - low) % 12


def _close(chord: tuple[int, ...], low: int) -> list[int]:
    """Close-position voicing of ``chord`` above ``low`` (root first, then upwards)."""
    root = _in_range(chord[0], low)
    return [root] + [root + (pc - chord[0]) % 12 for pc in chord[1:]]


def _guitar_voicing(chord: tuple[int, ...]) -> list[int]:
    """A five-string, E-shape-like voicing from a root between E2 and D#3."""
    root = _in_range(chord[0], 40)
    third = (chord[1] - chord[0]) % 12
    top = root + 12 + (chord[3] - chord[0]) % 12 if len(chord) > 3 else root + 19
    return [root, root + 7, root + 12, root + 12 + third, top]


def _write(plan: SongPlan, notes: dict[str, list[Note]]) -> mido.MidiFile:
    end_tick = max([plan.end_tick] + [n.end for rows in notes.values() for n in rows])
    meta: list[tuple[int, int, mido.MetaMessage]] = []
    for tick, bpm in plan.tempos:
        meta.append((tick, 1, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))))
    if plan.pickup_ticks:
        meta.append((0, 2, time_signature(*_PICKUP_SIGNATURE[plan.bars[0].meter])))
    previous_meter, previous_key = None, None
    for bar in plan.bars:
        if bar.meter != previous_meter:
            numerator, denominator = (int(x) for x in bar.meter.split("/"))
            meta.append((bar.start, 2, time_signature(numerator, denominator)))
            previous_meter = bar.meter
        name = (_MAJOR_NAMES if bar.mode == "major" else _MINOR_NAMES)[bar.tonic]
        if name != previous_key:
            meta.append((0 if previous_key is None else bar.start, 3, mido.MetaMessage("key_signature", key=name)))
            previous_key = name
    tracks = [track(meta, head=[mido.MetaMessage("track_name", name=f"band {plan.seed} {plan.index:04d}", time=0)],
                    end=end_tick)]
    for name in ("drums", "bass", "guitar", "piano", "strings"):
        tracks.append(note_track(name.capitalize(), plan.channels[name], notes[name], end_tick,
                                 program=plan.programs.get(name)))
    return midi_file(tracks, ticks_per_beat=plan.ticks_per_beat)
