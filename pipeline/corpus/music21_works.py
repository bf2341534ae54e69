"""Works from the corpus that ships inside music21, written as deterministic standard MIDI files.

The work list is explicit, ordered and versioned (:data:`WORKS`, :data:`WORKS_VERSION`), so the
exported corpus only changes when this module (or the music21 release) changes.

The MIDI is built here with mido rather than with music21's own writer, so that the bytes are
identical run to run and the conventions are ours:

- 480 ticks per quarter note; onsets and durations are music21 quarter lengths times 480, rounded;
- track 0 is a conductor track: track name, ``set_tempo`` from MetronomeMarks (100 bpm at tick 0
  when the score has none there), ``time_signature`` and ``key_signature`` from the first part;
  a pickup (anacrusis) bar gets a time signature of its own length (``1/4`` for one beat of
  4/4, then ``4/4``), so the MIDI bar lines fall where the score's do;
- one track per part (a piano's two staves are two parts) with a track name, one
  ``program_change`` (see :data:`PART_PROGRAMS`) and its own channel (never channel 10, index 9);
- tied notes are merged into one note (per pitch, our own pass: music21's ``stripTies`` takes
  tens of seconds on a long quartet), chords give one note per pitch, grace notes and other
  zero-length notes are skipped, chord symbols are skipped, repeats are *not* expanded;
- velocity follows the part's dynamic marks (:data:`DYNAMIC_VELOCITY`), 80 before the first one;
- transposing parts (B-flat clarinet...) are converted to sounding pitch.

music21 is imported inside the functions: importing this module is cheap. The small MIDI
helpers at the end (:func:`note_track`, :func:`time_signature`, :func:`resolve_overlaps`) are
shared with :mod:`pipeline.corpus.band`; the tracks are built and written by
:mod:`pipeline.formats.midi`.
"""

from __future__ import annotations

import re
import warnings
from bisect import bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mido

from pipeline.formats.midi import midi_file, track

if TYPE_CHECKING:  # pragma: no cover
    from music21 import stream

#: Bump when :data:`WORKS` or the export conventions change.
WORKS_VERSION = 1

#: Corpus paths (relative to music21's corpus folder), in export order. ``corpus.music21_works``
#: takes the first *n*. The first 55 are balanced: 22 Bach chorales (some with obbligato
#: instruments), 20 string-quartet movements, 13 piano, chamber and vocal pieces; the rest are
#: extras.
WORKS: tuple[str, ...] = (
    # Bach chorales (SATB, some with horn, cornett, oboe, trumpets and timpani, violin, recorders)
    "bach/bwv66.6.mxl",
    "bach/bwv1.6.mxl",
    "bach/bwv10.7.mxl",
    "bach/bwv101.7.mxl",
    "bach/bwv11.6.mxl",
    "bach/bwv110.7.mxl",
    "bach/bwv111.6.mxl",
    "bach/bwv112.5-sc.mxl",
    "bach/bwv12.7.mxl",
    "bach/bwv120.8-a.mxl",
    "bach/bwv123.6.mxl",
    "bach/bwv124.6.mxl",
    "bach/bwv126.6.mxl",
    "bach/bwv128.5.mxl",
    "bach/bwv136.6.mxl",
    "bach/bwv140.7.mxl",
    "bach/bwv145.5.mxl",
    "bach/bwv161.6.mxl",
    "bach/bwv17.7.mxl",
    "bach/bwv171.6.mxl",
    "bach/bwv172.6.mxl",
    "bach/bwv175.7.mxl",
    # string quartets
    "haydn/opus74no1/movement1.mxl",
    "haydn/opus74no1/movement2.mxl",
    "haydn/opus74no1/movement3.mxl",
    "haydn/opus74no1/movement4.mxl",
    "haydn/opus1no1/movement1.mxl",
    "haydn/opus1no1/movement3.mxl",
    "haydn/opus1no1/movement5.mxl",
    "mozart/k80/movement1.mxl",
    "mozart/k80/movement2.mxl",
    "mozart/k155/movement1.mxl",
    "mozart/k155/movement2.mxl",
    "mozart/k156/movement1.mxl",
    "mozart/k156/movement4.mxl",
    "mozart/k458/movement2.mxl",
    "mozart/k458/movement3.mxl",
    "beethoven/opus18no1/movement2.mxl",
    "beethoven/opus18no1/movement3.mxl",
    "beethoven/opus59no2/movement3.mxl",
    "beethoven/opus18no3.mxl",
    "schumann_robert/opus41no1/movement2.mxl",
    # piano, chamber and vocal works
    "mozart/k545/movement1_exposition.mxl",
    "joplin/maple_leaf_rag.mxl",
    "chopin/mazurka06-2.krn",
    "schumann_clara/polonaise_op1n1.mxl",
    "cpebach/h186.mxl",
    "schoenberg/opus19/movement2.mxl",
    "schoenberg/opus19/movement6.mxl",
    "schumann_clara/opus17/movement3.xml",
    "corelli/opus3no1/1grave.xml",
    "weber/concertino_clarinet.mxl",
    "schubert/Lindenbaum.xml",
    "beach/prayer_of_a_tired_child.musicxml",
    "liliuokalani/aloha_oe.mxl",
    # extras (exported only when corpus.music21_works > 55)
    "handel/rinaldo/Lascia_chio_pianga.mxl",
    "johnson_j_r/lift_every_voice.mxl",
    "webern/webern_dormi_jesu_op_16_no_2.mxl",
    "lusitano/allor_che_ignuda.mxl",
    "verdi/laDonnaEMobile.mxl",
    "schumann_clara/polonaise_op1n3.mxl",
    "mozart/k458/movement1.mxl",
    "beethoven/opus18no1/movement1.mxl",
    "mozart/k458/movement4.mxl",
)

TICKS_PER_QUARTER = 480
DEFAULT_BPM = 100.0
DEFAULT_VELOCITY = 80
DEFAULT_PROGRAM = 0  # Acoustic Grand Piano: parts we cannot name are keyboard parts in this list

#: Part name (first line, lower case) or instrument name -> General MIDI program (0-based).
#: The first pattern that matches wins, so specific names come before general ones
#: ("contrabass" before "bass", "english horn" before "horn"). Voices sing on 52 Choir Aahs,
#: except the chorale bass line (bass voice, basso continuo), which goes to 32 Acoustic Bass:
#: Bach's continuo doubled it, and it gives the LPD-5 bass family real bass lines. A named
#: contrabass or violone stays 43 Contrabass, which LPD-5 counts as strings.
PART_PROGRAMS: tuple[tuple[str, int], ...] = (
    (r"timpan|pauke", 47),  # Timpani
    (r"contrabass|double ?bass|kontrabass|contrabbasso|violone\b", 43),  # Contrabass
    (r"violoncell|\bcello|\bvc\b", 42),  # Cello
    (r"viola\b|\bvla\b|bratsche", 41),  # Viola
    (r"violin|violino|\bvln?\b", 40),  # Violin
    (r"piccolo", 72),  # Piccolo
    (r"flute|flauto|fl[oö]te|traverso", 73),  # Flute
    (r"recorder|blockfl", 74),  # Recorder
    (r"english horn|cor anglais|corno inglese|oboe da caccia", 69),  # English Horn
    (r"oboe|hautbois", 68),  # Oboe
    (r"clarinet|klarinette|clarinetto", 71),  # Clarinet
    (r"bassoon|fagott", 70),  # Bassoon
    (r"trumpet|tromba|trompete|clarino|cornet", 56),  # Trumpet (also the cornett)
    (r"trombone|posaune", 57),  # Trombone
    (r"tuba", 58),  # Tuba
    (r"horn|corno", 60),  # French Horn
    (r"harpsichord|cembalo|clavecin", 6),  # Harpsichord
    (r"organ|organo|orgel", 19),  # Church Organ
    (r"harp\b|harfe|arpa\b", 46),  # Orchestral Harp
    (r"guitar|gitarre|chitarra", 24),  # Nylon Guitar
    (r"piano|klavier|keyboard", 0),  # Acoustic Grand Piano
    (r"sopran|\bcanto\b|cantus|discant|superius|treble", 52),  # Choir Aahs
    (r"\balt(o|us|i)?\b|contratenor|countertenor", 52),
    (r"tenor", 52),
    (r"\bbass(o|us|e)?\b|continuo", 32),  # Acoustic Bass
    (r"voice|voce|gesang|singstimme|choir|chor\b|vocal", 52),
)

#: Dynamic mark -> velocity from that mark on (accents such as ``sf`` do not change the level).
DYNAMIC_VELOCITY: dict[str, int] = {
    "pppp": 24, "ppp": 32, "pp": 44, "p": 56, "mp": 68,
    "mf": 80, "f": 92, "ff": 104, "fff": 116, "ffff": 124,
}

_MAJOR_KEYS = ("Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#")
_MINOR_KEYS = ("Abm", "Ebm", "Bbm", "Fm", "Cm", "Gm", "Dm", "Am", "Em", "Bm", "F#m", "C#m", "G#m", "D#m", "A#m")
_PLACEHOLDER_NAMES = frozenset({"musicxml part", "part", "staff"})
_CHANNELS = tuple(c for c in range(16) if c != 9)
_COMPILED = tuple((re.compile(pattern), program) for pattern, program in PART_PROGRAMS)


@dataclass(frozen=True)
class Note:
    """One note in ticks: sounding from ``start`` up to, not including, ``end``."""

    start: int
    end: int
    pitch: int
    velocity: int


def work_filename(corpus_path: str) -> str:
    """File name of an exported work: ``m21_<slug>.mid``.

    Examples
    --------
    >>> work_filename("bach/bwv112.5-sc.mxl")
    'm21_bach_bwv112_5_sc.mid'
    """
    stem = corpus_path.rsplit(".", 1)[0] if "." in corpus_path.rsplit("/", 1)[-1] else corpus_path
    slug = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")
    return f"m21_{slug}.mid"


def program_for_part(name: str | None, instrument_name: str | None = None,
                     instrument_program: int | None = None) -> int:
    """General MIDI program (0-127) for a part, from :data:`PART_PROGRAMS`.

    The first line of the part name is tried first (score files carry wrong instrument
    objects more often than wrong names), then the instrument's name, then the program the
    file itself gives, then :data:`DEFAULT_PROGRAM`.

    Examples
    --------
    >>> program_for_part("Violoncello."), program_for_part("Bass"), program_for_part("Violone e Organo")
    (42, 32, 43)
    >>> program_for_part("MusicXML Part", "Choir")
    52
    """
    for text in (_first_line(name), _first_line(instrument_name)):
        if not text:
            continue
        for pattern, program in _COMPILED:
            if pattern.search(text.lower()):
                return program
    if instrument_program is not None and 0 <= instrument_program <= 127:
        return int(instrument_program)
    return DEFAULT_PROGRAM


def key_name(sharps: int, mode: str | None) -> str | None:
    """mido ``key_signature`` name for a number of sharps (negative: flats), or None if out of range."""
    if not -7 <= sharps <= 7:
        return None
    return (_MINOR_KEYS if mode == "minor" else _MAJOR_KEYS)[sharps + 7]


def parse_work(corpus_path: str) -> stream.Score:
    """Parse one work from music21's corpus (from source, no pickle cache), at sounding pitch."""
    from music21 import converter, corpus

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = converter.parse(corpus.getWork(corpus_path), forceSource=True, storePickle=False)
        if any(part.atSoundingPitch is False for part in score.parts):
            score = score.toSoundingPitch(inPlace=False)
    return score


def export_work(corpus_path: str) -> mido.MidiFile:
    """Parse ``corpus_path`` and build its MIDI file (see :func:`score_to_midi`)."""
    return score_to_midi(parse_work(corpus_path), name=corpus_path)


def score_to_midi(score: stream.Score, *, name: str) -> mido.MidiFile:
    """Build a type-1 MIDI file from a music21 score, deterministically.

    Parameters
    ----------
    score : music21.stream.Score
        Parsed score with at least one part; at most 15 parts (one channel each, skipping 10).
    name : str
        Conductor track name (the corpus path).

    Returns
    -------
    mido.MidiFile
        ``len(score.parts) + 1`` tracks at :data:`TICKS_PER_QUARTER` ticks per quarter note.
    """
    parts = list(score.parts)
    if not parts:
        raise ValueError(f"score {name!r} has no parts")
    if len(parts) > len(_CHANNELS):
        raise ValueError(f"score {name!r} has {len(parts)} parts; at most {len(_CHANNELS)} fit the non-drum channels")
    part_tracks = []
    end_tick = 0
    previous_dynamics: list[tuple[int, int]] = []
    for index, part in enumerate(parts):
        flat = part.flatten()
        dynamics = _dynamics(flat)
        if not dynamics and _is_part_staff(part) and index > 0 and _is_part_staff(parts[index - 1]):
            dynamics = previous_dynamics  # the left hand follows the right hand's marks
        previous_dynamics = dynamics
        notes = _notes(flat, dynamics)
        end_tick = max([end_tick] + [n.end for n in notes])
        instrument = part.getInstrument(returnDefault=False)
        program = program_for_part(
            part.partName,
            instrument.instrumentName if instrument is not None else None,
            instrument.midiProgram if instrument is not None else None,
        )
        track_name = _first_line(part.partName) or (instrument.instrumentName if instrument is not None else None)
        part_tracks.append((track_name or f"Part {index + 1}", program, _CHANNELS[index], notes))
    tracks = [_conductor_track(parts, name=name, end_tick=end_tick)]
    for track_name, program, channel, notes in part_tracks:
        tracks.append(note_track(track_name, channel, notes, end_tick, program=program))
    return midi_file(tracks, ticks_per_beat=TICKS_PER_QUARTER)


def _first_line(text: str | None) -> str | None:
    """First line of a part name; None for no name or an exporter's placeholder ("MusicXML Part")."""
    if not text:
        return None
    line = text.replace("\r", "\n").split("\n", 1)[0].strip()
    return None if line.lower() in _PLACEHOLDER_NAMES else line or None


def _is_part_staff(part: Any) -> bool:
    return "PartStaff" in part.classSet


def _ticks(quarter_length: Any) -> int:
    return int(round(quarter_length * TICKS_PER_QUARTER))


def _dynamics(flat: Any) -> list[tuple[int, int]]:
    from music21 import dynamics

    levels = []
    for mark in flat.getElementsByClass(dynamics.Dynamic):
        velocity = DYNAMIC_VELOCITY.get(str(mark.value))
        if velocity is not None:
            levels.append((_ticks(mark.offset), velocity))
    return sorted(levels, key=lambda item: item[0])


def _notes(flat: Any, dynamics: list[tuple[int, int]]) -> list[Note]:
    """Notes of one flattened part, ties merged per pitch, same-pitch overlaps resolved."""
    starts = [tick for tick, _ in dynamics]
    raw: list[list[int]] = []  # [start, end, pitch, velocity]
    open_ties: dict[int, int] = {}  # pitch -> index in raw of a note waiting for its tie
    for element in flat.notes:
        if "Harmony" in element.classSet or element.duration.isGrace:
            continue
        start = _ticks(element.offset)
        end = _ticks(element.offset + element.duration.quarterLength)
        if end <= start:
            continue
        at = bisect_right(starts, start) - 1
        velocity = dynamics[at][1] if at >= 0 else DEFAULT_VELOCITY
        members = element.notes if element.isChord else (element,)
        for member in members:
            pitch_obj = getattr(member, "pitch", None)
            if pitch_obj is None:  # unpitched percussion
                continue
            pitch = int(round(pitch_obj.ps))
            if not 0 <= pitch <= 127:
                continue
            tie = member.tie.type if member.tie is not None else None
            waiting = open_ties.get(pitch)
            if waiting is not None and tie in ("stop", "continue") and raw[waiting][1] == start:
                raw[waiting][1] = end
                if tie == "stop":
                    del open_ties[pitch]
                continue
            raw.append([start, end, pitch, velocity])
            if tie in ("start", "continue"):
                open_ties[pitch] = len(raw) - 1
            else:
                open_ties.pop(pitch, None)
    return resolve_overlaps(raw)


def resolve_overlaps(raw: list[list[int]] | list[tuple[int, int, int, int]]) -> list[Note]:
    """Sort ``[start, end, pitch, velocity]`` rows and make same-pitch notes disjoint.

    Two notes of one pitch that start together become one (the longer); a note still sounding
    when the same pitch starts again ends there. MIDI cannot tell such notes apart otherwise.
    """
    by_pitch: dict[int, list[list[int]]] = {}
    for start, end, pitch, velocity in sorted(raw, key=lambda r: (r[2], r[0], -r[1], -r[3])):
        rows = by_pitch.setdefault(pitch, [])
        if rows and rows[-1][0] == start:
            continue
        if rows and rows[-1][1] > start:
            rows[-1][1] = start
        rows.append([start, end, pitch, velocity])
    notes = [Note(*row) for rows in by_pitch.values() for row in rows]
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def _conductor_track(parts: list[Any], *, name: str, end_tick: int) -> mido.MidiTrack:
    from music21 import key, meter, tempo

    events: list[tuple[int, int, mido.MetaMessage]] = []
    # tempo: from the first part that carries MetronomeMarks; printed marks beat playback-only ones
    marks: dict[int, tuple[bool, float]] = {}
    for part in parts:
        found = list(part.flatten().getElementsByClass(tempo.MetronomeMark))
        if not found:
            continue
        for mark in found:
            bpm = mark.getQuarterBPM()
            if bpm is None or bpm <= 0:
                continue
            tick = _ticks(mark.offset)
            printed = mark.number is not None
            if tick not in marks or printed or not marks[tick][0]:
                marks[tick] = (printed, float(bpm))
        break
    if 0 not in marks:
        marks[0] = (False, DEFAULT_BPM)
    last_tempo = None
    for tick in sorted(marks):
        value = mido.bpm2tempo(marks[tick][1])
        if value != last_tempo:
            events.append((tick, 1, mido.MetaMessage("set_tempo", tempo=value)))
            last_tempo = value
    first = parts[0].flatten()
    signatures: dict[int, tuple[int, int]] = {}
    for ts in first.getElementsByClass(meter.TimeSignature):
        numerator, denominator = int(ts.numerator), int(ts.denominator)
        if 1 <= numerator <= 255 and denominator & (denominator - 1) == 0:
            signatures[_ticks(ts.offset)] = (numerator, denominator)
    pickup = _pickup(parts[0])
    if pickup is not None and 0 in signatures:  # a short first bar, then the score's meter
        pickup_ticks, pickup_signature = pickup
        signatures.setdefault(pickup_ticks, signatures[0])
        signatures[0] = pickup_signature
    last_ts = None
    for tick in sorted(signatures):
        if signatures[tick] != last_ts:
            last_ts = signatures[tick]
            events.append((tick, 2, time_signature(*last_ts)))
    last_key = None
    for signature in first.getElementsByClass(key.KeySignature):
        text = key_name(int(signature.sharps), getattr(signature, "mode", None))
        if text is None or text == last_key:
            continue
        last_key = text
        events.append((_ticks(signature.offset), 3, mido.MetaMessage("key_signature", key=text)))
    events.sort(key=lambda e: (e[0], e[1]))
    deduped: dict[tuple[int, int], mido.MetaMessage] = {}
    for tick, order, message in events:  # one event of a kind per tick: the last one wins
        deduped[(tick, order)] = message
    return track([(tick, order, message) for (tick, order), message in deduped.items()],
                 head=[mido.MetaMessage("track_name", name=name, time=0)], end=end_tick)


def _pickup(part: Any) -> tuple[int, tuple[int, int]] | None:
    """``(length in ticks, time signature)`` of an anacrusis bar, or None.

    The first bar of a score with a pickup is short (music21 gives it ``paddingLeft``); it is
    written as a bar of its own meter (``1/4`` for one beat in 4/4, ``3/8``...) so that the MIDI
    bar lines match the score's. None when the length is no whole number of 1/32 notes.
    """
    from fractions import Fraction

    from music21 import stream

    measure = part.getElementsByClass(stream.Measure).first()
    if measure is None or not measure.paddingLeft:
        return None
    length = Fraction(measure.barDuration.quarterLength) - Fraction(measure.paddingLeft)
    if length <= 0:
        return None
    for denominator in (4, 8, 16, 32):
        numerator = length * denominator / 4
        if numerator.denominator == 1 and 1 <= numerator <= 255:
            return _ticks(length), (int(numerator), denominator)
    return None


def time_signature(numerator: int, denominator: int) -> mido.MetaMessage:
    """A ``time_signature`` meta message; compound meters click on the dotted beat."""
    compound = denominator >= 8 and numerator % 3 == 0 and numerator > 3
    return mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator,
                            clocks_per_click=36 if compound else 24, notated_32nd_notes_per_beat=8)


def note_track(track_name: str, channel: int, notes: list[Note], end_tick: int, *,
               program: int | None) -> mido.MidiTrack:
    """A track: name, ``program_change`` at tick 0 (unless ``program`` is None), then the notes
    (note-offs before note-ons at one tick), then ``end_of_track`` at ``end_tick``."""
    head = [mido.MetaMessage("track_name", name=track_name, time=0)]
    if program is not None:
        head.append(mido.Message("program_change", channel=channel, program=program, time=0))
    events = [(n.end, (0, n.pitch, 0), mido.Message("note_off", channel=channel, note=n.pitch, velocity=0))
              for n in notes]
    events += [(n.start, (1, n.pitch, n.velocity),
                mido.Message("note_on", channel=channel, note=n.pitch, velocity=n.velocity)) for n in notes]
    return track(events, head=head, end=end_tick)
