"""Compiled kernels for Standard MIDI Files: a tolerant event scanner and the note pairing of
pretty_midi, both in numba so that a file costs microseconds, not the ~0.15 s of mido + pretty_midi.

The scanner follows mido 1.3 exactly on files mido accepts, and repairs what mido refuses
(each repair sets a bit in ``flags``; ``pipeline.io.midi`` turns the bits into words). The
pairing follows ``pretty_midi.PrettyMIDI._load_instruments`` exactly: one instrument per
(program at note-off, channel, track), notes in note-off order, a note-off closing every open
note of its key except those that started on the same tick, and the "straggler" rules that
decide which control changes and pitch bends count towards the end time.

Every array access is bounds-checked by hand: the input is untrusted.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# ---- event kinds -----------------------------------------------------------------------
K_NOTE_ON = 1
K_NOTE_OFF = 2
K_PROGRAM = 3
K_CONTROL = 4  # control change or pitch bend: only their times matter
K_TEMPO = 5  # a = microseconds per quarter note
K_TIMESIG = 6  # a = numerator, b = denominator
K_KEYSIG = 7  # a = sharps (signed), b = mode
K_TRACKNAME = 8  # a = offset of the text in the file, b = its length
K_TEXT = 9  # lyrics and text events: their times count towards the end time

# ---- repair flags (bit positions) --------------------------------------------------------
F_DATA_OVER_127 = 1 << 0  # data byte > 127 in a channel message: clipped to 127 (mido clip=True)
F_BAD_KEY_SIGNATURE = 1 << 1  # key signature mido cannot decode: dropped
F_BAD_META = 1 << 2  # tempo/time signature/smpte/... meta event too short or invalid: dropped
F_TRUNCATED = 1 << 3  # the data ends inside a chunk or an event: events before it kept
F_MISSING_TRACKS = 1 << 4  # fewer track chunks than the header declares
F_UNKNOWN_CHUNK = 1 << 5  # a non-MTrk chunk where a track was expected: skipped
F_RUNNING_STATUS = 1 << 6  # a data byte with no running status to apply: skipped
F_UNDEFINED_STATUS = 1 << 7  # status byte 0xF4/0xF5/0xF9/0xFD: skipped
F_CHUNK_OVERRUN = 1 << 8  # an event runs past the end of its track chunk: track ends there
F_LONG_VLQ = 1 << 9  # a variable-length quantity longer than 4 bytes
F_HEADER_LENGTH = 1 << 10  # MThd length is not 6
F_MISNAMED_TRACK = 1 << 11  # a chunk with a damaged id, and no MTrk after it: read as a track

# ---- fatal errors (returned in info[0]) ---------------------------------------------------
E_NONE = 0
E_NO_HEADER = 1
E_SHORT_HEADER = 2

INFO_SIZE = 8  # error, format, declared tracks, division, tracks read, flags, n_events, -


@njit(cache=True)
def _vlq(data, pos, end):
    """Read a variable-length quantity; returns (value, new_pos, n_bytes, ok)."""
    value = 0
    n = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        n += 1
        if n <= 8:
            value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos, n, True
    return value, pos, n, False


@njit(cache=True)
def scan_smf(data, start, ev_track, ev_tick, ev_kind, ev_ch, ev_a, ev_b, info):
    """Scan an SMF that begins at ``data[start]`` (the 'MThd' bytes).

    Fills the event arrays (capacity ``len(ev_tick)``, at least ``len(data) // 2 + 1``) and
    ``info``: [error, format, declared tracks, division, tracks read, flags, n_events].
    """
    n = data.shape[0]
    flags = 0
    info[0] = E_NONE
    if start + 14 > n:
        info[0] = E_SHORT_HEADER
        return
    hlen = (data[start + 4] << 24) | (data[start + 5] << 16) | (data[start + 6] << 8) | data[start + 7]
    fmt = (data[start + 8] << 8) | data[start + 9]
    ntracks = (data[start + 10] << 8) | data[start + 11]
    division = (data[start + 12] << 8) | data[start + 13]
    if division >= 0x8000:
        division -= 0x10000  # signed, as mido reads it: negative = SMPTE
    if hlen != 6:
        flags |= F_HEADER_LENGTH
    if hlen < 6:
        info[0] = E_SHORT_HEADER
        return
    pos = start + 8 + hlen
    cap = ev_tick.shape[0]
    ne = 0
    tracks_read = 0
    while tracks_read < ntracks:
        if pos + 8 > n:
            if pos < n:
                flags |= F_TRUNCATED
            flags |= F_MISSING_TRACKS
            break
        is_mtrk = data[pos] == 77 and data[pos + 1] == 84 and data[pos + 2] == 114 and data[pos + 3] == 107
        clen = (data[pos + 4] << 24) | (data[pos + 5] << 16) | (data[pos + 6] << 8) | data[pos + 7]
        if not is_mtrk:
            printable = True
            for i in range(4):
                c = data[pos + i]
                if c < 32 or c > 126:
                    printable = False
            if printable and pos + 8 + clen <= n:
                later = False
                for q in range(pos + 8, n - 3):
                    if data[q] == 77 and data[q + 1] == 84 and data[q + 2] == 114 and data[q + 3] == 107:
                        later = True
                        break
                if later:
                    flags |= F_UNKNOWN_CHUNK
                    pos += 8 + clen
                    continue
                flags |= F_MISNAMED_TRACK
                is_mtrk = True
        if not is_mtrk:
            # garbage: look for the next 'MTrk'
            flags |= F_UNKNOWN_CHUNK
            nxt = -1
            for q in range(pos + 1, n - 3):
                if data[q] == 77 and data[q + 1] == 84 and data[q + 2] == 114 and data[q + 3] == 107:
                    nxt = q
                    break
            if nxt < 0:
                flags |= F_MISSING_TRACKS
                break
            pos = nxt
            continue
        body = pos + 8
        end = body + clen
        overrun = F_CHUNK_OVERRUN
        if end > n:
            flags |= F_TRUNCATED
            overrun = F_TRUNCATED
            end = n
        track = tracks_read
        tracks_read += 1
        p = body
        tick = 0
        running = -1
        while p < end:
            delta, p, nb, ok = _vlq(data, p, end)
            if not ok:
                flags |= overrun
                break
            if nb > 4:
                flags |= F_LONG_VLQ
            tick += delta
            if p >= end:
                flags |= overrun
                break
            status = data[p]
            peek = -1
            if status < 0x80:
                if running < 0 or running >= 0xF0:
                    flags |= F_RUNNING_STATUS
                    p += 1
                    continue
                peek = status
                status = running
                p += 1
            else:
                p += 1
                if status != 0xFF:
                    running = status
            if status == 0xFF:
                if p >= end:
                    flags |= overrun
                    break
                mtype = data[p]
                p += 1
                mlen, p, nb, ok = _vlq(data, p, end)
                if not ok:
                    flags |= overrun
                    break
                if p + mlen > end:
                    flags |= overrun
                    break
                if ne >= cap:
                    break
                if mtype == 0x51:
                    if mlen < 3:
                        flags |= F_BAD_META
                    else:
                        tempo = (data[p] << 16) | (data[p + 1] << 8) | data[p + 2]
                        if tempo == 0:
                            flags |= F_BAD_META
                        else:
                            ev_track[ne] = track
                            ev_tick[ne] = tick
                            ev_kind[ne] = K_TEMPO
                            ev_ch[ne] = 0
                            ev_a[ne] = tempo
                            ev_b[ne] = 0
                            ne += 1
                elif mtype == 0x58:
                    if mlen < 4 or data[p] == 0 or data[p + 1] > 30:
                        flags |= F_BAD_META
                    else:
                        ev_track[ne] = track
                        ev_tick[ne] = tick
                        ev_kind[ne] = K_TIMESIG
                        ev_ch[ne] = 0
                        ev_a[ne] = data[p]
                        ev_b[ne] = 1 << data[p + 1]
                        ne += 1
                elif mtype == 0x59:
                    if mlen < 2:
                        flags |= F_BAD_META
                    else:
                        sf = data[p]
                        if sf >= 128:
                            sf -= 256
                        mode = data[p + 1]
                        if sf < -7 or sf > 7 or mode > 1:
                            flags |= F_BAD_KEY_SIGNATURE
                        else:
                            ev_track[ne] = track
                            ev_tick[ne] = tick
                            ev_kind[ne] = K_KEYSIG
                            ev_ch[ne] = 0
                            ev_a[ne] = sf
                            ev_b[ne] = mode
                            ne += 1
                elif mtype == 0x03:
                    ev_track[ne] = track
                    ev_tick[ne] = tick
                    ev_kind[ne] = K_TRACKNAME
                    ev_ch[ne] = 0
                    ev_a[ne] = p
                    ev_b[ne] = mlen
                    ne += 1
                elif mtype == 0x01 or mtype == 0x05:
                    ev_track[ne] = track
                    ev_tick[ne] = tick
                    ev_kind[ne] = K_TEXT
                    ev_ch[ne] = 0
                    ev_a[ne] = p
                    ev_b[ne] = mlen
                    ne += 1
                elif mtype == 0x00:
                    if mlen == 1:
                        flags |= F_BAD_META
                elif mtype == 0x20:
                    if mlen == 0 or data[p] > 15:
                        flags |= F_BAD_META
                elif mtype == 0x54:
                    if mlen < 5 or (data[p] >> 5) > 3 or data[p + 1] > 59 or data[p + 2] > 59 or data[p + 4] > 99:
                        flags |= F_BAD_META
                p += mlen
            elif status == 0xF0 or status == 0xF7:
                slen, p, nb, ok = _vlq(data, p, end)
                if not ok or p + slen > end:
                    flags |= overrun
                    break
                p += slen
            elif status >= 0xF0:
                # system common / real-time bytes inside a file
                if status == 0xF4 or status == 0xF5 or status == 0xF9 or status == 0xFD:
                    flags |= F_UNDEFINED_STATUS
                    continue
                if status == 0xF2:
                    nd = 2
                elif status == 0xF1 or status == 0xF3:
                    nd = 1
                else:
                    nd = 0
                if p + nd > end:
                    flags |= overrun
                    break
                p += nd
            else:
                hi = status & 0xF0
                ch = status & 0x0F
                nd = 1 if (hi == 0xC0 or hi == 0xD0) else 2
                if peek >= 0:
                    d0 = peek
                    need = nd - 1
                else:
                    need = nd
                    d0 = -1
                if p + need > end:
                    flags |= overrun
                    break
                if d0 < 0:
                    d0 = data[p]
                    p += 1
                    need -= 1
                d1 = 0
                if need > 0:
                    d1 = data[p]
                    p += 1
                if d0 > 127:
                    d0 = 127
                    flags |= F_DATA_OVER_127
                if d1 > 127:
                    d1 = 127
                    flags |= F_DATA_OVER_127
                if ne >= cap:
                    break
                kind = 0
                if hi == 0x90:
                    kind = K_NOTE_ON if d1 > 0 else K_NOTE_OFF
                elif hi == 0x80:
                    kind = K_NOTE_OFF
                elif hi == 0xC0:
                    kind = K_PROGRAM
                elif hi == 0xB0 or hi == 0xE0:
                    kind = K_CONTROL
                if kind != 0:
                    ev_track[ne] = track
                    ev_tick[ne] = tick
                    ev_kind[ne] = kind
                    ev_ch[ne] = ch
                    ev_a[ne] = d0
                    ev_b[ne] = d1
                    ne += 1
        pos = body + clen
    info[1] = fmt
    info[2] = ntracks
    info[3] = division
    info[4] = tracks_read
    info[5] = flags
    info[6] = ne


@njit(cache=True)
def pair_notes(ev_track, ev_tick, ev_kind, ev_ch, ev_a, ev_b, n_events,
               note_inst, note_pitch, note_vel, note_start, note_end,
               inst_program, inst_channel, inst_track, inst_name_ev, out):
    """pretty_midi's ``_load_instruments`` over scanned events.

    Writes notes (instrument index, pitch, velocity, start tick, end tick) in pretty_midi's order
    and instruments in creation order. ``out`` receives [n_notes, n_instruments, max counted
    control tick (or -1)].
    """
    n_notes = 0
    n_inst = 0
    max_ctrl = -1
    cap_nodes = n_events + 1
    node_start = np.empty(cap_nodes, np.int64)
    node_vel = np.empty(cap_nodes, np.int64)
    node_next = np.empty(cap_nodes, np.int64)
    head = np.full(16 * 128, -1, np.int64)
    tail = np.full(16 * 128, -1, np.int64)
    inst_of = np.full(128 * 16, -1, np.int64)
    program = np.zeros(16, np.int64)
    strag_exists = np.zeros(16, np.bool_)
    strag_adopted = np.zeros(16, np.bool_)
    strag_max = np.full(16, -1, np.int64)
    n_nodes = 0
    i = 0
    while i < n_events:
        track = ev_track[i]
        # reset per-track state
        head[:] = -1
        tail[:] = -1
        inst_of[:] = -1
        program[:] = 0
        strag_exists[:] = False
        strag_adopted[:] = False
        strag_max[:] = -1
        n_nodes = 0
        last_name = -1
        while i < n_events and ev_track[i] == track:
            kind = ev_kind[i]
            ch = ev_ch[i]
            if kind == K_TRACKNAME:
                last_name = i
            elif kind == K_PROGRAM:
                program[ch] = ev_a[i]
            elif kind == K_NOTE_ON:
                key = ch * 128 + ev_a[i]
                node_start[n_nodes] = ev_tick[i]
                node_vel[n_nodes] = ev_b[i]
                node_next[n_nodes] = -1
                if head[key] < 0:
                    head[key] = n_nodes
                else:
                    node_next[tail[key]] = n_nodes
                tail[key] = n_nodes
                n_nodes += 1
            elif kind == K_NOTE_OFF:
                key = ch * 128 + ev_a[i]
                if head[key] >= 0:
                    end_tick = ev_tick[i]
                    n_close = 0
                    keep_head = -1
                    keep_tail = -1
                    node = head[key]
                    while node >= 0:
                        nxt = node_next[node]
                        if node_start[node] != end_tick:
                            prog = program[ch]
                            ikey = prog * 16 + ch
                            inst = inst_of[ikey]
                            if inst < 0:
                                inst = n_inst
                                n_inst += 1
                                inst_of[ikey] = inst
                                inst_program[inst] = prog
                                inst_channel[inst] = ch
                                inst_track[inst] = track
                                inst_name_ev[inst] = last_name
                                if strag_exists[ch]:
                                    strag_adopted[ch] = True
                            note_inst[n_notes] = inst
                            note_pitch[n_notes] = ev_a[i]
                            note_vel[n_notes] = node_vel[node]
                            note_start[n_notes] = node_start[node]
                            note_end[n_notes] = end_tick
                            n_notes += 1
                            n_close += 1
                        else:
                            node_next[node] = -1
                            if keep_head < 0:
                                keep_head = node
                            else:
                                node_next[keep_tail] = node
                            keep_tail = node
                        node = nxt
                    if n_close > 0 and keep_head >= 0:
                        head[key] = keep_head
                        tail[key] = keep_tail
                    else:
                        head[key] = -1
                        tail[key] = -1
            elif kind == K_CONTROL:
                ikey = program[ch] * 16 + ch
                if inst_of[ikey] >= 0:
                    if ev_tick[i] > max_ctrl:
                        max_ctrl = ev_tick[i]
                else:
                    strag_exists[ch] = True
                    if ev_tick[i] > strag_max[ch]:
                        strag_max[ch] = ev_tick[i]
            i += 1
        for c in range(16):
            if strag_adopted[c] and strag_max[c] > max_ctrl:
                max_ctrl = strag_max[c]
    out[0] = n_notes
    out[1] = n_inst
    out[2] = max_ctrl


@njit(cache=True)
def _isclose(a, b):
    return a > b or abs(a - b) <= 1e-08 + 1e-05 * abs(b)


@njit(cache=True)
def _qpm_to_bpm(qpm, num, den):
    if den == 1 or den == 2 or den == 4 or den == 8 or den == 16 or den == 32:
        if num == 3:
            return qpm * den / 4.0
        elif num % 3 == 0:
            return qpm / 3.0 * den / 4.0
        else:
            return qpm * den / 4.0
    return qpm


@njit(cache=True)
def get_beats(start_time, tc_times, tempi, ts_times, ts_num, ts_den, end_time, max_beats):
    """pretty_midi ``PrettyMIDI.get_beats`` (time signatures sorted by time, stable).

    Returns the beat times, or an array of length ``max_beats + 1`` when there would be more
    (the caller refuses such a file before it spends memory on it).
    """
    n_tc = tc_times.shape[0]
    n_ts = ts_times.shape[0]
    beats = np.empty(max_beats + 2, np.float64)
    nb = 1
    beats[0] = start_time
    tempo_idx = 0
    while tempo_idx < n_tc - 1 and beats[nb - 1] > tc_times[tempo_idx + 1]:
        tempo_idx += 1
    ts_idx = 0
    while ts_idx < n_ts - 1 and beats[nb - 1] >= ts_times[ts_idx + 1]:
        ts_idx += 1

    while beats[nb - 1] < end_time:
        if nb > max_beats:
            return beats[: max_beats + 1]
        if n_ts > 0:
            bpm = _qpm_to_bpm(tempi[tempo_idx], ts_num[ts_idx], ts_den[ts_idx])
        else:
            bpm = tempi[tempo_idx]
        next_beat = beats[nb - 1] + 60.0 / bpm
        if tempo_idx < n_tc - 1 and next_beat > tc_times[tempo_idx + 1]:
            next_beat = beats[nb - 1]
            beat_remaining = 1.0
            while tempo_idx < n_tc - 1 and next_beat + beat_remaining * 60.0 / bpm >= tc_times[tempo_idx + 1]:
                overshot_ratio = (tc_times[tempo_idx + 1] - next_beat) / (60.0 / bpm)
                next_beat += overshot_ratio * 60.0 / bpm
                beat_remaining -= overshot_ratio
                tempo_idx = tempo_idx + 1
                if n_ts > 0:
                    bpm = _qpm_to_bpm(tempi[tempo_idx], ts_num[ts_idx], ts_den[ts_idx])
                else:
                    bpm = tempi[tempo_idx]
            next_beat += beat_remaining * 60.0 / bpm
        if n_ts > 0 and ts_idx == 0:
            current_ts_time = ts_times[ts_idx]
            if current_ts_time > beats[nb - 1] and _isclose(next_beat, current_ts_time):
                next_beat = current_ts_time
        if ts_idx < n_ts - 1:
            next_ts_time = ts_times[ts_idx + 1]
            if _isclose(next_beat, next_ts_time):
                next_beat = next_ts_time
                ts_idx += 1
        beats[nb] = next_beat
        nb += 1
    return beats[: nb - 1].copy()


@njit(cache=True)
def beat_start_score(beats, onset_idx, onset_vel, length):
    """Score of one candidate beat grid in pretty_midi's ``estimate_beat_start``.

    pretty_midi marks 25 ms windows around 0 and every beat on a 1 kHz signal of ``length``
    samples and sums the velocities of the note onsets (``int(start * 1000)``) that fall in a
    window. The same sum without the signal (memory stays bounded whatever the file's length):
    windows start in beat order, so an onset is covered when the widest window starting at or
    before it reaches past it.
    """
    fs = 1000.0
    tol = 0.025
    nbeats = beats.shape[0]
    lo = np.empty(nbeats + 1, np.int64)
    reach = np.empty(nbeats + 1, np.int64)  # running maximum of the window ends
    best = 0
    for j in range(nbeats + 1):
        beat = 0.0 if j == 0 else beats[j - 1]
        if beat - tol < 0:
            a = 0
            b = int((beat + tol) * fs)
        else:
            a = int((beat - tol) * fs)
            b = a + int(fs * tol * 2)
        if b > length:
            b = length
        if b > best:
            best = b
        lo[j] = a
        reach[j] = best
    total = 0.0
    for k in range(onset_idx.shape[0]):
        s = onset_idx[k]
        if s < 0 or s >= length:
            continue
        # number of windows starting at or before s (lo is non-decreasing)
        left = 0
        right = nbeats + 1
        while left < right:
            mid = (left + right) // 2
            if lo[mid] <= s:
                left = mid + 1
            else:
                right = mid
        if left > 0 and reach[left - 1] > s:
            total += onset_vel[k]
    return total / nbeats


@njit(cache=True)
def paint_rolls(n_steps, inst_of_note, pitch, vel, ons, offs, inst_is_drum, inst_family,
                lpd_semantics, out_fam, out_t, out_p, out_v):
    """Quantised notes -> per-instrument piano-rolls -> non-zero cells tagged with their family.

    Each instrument is painted on its own (n_steps, 128) scratch roll with the sequential,
    state-dependent rules of pypianoroll (the one-step gap before a repeated note, the offset
    pulled back when the next cell is taken, velocities by maximum; drums as onsets, last write
    wins); its cells are then emitted and the scratch cleared. Notes must be grouped by
    instrument in pretty_midi order. Returns the number of cells written, or -1 when the output
    arrays are too small (the caller retries with larger ones).
    """
    scratch = np.zeros((n_steps, 128), np.uint8)
    n_out = 0
    cap = out_t.shape[0]
    n = pitch.shape[0]
    # ranges touched by the current instrument, to emit and clear afterwards
    r_p = np.empty(n + 1, np.int64)
    r_lo = np.empty(n + 1, np.int64)
    r_hi = np.empty(n + 1, np.int64)
    i = 0
    while i < n:
        inst = inst_of_note[i]
        fam = inst_family[inst]
        drum = inst_is_drum[inst]
        n_r = 0
        while i < n and inst_of_note[i] == inst:
            p = pitch[i]
            v = vel[i]
            start = ons[i]
            if start < 0:
                start = 0
            if drum:
                if start < n_steps:
                    scratch[start, p] = v
                    r_p[n_r] = p
                    r_lo[n_r] = start
                    r_hi[n_r] = start + 1
                    n_r += 1
                i += 1
                continue
            if v < 1:
                i += 1
                continue
            if lpd_semantics:
                end = offs[i] + 1
            else:
                end = offs[i]
            if 0 < start < n_steps:
                if scratch[start - 1, p]:
                    scratch[start - 1, p] = 0
            if lpd_semantics:
                if end < n_steps - 1:
                    if scratch[end + 1, p]:
                        end -= 1
            else:
                if end < n_steps - 1:
                    if end >= 0 and scratch[end, p]:
                        end -= 1
            if end > n_steps:
                end = n_steps
            for t in range(start, end):
                if scratch[t, p] < v:
                    scratch[t, p] = v
            if end > start:
                r_p[n_r] = p
                r_lo[n_r] = start
                r_hi[n_r] = end
                n_r += 1
            i += 1
        # emit and clear
        for r in range(n_r):
            p = r_p[r]
            for t in range(r_lo[r], r_hi[r]):
                v = scratch[t, p]
                if v:
                    if n_out >= cap:
                        return -1
                    out_fam[n_out] = fam
                    out_t[n_out] = t
                    out_p[n_out] = p
                    out_v[n_out] = v
                    n_out += 1
                    scratch[t, p] = 0
    return n_out


@njit(cache=True)
def merge_cells(c_f, c_t, c_p, c_v, n, n_tracks, out_track, out_time, out_pitch, out_vel):
    """Merge painted cells of several instruments into their tracks by maximum velocity.

    A counting sort by (track, pitch), then a sort by time within each (track, pitch): the result
    is in CSC order (track, pitch, time) with one cell per (track, pitch, time). Returns the count.
    """
    n_buckets = n_tracks * 128
    starts = np.zeros(n_buckets + 1, np.int64)
    for i in range(n):
        starts[c_f[i] * 128 + c_p[i] + 1] += 1
    for b in range(n_buckets):
        starts[b + 1] += starts[b]
    pos = starts[:-1].copy()
    keys = np.empty(n, np.int64)
    for i in range(n):
        b = c_f[i] * 128 + c_p[i]
        keys[pos[b]] = c_t[i] * 256 + c_v[i]
        pos[b] += 1
    m = 0
    for b in range(n_buckets):
        lo = starts[b]
        hi = starts[b + 1]
        if hi == lo:
            continue
        seg = keys[lo:hi]
        seg.sort()
        prev = -1
        for k in range(hi - lo):
            t = seg[k] >> 8
            v = seg[k] & 255
            if t == prev:
                out_vel[m - 1] = v  # ascending velocities within a time: the last is the maximum
            else:
                out_track[m] = b // 128
                out_pitch[m] = b % 128
                out_time[m] = t
                out_vel[m] = v
                m += 1
                prev = t
    return m
