/* Compiled kernels of pipeline.io.smf_kernels (see that module for what each one means).
 *
 * Plain C over the buffers of numpy arrays: the Python wrappers in smf_kernels.py check dtypes,
 * contiguity and lengths, allocate the outputs and pass them here. Every read of the input
 * file is bounds-checked by hand: the input is untrusted. Floating-point code is compiled
 * without contraction (-ffp-contract=off) so that it rounds exactly as pretty_midi's Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <float.h>

/* ---- event kinds (smf_kernels.K_*) ---- */
#define K_NOTE_ON 1
#define K_NOTE_OFF 2
#define K_PROGRAM 3
#define K_CONTROL 4
#define K_TEMPO 5
#define K_TIMESIG 6
#define K_KEYSIG 7
#define K_TRACKNAME 8
#define K_TEXT 9

/* ---- repair flags (smf_kernels.F_*) ---- */
#define F_DATA_OVER_127 (1 << 0)
#define F_BAD_KEY_SIGNATURE (1 << 1)
#define F_BAD_META (1 << 2)
#define F_TRUNCATED (1 << 3)
#define F_MISSING_TRACKS (1 << 4)
#define F_UNKNOWN_CHUNK (1 << 5)
#define F_RUNNING_STATUS (1 << 6)
#define F_UNDEFINED_STATUS (1 << 7)
#define F_CHUNK_OVERRUN (1 << 8)
#define F_LONG_VLQ (1 << 9)
#define F_HEADER_LENGTH (1 << 10)
#define F_MISNAMED_TRACK (1 << 11)
#define F_EMPTY_TRACK (1 << 12)
#define F_EXTRA_TRACKS (1 << 13)
/* not a repair: a warning that pretty_midi times this file differently (mido 1.3 builds an
   UnknownMetaMessage without its delta time, so its ticks are lost for the rest of the track) */
#define W_MIDO_META_TIME (1 << 20)

#define E_NONE 0
#define E_NO_HEADER 1
#define E_SHORT_HEADER 2

#define INFO_SIZE 8

/* ------------------------------------------------------------------------------ scan_smf */

/* Read a variable-length quantity at *pos (< end); returns 1 when it ended inside the data. */
static int vlq(const uint8_t *data, int64_t *pos, int64_t end, int64_t *value, int64_t *nbytes)
{
    int64_t v = 0, n = 0, p = *pos;
    while (p < end) {
        int64_t byte = data[p++];
        n++;
        if (n <= 8)
            v = (v << 7) | (byte & 0x7F);
        if (byte < 0x80) {
            *pos = p; *value = v; *nbytes = n;
            return 1;
        }
    }
    *pos = p; *value = v; *nbytes = n;
    return 0;
}

static int is_mtrk_at(const uint8_t *d, int64_t q)
{
    return d[q] == 77 && d[q + 1] == 84 && d[q + 2] == 114 && d[q + 3] == 107;
}

static void scan_smf(const uint8_t *data, int64_t n, int64_t start, int32_t *ev_track, int64_t *ev_tick,
                     int8_t *ev_kind, int8_t *ev_ch, int32_t *ev_a, int32_t *ev_b, int64_t cap, int64_t *info)
{
    int64_t flags = 0;
    int64_t mido_lost_ticks = 0; /* ticks of unknown meta events, which mido reads as 0 */
    info[0] = E_NONE;
    if (start + 14 > n) {
        info[0] = E_SHORT_HEADER;
        return;
    }
    int64_t hlen = ((int64_t)data[start + 4] << 24) | ((int64_t)data[start + 5] << 16) |
                   ((int64_t)data[start + 6] << 8) | data[start + 7];
    int64_t fmt = ((int64_t)data[start + 8] << 8) | data[start + 9];
    int64_t ntracks = ((int64_t)data[start + 10] << 8) | data[start + 11];
    int64_t division = ((int64_t)data[start + 12] << 8) | data[start + 13];
    if (division >= 0x8000)
        division -= 0x10000; /* signed, as mido reads it: negative = SMPTE */
    if (hlen != 6)
        flags |= F_HEADER_LENGTH;
    if (hlen < 6) {
        info[0] = E_SHORT_HEADER;
        return;
    }
    int64_t pos = start + 8 + hlen;
    int64_t ne = 0;
    int64_t tracks_read = 0;
    /* the declared tracks, then any complete MTrk chunks that follow them (a header that
       under-declares its tracks; mido reads only the declared ones) */
    while (tracks_read < ntracks || (pos + 8 <= n && is_mtrk_at(data, pos))) {
        if (tracks_read >= ntracks)
            flags |= F_EXTRA_TRACKS;
        if (pos + 8 > n) {
            if (pos < n)
                flags |= F_TRUNCATED;
            flags |= F_MISSING_TRACKS;
            break;
        }
        int is_mtrk = is_mtrk_at(data, pos);
        int64_t clen = ((int64_t)data[pos + 4] << 24) | ((int64_t)data[pos + 5] << 16) |
                       ((int64_t)data[pos + 6] << 8) | data[pos + 7];
        if (!is_mtrk) {
            int printable = 1;
            for (int i = 0; i < 4; i++) {
                int c = data[pos + i];
                if (c < 32 || c > 126)
                    printable = 0;
            }
            if (printable && pos + 8 + clen <= n) {
                int later = 0;
                for (int64_t q = pos + 8; q < n - 3; q++) {
                    if (is_mtrk_at(data, q)) {
                        later = 1;
                        break;
                    }
                }
                if (later) {
                    flags |= F_UNKNOWN_CHUNK;
                    pos += 8 + clen;
                    continue;
                }
                flags |= F_MISNAMED_TRACK;
                is_mtrk = 1;
            }
        }
        if (!is_mtrk) {
            /* garbage: look for the next 'MTrk' */
            flags |= F_UNKNOWN_CHUNK;
            int64_t nxt = -1;
            for (int64_t q = pos + 1; q < n - 3; q++) {
                if (is_mtrk_at(data, q)) {
                    nxt = q;
                    break;
                }
            }
            if (nxt < 0) {
                flags |= F_MISSING_TRACKS;
                break;
            }
            pos = nxt;
            continue;
        }
        int64_t body = pos + 8;
        int64_t end = body + clen;
        int64_t overrun = F_CHUNK_OVERRUN;
        if (end > n) {
            flags |= F_TRUNCATED;
            overrun = F_TRUNCATED;
            end = n;
        }
        int64_t track = tracks_read;
        tracks_read++;
        int64_t p = body;
        int64_t tick = 0;
        int64_t running = -1;
        int got = 0; /* a complete message was read from this track */
        while (p < end) {
            int64_t delta, nb;
            if (!vlq(data, &p, end, &delta, &nb)) {
                flags |= overrun;
                break;
            }
            if (nb > 4)
                flags |= F_LONG_VLQ;
            tick += delta;
            if (p >= end) {
                flags |= overrun;
                break;
            }
            int64_t status = data[p];
            int64_t peek = -1;
            if (status < 0x80) {
                if (running < 0 || running >= 0xF0) {
                    flags |= F_RUNNING_STATUS;
                    p += 1;
                    continue;
                }
                peek = status;
                status = running;
                p += 1;
            } else {
                p += 1;
                if (status != 0xFF)
                    running = status;
            }
            if (status == 0xFF) {
                if (p >= end) {
                    flags |= overrun;
                    break;
                }
                int64_t mtype = data[p];
                p += 1;
                int64_t mlen;
                if (!vlq(data, &p, end, &mlen, &nb)) {
                    flags |= overrun;
                    break;
                }
                if (p + mlen > end) {
                    flags |= overrun;
                    break;
                }
                if (ne >= cap)
                    break;
                if (mtype == 0x51) {
                    if (mlen < 3) {
                        flags |= F_BAD_META;
                    } else {
                        int64_t tempo = ((int64_t)data[p] << 16) | ((int64_t)data[p + 1] << 8) | data[p + 2];
                        if (tempo == 0) {
                            flags |= F_BAD_META;
                        } else {
                            ev_track[ne] = (int32_t)track; ev_tick[ne] = tick; ev_kind[ne] = K_TEMPO;
                            ev_ch[ne] = 0; ev_a[ne] = (int32_t)tempo; ev_b[ne] = 0;
                            ne++;
                        }
                    }
                } else if (mtype == 0x58) {
                    if (mlen < 4 || data[p] == 0 || data[p + 1] > 30) {
                        flags |= F_BAD_META;
                    } else {
                        ev_track[ne] = (int32_t)track; ev_tick[ne] = tick; ev_kind[ne] = K_TIMESIG;
                        ev_ch[ne] = 0; ev_a[ne] = data[p]; ev_b[ne] = (int32_t)(1 << data[p + 1]);
                        ne++;
                    }
                } else if (mtype == 0x59) {
                    if (mlen < 2) {
                        flags |= F_BAD_META;
                    } else {
                        int64_t sf = data[p];
                        if (sf >= 128)
                            sf -= 256;
                        int64_t mode = data[p + 1];
                        if (sf < -7 || sf > 7 || mode > 1) {
                            flags |= F_BAD_KEY_SIGNATURE;
                        } else {
                            ev_track[ne] = (int32_t)track; ev_tick[ne] = tick; ev_kind[ne] = K_KEYSIG;
                            ev_ch[ne] = 0; ev_a[ne] = (int32_t)sf; ev_b[ne] = (int32_t)mode;
                            ne++;
                        }
                    }
                } else if (mtype == 0x03) {
                    ev_track[ne] = (int32_t)track; ev_tick[ne] = tick; ev_kind[ne] = K_TRACKNAME;
                    ev_ch[ne] = 0; ev_a[ne] = (int32_t)p; ev_b[ne] = (int32_t)mlen;
                    ne++;
                } else if (mtype == 0x01 || mtype == 0x05) {
                    ev_track[ne] = (int32_t)track; ev_tick[ne] = tick; ev_kind[ne] = K_TEXT;
                    ev_ch[ne] = 0; ev_a[ne] = (int32_t)p; ev_b[ne] = (int32_t)mlen;
                    ne++;
                } else if (mtype == 0x00) {
                    if (mlen == 1)
                        flags |= F_BAD_META;
                } else if (mtype == 0x20) {
                    if (mlen == 0 || data[p] > 15)
                        flags |= F_BAD_META;
                } else if (mtype == 0x54) {
                    if (mlen < 5 || (data[p] >> 5) > 3 || data[p + 1] > 59 || data[p + 2] > 59 || data[p + 4] > 99)
                        flags |= F_BAD_META;
                }
                /* meta types mido 1.3 knows: 0x00-0x07, 0x09, 0x20, 0x21, 0x2F, 0x51, 0x54, 0x58,
                   0x59, 0x7F; any other loses its delta time in mido */
                if (delta > 0 && !(mtype <= 0x07 || mtype == 0x09 || mtype == 0x20 || mtype == 0x21 ||
                                   mtype == 0x2F || mtype == 0x51 || mtype == 0x54 || mtype == 0x58 ||
                                   mtype == 0x59 || mtype == 0x7F)) {
                    flags |= W_MIDO_META_TIME;
                    mido_lost_ticks += delta;
                }
                p += mlen;
            } else if (status == 0xF0 || status == 0xF7) {
                int64_t slen;
                int ok = vlq(data, &p, end, &slen, &nb);
                if (!ok || p + slen > end) {
                    flags |= overrun;
                    break;
                }
                p += slen;
            } else if (status >= 0xF0) {
                /* system common / real-time bytes inside a file */
                if (status == 0xF4 || status == 0xF5 || status == 0xF9 || status == 0xFD) {
                    flags |= F_UNDEFINED_STATUS;
                    continue;
                }
                int64_t nd;
                if (status == 0xF2)
                    nd = 2;
                else if (status == 0xF1 || status == 0xF3)
                    nd = 1;
                else
                    nd = 0;
                if (p + nd > end) {
                    flags |= overrun;
                    break;
                }
                p += nd;
            } else {
                int64_t hi = status & 0xF0;
                int64_t ch = status & 0x0F;
                int64_t nd = (hi == 0xC0 || hi == 0xD0) ? 1 : 2;
                int64_t need, d0;
                if (peek >= 0) {
                    d0 = peek;
                    need = nd - 1;
                } else {
                    need = nd;
                    d0 = -1;
                }
                if (p + need > end) {
                    flags |= overrun;
                    break;
                }
                if (d0 < 0) {
                    d0 = data[p];
                    p += 1;
                    need -= 1;
                }
                int64_t d1 = 0;
                if (need > 0) {
                    d1 = data[p];
                    p += 1;
                }
                if (d0 > 127) {
                    d0 = 127;
                    flags |= F_DATA_OVER_127;
                }
                if (d1 > 127) {
                    d1 = 127;
                    flags |= F_DATA_OVER_127;
                }
                if (ne >= cap)
                    break;
                int kind = 0;
                if (hi == 0x90)
                    kind = d1 > 0 ? K_NOTE_ON : K_NOTE_OFF;
                else if (hi == 0x80)
                    kind = K_NOTE_OFF;
                else if (hi == 0xC0)
                    kind = K_PROGRAM;
                else if (hi == 0xB0 || hi == 0xE0)
                    kind = K_CONTROL;
                if (kind != 0) {
                    ev_track[ne] = (int32_t)track; ev_tick[ne] = tick; ev_kind[ne] = (int8_t)kind;
                    ev_ch[ne] = (int8_t)ch; ev_a[ne] = (int32_t)d0; ev_b[ne] = (int32_t)d1;
                    ne++;
                }
            }
            got = 1;
        }
        if (!got)
            flags |= F_EMPTY_TRACK; /* mido gives an empty track, on which pretty_midi fails */
        pos = body + clen;
    }
    info[1] = fmt;
    info[2] = ntracks;
    info[3] = division;
    info[4] = tracks_read;
    info[5] = flags;
    info[6] = ne;
    info[7] = mido_lost_ticks;
}

/* ---------------------------------------------------------------------------- pair_notes */

/* Returns 0, or -1 when out of memory. */
/* Returns 0; -1 out of memory; -3 when more notes than note_cap or instruments than inst_cap. */
static int pair_notes(const int32_t *ev_track, const int64_t *ev_tick, const int8_t *ev_kind, const int8_t *ev_ch,
                      const int32_t *ev_a, const int32_t *ev_b, int64_t n_events,
                      int64_t *note_inst, int64_t *note_pitch, int64_t *note_vel, int64_t *note_start,
                      int64_t *note_end, int64_t note_cap, int64_t *inst_program, int64_t *inst_channel,
                      int64_t *inst_track, int64_t *inst_name_ev, int64_t inst_cap, int64_t *out)
{
    int64_t n_notes = 0, n_inst = 0, max_ctrl = -1;
    int64_t cap_nodes = n_events + 1;
    int64_t *node_start = malloc(sizeof(int64_t) * cap_nodes);
    int64_t *node_vel = malloc(sizeof(int64_t) * cap_nodes);
    int64_t *node_next = malloc(sizeof(int64_t) * cap_nodes);
    if (!node_start || !node_vel || !node_next) {
        free(node_start); free(node_vel); free(node_next);
        return -1;
    }
    int64_t head[16 * 128], tail[16 * 128], inst_of[128 * 16], program[16], strag_max[16];
    char strag_exists[16], strag_adopted[16];
    /* keys set in the current track, to reset only those when the next track starts */
    int16_t used_keys[16 * 128], used_ikeys[128 * 16];
    char key_used[16 * 128];
    int64_t n_used_keys = 0, n_used_ikeys = 0;
    for (int k = 0; k < 16 * 128; k++) {
        head[k] = -1; tail[k] = -1; inst_of[k] = -1; key_used[k] = 0;
    }
    int64_t i = 0;
    while (i < n_events) {
        int64_t track = ev_track[i];
        /* reset per-track state */
        for (int64_t k = 0; k < n_used_keys; k++) {
            head[used_keys[k]] = -1; tail[used_keys[k]] = -1; key_used[used_keys[k]] = 0;
        }
        for (int64_t k = 0; k < n_used_ikeys; k++)
            inst_of[used_ikeys[k]] = -1;
        n_used_keys = 0;
        n_used_ikeys = 0;
        for (int c = 0; c < 16; c++) {
            program[c] = 0; strag_exists[c] = 0; strag_adopted[c] = 0; strag_max[c] = -1;
        }
        int64_t n_nodes = 0;
        int64_t last_name = -1;
        while (i < n_events && ev_track[i] == track) {
            int kind = ev_kind[i];
            int64_t ch = ev_ch[i];
            if (kind == K_TRACKNAME) {
                last_name = i;
            } else if (kind == K_PROGRAM) {
                program[ch] = ev_a[i];
            } else if (kind == K_NOTE_ON) {
                int64_t key = ch * 128 + ev_a[i];
                node_start[n_nodes] = ev_tick[i];
                node_vel[n_nodes] = ev_b[i];
                node_next[n_nodes] = -1;
                if (!key_used[key]) {
                    key_used[key] = 1;
                    used_keys[n_used_keys++] = (int16_t)key;
                }
                if (head[key] < 0)
                    head[key] = n_nodes;
                else
                    node_next[tail[key]] = n_nodes;
                tail[key] = n_nodes;
                n_nodes++;
            } else if (kind == K_NOTE_OFF) {
                int64_t key = ch * 128 + ev_a[i];
                if (head[key] >= 0) {
                    int64_t end_tick = ev_tick[i];
                    int64_t n_close = 0, keep_head = -1, keep_tail = -1;
                    int64_t node = head[key];
                    while (node >= 0) {
                        int64_t nxt = node_next[node];
                        if (node_start[node] != end_tick) {
                            int64_t prog = program[ch];
                            int64_t ikey = prog * 16 + ch;
                            int64_t inst = inst_of[ikey];
                            if (inst < 0) {
                                if (n_inst >= inst_cap) {
                                    free(node_start); free(node_vel); free(node_next);
                                    return -3;
                                }
                                inst = n_inst++;
                                inst_of[ikey] = inst;
                                used_ikeys[n_used_ikeys++] = (int16_t)ikey;
                                inst_program[inst] = prog;
                                inst_channel[inst] = ch;
                                inst_track[inst] = track;
                                inst_name_ev[inst] = last_name;
                                if (strag_exists[ch])
                                    strag_adopted[ch] = 1;
                            }
                            if (n_notes >= note_cap) {
                                free(node_start); free(node_vel); free(node_next);
                                return -3;
                            }
                            note_inst[n_notes] = inst;
                            note_pitch[n_notes] = ev_a[i];
                            note_vel[n_notes] = node_vel[node];
                            note_start[n_notes] = node_start[node];
                            note_end[n_notes] = end_tick;
                            n_notes++;
                            n_close++;
                        } else {
                            node_next[node] = -1;
                            if (keep_head < 0)
                                keep_head = node;
                            else
                                node_next[keep_tail] = node;
                            keep_tail = node;
                        }
                        node = nxt;
                    }
                    if (n_close > 0 && keep_head >= 0) {
                        head[key] = keep_head;
                        tail[key] = keep_tail;
                    } else {
                        head[key] = -1;
                        tail[key] = -1;
                    }
                }
            } else if (kind == K_CONTROL) {
                int64_t ikey = program[ch] * 16 + ch;
                if (inst_of[ikey] >= 0) {
                    if (ev_tick[i] > max_ctrl)
                        max_ctrl = ev_tick[i];
                } else {
                    strag_exists[ch] = 1;
                    if (ev_tick[i] > strag_max[ch])
                        strag_max[ch] = ev_tick[i];
                }
            }
            i++;
        }
        for (int c = 0; c < 16; c++) {
            if (strag_adopted[c] && strag_max[c] > max_ctrl)
                max_ctrl = strag_max[c];
        }
    }
    out[0] = n_notes;
    out[1] = n_inst;
    out[2] = max_ctrl;
    free(node_start); free(node_vel); free(node_next);
    return 0;
}

/* ----------------------------------------------------------------------------- get_beats */

static int isclose_or_greater(double a, double b)
{
    return a > b || fabs(a - b) <= 1e-08 + 1e-05 * fabs(b);
}

static double qpm_to_bpm(double qpm, int64_t num, int64_t den)
{
    if (den == 1 || den == 2 || den == 4 || den == 8 || den == 16 || den == 32) {
        if (num == 3)
            return qpm * (double)den / 4.0;
        else if (num % 3 == 0)
            return qpm / 3.0 * (double)den / 4.0;
        else
            return qpm * (double)den / 4.0;
    }
    return qpm;
}

/* pretty_midi get_beats into beats (capacity max_beats + 2); returns the count, or
 * max_beats + 1 when there would be more. */
static int64_t get_beats(double start_time, const double *tc_times, const double *tempi, int64_t n_tc,
                         const double *ts_times, const int64_t *ts_num, const int64_t *ts_den, int64_t n_ts,
                         double end_time, int64_t max_beats, double *beats)
{
    int64_t nb = 1;
    beats[0] = start_time;
    int64_t tempo_idx = 0;
    while (tempo_idx < n_tc - 1 && beats[nb - 1] > tc_times[tempo_idx + 1])
        tempo_idx++;
    int64_t ts_idx = 0;
    while (ts_idx < n_ts - 1 && beats[nb - 1] >= ts_times[ts_idx + 1])
        ts_idx++;

    while (beats[nb - 1] < end_time) {
        if (nb > max_beats)
            return max_beats + 1;
        double bpm;
        if (n_ts > 0)
            bpm = qpm_to_bpm(tempi[tempo_idx], ts_num[ts_idx], ts_den[ts_idx]);
        else
            bpm = tempi[tempo_idx];
        double next_beat = beats[nb - 1] + 60.0 / bpm;
        if (tempo_idx < n_tc - 1 && next_beat > tc_times[tempo_idx + 1]) {
            next_beat = beats[nb - 1];
            double beat_remaining = 1.0;
            while (tempo_idx < n_tc - 1 && next_beat + beat_remaining * 60.0 / bpm >= tc_times[tempo_idx + 1]) {
                double overshot_ratio = (tc_times[tempo_idx + 1] - next_beat) / (60.0 / bpm);
                next_beat += overshot_ratio * 60.0 / bpm;
                beat_remaining -= overshot_ratio;
                tempo_idx = tempo_idx + 1;
                if (n_ts > 0)
                    bpm = qpm_to_bpm(tempi[tempo_idx], ts_num[ts_idx], ts_den[ts_idx]);
                else
                    bpm = tempi[tempo_idx];
            }
            next_beat += beat_remaining * 60.0 / bpm;
        }
        if (n_ts > 0 && ts_idx == 0) {
            double current_ts_time = ts_times[ts_idx];
            if (current_ts_time > beats[nb - 1] && isclose_or_greater(next_beat, current_ts_time))
                next_beat = current_ts_time;
        }
        if (ts_idx < n_ts - 1) {
            double next_ts_time = ts_times[ts_idx + 1];
            if (isclose_or_greater(next_beat, next_ts_time)) {
                next_beat = next_ts_time;
                ts_idx++;
            }
        }
        beats[nb] = next_beat;
        nb++;
    }
    return nb - 1;
}

/* ---------------------------------------------------------------------- beat_start_score */

/* Returns the score, or NAN with *oom set when out of memory. */
static double beat_start_score(const double *beats, int64_t nbeats, const int64_t *onset_idx,
                               const double *onset_vel, int64_t n_onsets, int64_t length, int *oom)
{
    const double fs = 1000.0;
    const double tol = 0.025;
    int64_t *lo = malloc(sizeof(int64_t) * (nbeats + 1));
    int64_t *reach = malloc(sizeof(int64_t) * (nbeats + 1)); /* running maximum of the window ends */
    if (!lo || !reach) {
        free(lo); free(reach);
        *oom = 1;
        return NAN;
    }
    int64_t best = 0;
    for (int64_t j = 0; j < nbeats + 1; j++) {
        double beat = j == 0 ? 0.0 : beats[j - 1];
        int64_t a, b;
        if (beat - tol < 0) {
            a = 0;
            b = (int64_t)((beat + tol) * fs);
        } else {
            a = (int64_t)((beat - tol) * fs);
            b = a + (int64_t)(fs * tol * 2);
        }
        if (b > length)
            b = length;
        if (b > best)
            best = b;
        lo[j] = a;
        reach[j] = best;
    }
    double total = 0.0;
    for (int64_t k = 0; k < n_onsets; k++) {
        int64_t s = onset_idx[k];
        if (s < 0 || s >= length)
            continue;
        /* number of windows starting at or before s (lo is non-decreasing) */
        int64_t left = 0, right = nbeats + 1;
        while (left < right) {
            int64_t mid = (left + right) / 2;
            if (lo[mid] <= s)
                left = mid + 1;
            else
                right = mid;
        }
        if (left > 0 && reach[left - 1] > s)
            total += onset_vel[k];
    }
    free(lo); free(reach);
    return total / (double)nbeats;
}

/* --------------------------------------------------------------------------- paint_tracks */

/* Per-thread piano-roll buffers, kept all zero between calls (every painted cell is cleared
 * when it is emitted), so a song costs no allocation and no page faults. Buffers over
 * KEEP_BYTES are freed after the call (a hostile file's giant roll is not held), and the
 * buffers of a thread are freed when the thread ends. */
#include <pthread.h>

#define KEEP_BYTES ((size_t)64 << 20)

typedef struct {
    int64_t p, lo, hi; /* cells [lo, hi) of pitch p, painted by one note */
} Range;

typedef struct {
    uint8_t *buf[2];
    size_t cap[2];
} Rolls;

static pthread_key_t rolls_key;
static pthread_once_t rolls_once = PTHREAD_ONCE_INIT;

static void rolls_free(void *ptr)
{
    Rolls *r = ptr;
    if (r) {
        free(r->buf[0]);
        free(r->buf[1]);
        free(r);
    }
}

static void rolls_key_init(void)
{
    pthread_key_create(&rolls_key, rolls_free);
}

/* A zeroed buffer of at least `size` bytes (slot 0: the instrument, 1: the track), or NULL. */
static uint8_t *zeroed_roll(int slot, size_t size)
{
    pthread_once(&rolls_once, rolls_key_init);
    Rolls *r = pthread_getspecific(rolls_key);
    if (!r) {
        r = calloc(1, sizeof(Rolls));
        if (!r || pthread_setspecific(rolls_key, r) != 0) {
            free(r);
            return NULL;
        }
    }
    if (r->cap[slot] < size) {
        free(r->buf[slot]);
        r->buf[slot] = calloc(size, 1);
        r->cap[slot] = r->buf[slot] ? size : 0;
    }
    return r->buf[slot];
}

/* After a call: drop the buffers when they are big, or when `dirty` (an early exit left
 * painted cells in them). */
static void release_rolls(int dirty)
{
    pthread_once(&rolls_once, rolls_key_init);
    Rolls *r = pthread_getspecific(rolls_key);
    if (!r)
        return;
    for (int slot = 0; slot < 2; slot++) {
        if (dirty || r->cap[slot] > KEEP_BYTES) {
            free(r->buf[slot]);
            r->buf[slot] = NULL;
            r->cap[slot] = 0;
        }
    }
}

/* Emit the non-zero cells of row[lo:hi) as cells of (track, pitch) and clear them, skipping
 * zero runs eight bytes at a time. Returns the new count, or -1 when it would pass cap. */
#define EMIT(tt)                                                                                           \
    do {                                                                                                   \
        uint8_t v_ = row[tt];                                                                              \
        if (v_) {                                                                                          \
            if (m >= cap)                                                                                  \
                return -1;                                                                                 \
            out_track[m] = track; out_time[m] = (int32_t)(tt); out_pitch[m] = p; out_vel[m] = v_;          \
            m++;                                                                                           \
            row[tt] = 0;                                                                                   \
        }                                                                                                  \
    } while (0)

static int64_t emit_row(uint8_t *row, int64_t lo, int64_t hi, uint8_t track, uint8_t p, uint8_t *out_track,
                        int32_t *out_time, uint8_t *out_pitch, uint8_t *out_vel, int64_t m, int64_t cap)
{
    int64_t t = lo;
    for (; t + 8 <= hi; t += 8) {
        uint64_t w;
        memcpy(&w, row + t, 8);
        if (w == 0)
            continue;
        for (int k = 0; k < 8; k++)
            EMIT(t + k);
    }
    for (; t < hi; t++)
        EMIT(t);
    return m;
}
#undef EMIT

/* Quantised notes -> per-instrument piano-rolls -> tracks merged by maximum velocity.
 *
 * Each instrument is painted on its own pitch-major (128, n_steps) roll with the sequential,
 * state-dependent rules of pypianoroll (the one-step gap before a repeated note, the offset
 * pulled back when the next cell is taken, velocities by maximum; drums as onsets, last write
 * wins). The instruments of a track are folded into the track's roll by maximum, and the
 * track's non-zero cells are emitted pitch by pitch, block by block over the 64-step blocks
 * that were painted: (pitch, time) order, the order of a CSC matrix. Notes must be grouped by instrument in
 * pretty_midi order.
 *
 * Returns the number of cells written; -1 when the instruments' rolls hold more than ``cap``
 * non-zero cells before merging (the outputs hold ``cap``), which bounds the work and memory a
 * hostile file gets; -2 out of memory. */
static int64_t paint_tracks(int64_t n_steps, const int64_t *inst_of_note, const int64_t *pitch, const int64_t *vel,
                            const int64_t *ons, const int64_t *offs, int64_t n, const uint8_t *inst_is_drum,
                            const int64_t *inst_family, int64_t n_inst, int64_t n_tracks, int lpd_semantics,
                            uint8_t *out_track, int32_t *out_time, uint8_t *out_pitch, uint8_t *out_vel, int64_t cap)
{
    int64_t result = 0;
    int dirty = 0;
    uint8_t *scratch = NULL, *acc = NULL;
    Range *ranges = NULL;
    int64_t *first_note = NULL, *last_note = NULL, *members = NULL;
    /* blocks of 64 steps painted in each pitch row of the track (a bit per block): emission
     * scans only these, whatever the span of a pitch */
    int64_t n_blocks = (n_steps + 63) / 64, words = (n_blocks + 63) / 64;
    uint64_t *touched = NULL;
    size_t roll = (size_t)n_steps * 128;
    scratch = zeroed_roll(0, roll ? roll : 1);
    touched = calloc((size_t)(128 * words + 1), sizeof(uint64_t));
    ranges = malloc(sizeof(Range) * (n + 1));
    first_note = malloc(sizeof(int64_t) * (n_inst + 1));
    last_note = malloc(sizeof(int64_t) * (n_inst + 1));
    members = calloc(n_tracks + 1, sizeof(int64_t));
    if (!scratch || !touched || !ranges || !first_note || !last_note || !members) {
        result = -2;
        goto done;
    }
    for (int64_t k = 0; k < n_inst; k++) {
        first_note[k] = -1;
        last_note[k] = -1;
    }
    for (int64_t k = 0; k < n; k++) {
        int64_t i = inst_of_note[k];
        if (first_note[i] < 0)
            first_note[i] = k;
        last_note[i] = k + 1;
    }
    for (int64_t i = 0; i < n_inst; i++) {
        if (first_note[i] >= 0 && inst_family[i] >= 0 && inst_family[i] < n_tracks)
            members[inst_family[i]]++;
    }
    int64_t m = 0;
    int64_t painted = 0; /* non-zero cells of the instruments' rolls, before merging: at most cap */
    for (int64_t f = 0; f < n_tracks; f++) {
        if (members[f] == 0)
            continue;
        uint8_t *track_roll = scratch;
        if (members[f] > 1) {
            if (!acc) {
                acc = zeroed_roll(1, roll ? roll : 1);
                if (!acc) {
                    result = -2;
                    goto done;
                }
            }
            track_roll = acc;
        }
        for (int64_t inst = 0; inst < n_inst; inst++) {
            if (inst_family[inst] != f || first_note[inst] < 0)
                continue;
            int drum = inst_is_drum[inst];
            int64_t n_r = 0;
            dirty = 1;
            for (int64_t i = first_note[inst]; i < last_note[inst]; i++) {
                int64_t p = pitch[i];
                int64_t v = vel[i];
                uint8_t *row = scratch + (size_t)p * n_steps;
                int64_t start = ons[i];
                if (start < 0)
                    start = 0;
                int64_t end;
                if (drum) {
                    if (start >= n_steps)
                        continue;
                    row[start] = (uint8_t)v;
                    end = start + 1;
                } else {
                    if (v < 1)
                        continue;
                    end = lpd_semantics ? offs[i] + 1 : offs[i];
                    if (0 < start && start < n_steps) {
                        if (row[start - 1])
                            row[start - 1] = 0;
                    }
                    if (lpd_semantics) {
                        if (end < n_steps - 1 && end + 1 >= 0 && row[end + 1])
                            end -= 1;
                    } else {
                        if (end < n_steps - 1 && end >= 0 && row[end])
                            end -= 1;
                    }
                    if (end > n_steps)
                        end = n_steps;
                    for (int64_t t = start; t < end; t++) {
                        if (row[t] < v)
                            row[t] = (uint8_t)v;
                    }
                    if (end <= start)
                        continue;
                }
                ranges[n_r].p = p; ranges[n_r].lo = start; ranges[n_r].hi = end;
                n_r++;
                uint64_t *bits = touched + p * words;
                for (int64_t b = start >> 6; b <= (end - 1) >> 6; b++)
                    bits[b >> 6] |= (uint64_t)1 << (b & 63);
            }
            if (track_roll == scratch)
                continue; /* a track of one instrument: its cells are counted as they are emitted */
            /* a shared track: fold the instrument's cells into it by maximum, count them (the
             * bound on work) and clear the instrument's roll */
            for (int64_t r = 0; r < n_r; r++) {
                uint8_t *row = scratch + (size_t)ranges[r].p * n_steps;
                uint8_t *dst = acc + (size_t)ranges[r].p * n_steps;
                for (int64_t t = ranges[r].lo; t < ranges[r].hi; t++) {
                    uint8_t v = row[t];
                    if (!v)
                        continue;
                    if (++painted > cap) {
                        result = -1;
                        goto done;
                    }
                    if (dst[t] < v)
                        dst[t] = v;
                    row[t] = 0;
                }
            }
        }
        /* emit the track in (pitch, time) order and clear its roll */
        int64_t m0 = m;
        for (int q = 0; q < 128; q++) {
            uint64_t *bits = touched + q * words;
            uint8_t *row = track_roll + (size_t)q * n_steps;
            for (int64_t w = 0; w < words; w++) {
                uint64_t word = bits[w];
                bits[w] = 0;
                while (word) {
                    int64_t block = w * 64 + __builtin_ctzll(word);
                    word &= word - 1;
                    int64_t lo = block * 64, hi = lo + 64 < n_steps ? lo + 64 : n_steps;
                    m = emit_row(row, lo, hi, (uint8_t)f, (uint8_t)q, out_track, out_time, out_pitch, out_vel, m,
                                 cap);
                    if (m < 0) {
                        result = -1;
                        goto done;
                    }
                }
            }
        }
        if (track_roll == scratch && (painted += m - m0) > cap) {
            result = -1;
            goto done;
        }
        dirty = 0;
    }
    result = m;
done:
    release_rolls(dirty);
    free(touched); free(ranges); free(first_note); free(last_note); free(members);
    return result;
}

/* ------------------------------------------------------------------------------ quantize */

/* numpy's float64 -> int64 cast (astype): truncation, and INT64_MIN for NaN or out of range. */
static int64_t numpy_to_int64(double x)
{
    if (!(x >= -9223372036854775808.0 && x < 9223372036854775808.0))
        return INT64_MIN;
    return (int64_t)x;
}

/* np.nan_to_num(x, nan=0.0) */
static double nan_to_num(double x)
{
    if (isnan(x))
        return 0.0;
    if (isinf(x))
        return x > 0 ? DBL_MAX : -DBL_MAX;
    return x;
}

/* Galloping binary searches over a sorted array, started from `hint` (the previous answer), so
 * inputs that come in order cost O(1) each. BEFORE(x, v) says that element x lies before the
 * answer: `x < v` gives numpy's searchsorted side='left', `x <= v` side='right'. */
#define DEFINE_GALLOP(NAME, T, BEFORE)                                                                  \
    static int64_t NAME(const T *a, int64_t n, T v, int64_t hint)                                      \
    {                                                                                                  \
        int64_t lo, hi, step = 1;                                                                      \
        if (hint > n)                                                                                  \
            hint = n;                                                                                  \
        if (hint < n && BEFORE(a[hint], v)) { /* the answer is past hint */                            \
            lo = hi = hint + 1;                                                                        \
            while (hi < n && BEFORE(a[hi], v)) {                                                       \
                lo = hi + 1;                                                                           \
                hi += step;                                                                            \
                step <<= 1;                                                                            \
            }                                                                                          \
            if (hi > n)                                                                                \
                hi = n;                                                                                \
        } else { /* the answer is at hint or before it */                                              \
            lo = hi = hint;                                                                            \
            while (lo > 0 && !BEFORE(a[lo - 1], v)) {                                                  \
                hi = lo - 1;                                                                           \
                lo -= step;                                                                            \
                step <<= 1;                                                                            \
                if (lo < 0)                                                                            \
                    lo = 0;                                                                            \
            }                                                                                          \
        }                                                                                              \
        while (lo < hi) {                                                                              \
            int64_t mid = lo + (hi - lo) / 2;                                                          \
            if (BEFORE(a[mid], v))                                                                     \
                lo = mid + 1;                                                                          \
            else                                                                                       \
                hi = mid;                                                                              \
        }                                                                                              \
        return lo;                                                                                     \
    }

#define LESS(x, v) ((x) < (v))
#define LESS_EQUAL(x, v) ((x) <= (v))
DEFINE_GALLOP(lower_bound_from, double, LESS)         /* first i with a[i] >= v */
DEFINE_GALLOP(upper_bound_from, int64_t, LESS_EQUAL) /* first i with a[i] > v */
#undef LESS
#undef LESS_EQUAL

/* Times (seconds) -> grid steps, as to_pianoroll's numpy expression does, bit for bit:
 *   bi = searchsorted(bt, x) - 1      (bt[-1] is the last beat, as numpy indexes)
 *   pos = nan_to_num((bi + (x - bt[bi]) / (bt1[bi + 1] - bt[bi])) * resolution)
 *   out = round(pos) (half to even) when rounding, else pos, cast to int64
 * where bt1 is bt followed by `one_more`. */
static void quantize(const double *bt, int64_t nb, double one_more, const double *x, int64_t n, int64_t resolution,
                     int rounding, int64_t *out)
{
    int64_t lo = 0; /* the previous answer: notes come almost in time order */
    for (int64_t k = 0; k < n; k++) {
        double v = x[k];
        lo = lower_bound_from(bt, nb, v, lo);
        int64_t bi = lo - 1;
        double b0 = bi < 0 ? bt[nb - 1] : bt[bi];
        double b1 = bi + 1 < nb ? bt[bi + 1] : one_more;
        double pos = nan_to_num(((double)bi + (v - b0) / (b1 - b0)) * (double)resolution);
        out[k] = numpy_to_int64(rounding ? nearbyint(pos) : pos);
    }
}

/* Ticks -> seconds over a piecewise-linear tempo map (pipeline.io.midi.TickClock):
 * seg = searchsorted(start, tick, side='right') - 1; out = base[seg] + scale[seg] * (tick - start[seg]) */
static void ticks_to_seconds(const int64_t *start, const double *scale, const double *base, int64_t ns,
                             const int64_t *ticks, int64_t n, double *out)
{
    int64_t at = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t t = ticks[k];
        at = upper_bound_from(start, ns, t, at);
        int64_t seg = at - 1;
        if (seg < 0)
            seg += ns; /* numpy's index -1 */
        out[k] = base[seg] + scale[seg] * (double)(t - start[seg]);
    }
}

/* ---------------------------------------------------------------------------- bar_coords */

/* Cells' time steps -> (bar, step in bar); keep[k] = 0 for cells past bar_steps in their bar,
 * and with `drop`, for every cell of a bar that is not exactly bar_steps long (kept bars are
 * renumbered in order). Returns the number kept; -2 out of memory; -3 when a step is outside
 * the roll or the bars do not tile it from step 0. */
static int64_t bar_coords(const int32_t *t, int64_t n, const int64_t *starts, int64_t n_bars, int64_t n_steps,
                          int64_t bar_steps, int drop, int16_t *out_bar, int16_t *out_step, uint8_t *keep)
{
    if (n_steps < 0 || (n_bars == 0 ? n > 0 : starts[0] != 0))
        return -3;
    for (int64_t b = 0; b < n_bars; b++) {
        int64_t hi = b + 1 < n_bars ? starts[b + 1] : n_steps;
        if (starts[b] < 0 || hi < starts[b] || hi > n_steps)
            return -3;
    }
    int32_t *bar_of_step = malloc(sizeof(int32_t) * (n_steps + 1));
    int64_t *number = malloc(sizeof(int64_t) * (n_bars + 1));
    if (!bar_of_step || !number) {
        free(bar_of_step); free(number);
        return -2;
    }
    int64_t full = 0;
    for (int64_t b = 0; b < n_bars; b++) {
        int64_t lo = starts[b], hi = b + 1 < n_bars ? starts[b + 1] : n_steps;
        for (int64_t s = lo; s < hi; s++)
            bar_of_step[s] = (int32_t)b;
        number[b] = drop ? (hi - lo == bar_steps ? full++ : -1) : b;
    }
    int64_t kept = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t s = t[k];
        if (s < 0 || s >= n_steps) {
            kept = -3;
            break;
        }
        int64_t b = bar_of_step[s];
        int64_t step = s - starts[b];
        int ok = step < bar_steps && number[b] >= 0;
        out_bar[k] = (int16_t)number[b];
        out_step[k] = (int16_t)step;
        keep[k] = (uint8_t)ok;
        kept += ok;
    }
    free(bar_of_step); free(number);
    return kept;
}

/* ------------------------------------------------------------- pair_m21 and group_m21 */

/* music21 getNotesFromEvents per track: walk the events backwards; a note-off arms its
 * (track, channel, pitch) key with its tick, a note-on takes the nearest armed note-off after it
 * (an unpaired note-on vanishes). Outputs are filled in reverse order of note-ons. Returns the
 * number of notes; -2 out of memory; -3 when a note event's track, channel or pitch is outside
 * [0, n_tracks) x [0, 16) x [0, 128); -4 when there are more notes than `cap`. */
static int64_t pair_m21(const int64_t *ev_track, const int64_t *ev_tick, const int64_t *ev_kind, const int64_t *ev_ch,
                        const int64_t *ev_a, int64_t n_events, int64_t n_tracks, int64_t *on_tick, int64_t *off_tick,
                        int64_t *pitch, int64_t *chan, int64_t *track, int64_t cap)
{
    if (n_tracks < 0 || n_tracks > INT64_MAX / (16 * 128 * (int64_t)sizeof(int64_t)))
        return -3;
    int64_t n_keys = n_tracks * 16 * 128;
    int64_t *awaiting = malloc(sizeof(int64_t) * (size_t)(n_keys > 0 ? n_keys : 1));
    if (!awaiting)
        return -2;
    for (int64_t k = 0; k < n_keys; k++)
        awaiting[k] = -1;
    int64_t n = 0;
    for (int64_t i = n_events - 1; i >= 0; i--) {
        int64_t k = ev_kind[i];
        if (k != K_NOTE_OFF && k != K_NOTE_ON)
            continue;
        if (ev_track[i] < 0 || ev_track[i] >= n_tracks || ev_ch[i] < 0 || ev_ch[i] >= 16 || ev_a[i] < 0 ||
            ev_a[i] >= 128) {
            n = -3;
            break;
        }
        int64_t key = (ev_track[i] * 16 + ev_ch[i]) * 128 + ev_a[i];
        if (k == K_NOTE_OFF) {
            awaiting[key] = ev_tick[i];
        } else if (awaiting[key] >= 0) {
            if (n >= cap) {
                n = -4;
                break;
            }
            on_tick[n] = ev_tick[i];
            off_tick[n] = awaiting[key];
            pitch[n] = ev_a[i];
            chan[n] = ev_ch[i];
            track[n] = ev_track[i];
            n++;
        }
    }
    free(awaiting);
    return n;
}

/* music21 midiTrackToStream chord gathering over notes in note-on order, track by track: each
 * note not yet gathered opens a group; the notes after it of the same track whose onset is
 * closer than `tol` ticks join it when their offset is within `tol` too, and otherwise set
 * voices_required[track] (music21's voicesRequired) and are passed over. Only the opening note
 * is checked, so a note already gathered can be gathered again by a later group. Emits (group,
 * note) member pairs and the opening note of each group (first_of, at least n long). Returns the
 * number of groups and sets *pairs; -1 when more pairs than `cap` (the caller retries with more
 * room); -2 out of memory; -3 when a track is outside [0, n_voices). */
static int64_t group_m21(const int64_t *on_tick, const int64_t *off_tick, const int64_t *track, int64_t n, double tol,
                         int64_t *mem_group, int64_t *mem_note, int64_t cap, int64_t *first_of,
                         uint8_t *voices_required, int64_t n_voices, int64_t *pairs)
{
    for (int64_t i = 0; i < n; i++)
        if (track[i] < 0 || track[i] >= n_voices)
            return -3;
    uint8_t *gathered = calloc((size_t)(n > 0 ? n : 1), 1);
    if (!gathered)
        return -2;
    int64_t g = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (gathered[i])
            continue;
        if (m >= cap) {
            g = -1;
            break;
        }
        first_of[g] = i;
        mem_group[m] = g;
        mem_note[m] = i;
        m++;
        for (int64_t j = i + 1; j < n; j++) {
            /* the tick distance as a double against tol (ticks per quarter / 4, a float) */
            if (track[j] != track[i] || (double)llabs(on_tick[j] - on_tick[i]) >= tol)
                break;
            if ((double)llabs(off_tick[j] - off_tick[i]) > tol) {
                voices_required[track[i]] = 1;
                continue;
            }
            if (m >= cap) {
                g = -1;
                break;
            }
            mem_group[m] = g;
            mem_note[m] = j;
            m++;
            gathered[j] = 1;
        }
        if (g < 0)
            break;
        g++;
    }
    free(gathered);
    *pairs = g < 0 ? -1 : m;
    return g;
}

/* ------------------------------------------------------------------------- Python glue */

/* Each argument is a contiguous buffer whose element size the wrapper in smf_kernels.py has
 * checked; here we only count elements. */
#define NELEM(buf, type) ((int64_t)((buf).len / (Py_ssize_t)sizeof(type)))

static PyObject *py_scan_smf(PyObject *self, PyObject *args)
{
    Py_buffer data, tr, tk, kd, ch, a, b, info;
    long long start;
    if (!PyArg_ParseTuple(args, "y*Lw*w*w*w*w*w*w*", &data, &start, &tr, &tk, &kd, &ch, &a, &b, &info))
        return NULL;
    int64_t cap = NELEM(tk, int64_t);
    scan_smf((const uint8_t *)data.buf, (int64_t)data.len, start, tr.buf, tk.buf, kd.buf, ch.buf, a.buf, b.buf,
             cap, info.buf);
    PyBuffer_Release(&data); PyBuffer_Release(&tr); PyBuffer_Release(&tk); PyBuffer_Release(&kd);
    PyBuffer_Release(&ch); PyBuffer_Release(&a); PyBuffer_Release(&b); PyBuffer_Release(&info);
    Py_RETURN_NONE;
}

static PyObject *py_pair_notes(PyObject *self, PyObject *args)
{
    Py_buffer b[17];
    long long n_events;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*Lw*w*w*w*w*w*w*w*w*w*", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                          &n_events, &b[6], &b[7], &b[8], &b[9], &b[10], &b[11], &b[12], &b[13], &b[14], &b[15]))
        return NULL;
    /* events: never past the shortest event array; outputs: capacities from their lengths */
    static const Py_ssize_t ev_size[6] = {sizeof(int32_t), sizeof(int64_t), 1, 1, sizeof(int32_t), sizeof(int32_t)};
    for (int k = 0; k < 6; k++) {
        if (n_events > b[k].len / ev_size[k])
            n_events = b[k].len / ev_size[k];
    }
    int64_t note_cap = NELEM(b[6], int64_t), inst_cap = NELEM(b[11], int64_t);
    for (int k = 7; k < 11; k++)
        if (NELEM(b[k], int64_t) < note_cap)
            note_cap = NELEM(b[k], int64_t);
    for (int k = 12; k < 15; k++)
        if (NELEM(b[k], int64_t) < inst_cap)
            inst_cap = NELEM(b[k], int64_t);
    int rc = -1;
    if (NELEM(b[15], int64_t) >= 3)
        rc = pair_notes(b[0].buf, b[1].buf, b[2].buf, b[3].buf, b[4].buf, b[5].buf, n_events, b[6].buf, b[7].buf,
                        b[8].buf, b[9].buf, b[10].buf, note_cap, b[11].buf, b[12].buf, b[13].buf, b[14].buf, inst_cap,
                        b[15].buf);
    else
        rc = -4;
    for (int k = 0; k < 16; k++)
        PyBuffer_Release(&b[k]);
    if (rc == -1)
        return PyErr_NoMemory();
    if (rc == -3) {
        PyErr_SetString(PyExc_ValueError, "pair_notes: the note or instrument arrays are too small");
        return NULL;
    }
    if (rc == -4) {
        PyErr_SetString(PyExc_ValueError, "pair_notes: out needs 3 elements");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_get_beats(PyObject *self, PyObject *args)
{
    double start_time, end_time;
    long long max_beats;
    Py_buffer tc, tempi, tst, tsn, tsd, beats;
    if (!PyArg_ParseTuple(args, "dy*y*y*y*y*dLw*", &start_time, &tc, &tempi, &tst, &tsn, &tsd, &end_time, &max_beats,
                          &beats))
        return NULL;
    int64_t nb = get_beats(start_time, tc.buf, tempi.buf, NELEM(tc, double), tst.buf, tsn.buf, tsd.buf,
                           NELEM(tst, double), end_time, max_beats, beats.buf);
    PyBuffer_Release(&tc); PyBuffer_Release(&tempi); PyBuffer_Release(&tst); PyBuffer_Release(&tsn);
    PyBuffer_Release(&tsd); PyBuffer_Release(&beats);
    return PyLong_FromLongLong(nb);
}

static PyObject *py_beat_start_score(PyObject *self, PyObject *args)
{
    Py_buffer beats, idx, vel;
    long long length;
    if (!PyArg_ParseTuple(args, "y*y*y*L", &beats, &idx, &vel, &length))
        return NULL;
    int oom = 0;
    double s = beat_start_score(beats.buf, NELEM(beats, double), idx.buf, vel.buf, NELEM(idx, int64_t), length, &oom);
    PyBuffer_Release(&beats); PyBuffer_Release(&idx); PyBuffer_Release(&vel);
    if (oom)
        return PyErr_NoMemory();
    return PyFloat_FromDouble(s);
}

static PyObject *py_paint_tracks(PyObject *self, PyObject *args)
{
    long long n_steps, n_tracks;
    int lpd;
    Py_buffer inst, pitch, vel, ons, offs, drum, fam, ot, oti, op, ov;
    if (!PyArg_ParseTuple(args, "Ly*y*y*y*y*y*y*Lpw*w*w*w*", &n_steps, &inst, &pitch, &vel, &ons, &offs, &drum, &fam,
                          &n_tracks, &lpd, &ot, &oti, &op, &ov))
        return NULL;
    int64_t m;
    Py_BEGIN_ALLOW_THREADS
    m = paint_tracks(n_steps, inst.buf, pitch.buf, vel.buf, ons.buf, offs.buf, NELEM(pitch, int64_t), drum.buf,
                     fam.buf, NELEM(fam, int64_t), n_tracks, lpd, ot.buf, oti.buf, op.buf, ov.buf,
                     NELEM(ot, uint8_t));
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&inst); PyBuffer_Release(&pitch); PyBuffer_Release(&vel); PyBuffer_Release(&ons);
    PyBuffer_Release(&offs); PyBuffer_Release(&drum); PyBuffer_Release(&fam); PyBuffer_Release(&ot);
    PyBuffer_Release(&oti); PyBuffer_Release(&op); PyBuffer_Release(&ov);
    if (m == -2)
        return PyErr_NoMemory();
    return PyLong_FromLongLong(m);
}

static PyObject *py_quantize(PyObject *self, PyObject *args)
{
    Py_buffer bt, x, out;
    double one_more;
    long long resolution;
    int rounding;
    if (!PyArg_ParseTuple(args, "y*dy*Lpw*", &bt, &one_more, &x, &resolution, &rounding, &out))
        return NULL;
    quantize(bt.buf, NELEM(bt, double), one_more, x.buf, NELEM(x, double), resolution, rounding, out.buf);
    PyBuffer_Release(&bt); PyBuffer_Release(&x); PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyObject *py_bar_coords(PyObject *self, PyObject *args)
{
    Py_buffer t, starts, ob, os, keep;
    long long n_steps, bar_steps;
    int drop;
    if (!PyArg_ParseTuple(args, "y*y*LLpw*w*w*", &t, &starts, &n_steps, &bar_steps, &drop, &ob, &os, &keep))
        return NULL;
    int64_t kept = bar_coords(t.buf, NELEM(t, int32_t), starts.buf, NELEM(starts, int64_t), n_steps, bar_steps, drop,
                              ob.buf, os.buf, keep.buf);
    PyBuffer_Release(&t); PyBuffer_Release(&starts); PyBuffer_Release(&ob); PyBuffer_Release(&os);
    PyBuffer_Release(&keep);
    if (kept == -2)
        return PyErr_NoMemory();
    if (kept == -3) {
        PyErr_SetString(PyExc_ValueError, "bar_coords: a cell outside the roll, or bars that do not tile it from 0");
        return NULL;
    }
    return PyLong_FromLongLong(kept);
}

static PyObject *py_ticks_to_seconds(PyObject *self, PyObject *args)
{
    Py_buffer start, scale, base, ticks, out;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*", &start, &scale, &base, &ticks, &out))
        return NULL;
    ticks_to_seconds(start.buf, scale.buf, base.buf, NELEM(start, int64_t), ticks.buf, NELEM(ticks, int64_t), out.buf);
    PyBuffer_Release(&start); PyBuffer_Release(&scale); PyBuffer_Release(&base); PyBuffer_Release(&ticks);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyObject *py_pair_m21(PyObject *self, PyObject *args)
{
    Py_buffer b[10];
    long long n_tracks;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*Lw*w*w*w*w*", &b[0], &b[1], &b[2], &b[3], &b[4], &n_tracks, &b[5], &b[6],
                          &b[7], &b[8], &b[9]))
        return NULL;
    /* events: never past the shortest event array; outputs: the shortest output array */
    int64_t n_events = NELEM(b[0], int64_t), cap = NELEM(b[5], int64_t);
    for (int k = 1; k < 5; k++)
        if (NELEM(b[k], int64_t) < n_events)
            n_events = NELEM(b[k], int64_t);
    for (int k = 6; k < 10; k++)
        if (NELEM(b[k], int64_t) < cap)
            cap = NELEM(b[k], int64_t);
    int64_t n;
    Py_BEGIN_ALLOW_THREADS
    n = pair_m21(b[0].buf, b[1].buf, b[2].buf, b[3].buf, b[4].buf, n_events, n_tracks, b[5].buf, b[6].buf, b[7].buf,
                 b[8].buf, b[9].buf, cap);
    Py_END_ALLOW_THREADS
    for (int k = 0; k < 10; k++)
        PyBuffer_Release(&b[k]);
    if (n == -2)
        return PyErr_NoMemory();
    if (n == -3) {
        PyErr_SetString(PyExc_ValueError, "pair_m21: a note event's track, channel or pitch is out of range");
        return NULL;
    }
    if (n == -4) {
        PyErr_SetString(PyExc_ValueError, "pair_m21: the note arrays are too small");
        return NULL;
    }
    return PyLong_FromLongLong(n);
}

static PyObject *py_group_m21(PyObject *self, PyObject *args)
{
    Py_buffer on, off, tr, mg, mn, fo, vr;
    double tol;
    if (!PyArg_ParseTuple(args, "y*y*y*dw*w*w*w*", &on, &off, &tr, &tol, &mg, &mn, &fo, &vr))
        return NULL;
    int64_t n = NELEM(on, int64_t), cap = NELEM(mg, int64_t);
    if (NELEM(off, int64_t) < n)
        n = NELEM(off, int64_t);
    if (NELEM(tr, int64_t) < n)
        n = NELEM(tr, int64_t);
    if (NELEM(mn, int64_t) < cap)
        cap = NELEM(mn, int64_t);
    int64_t g = -4, pairs = -1;
    if (NELEM(fo, int64_t) >= n) {
        Py_BEGIN_ALLOW_THREADS
        g = group_m21(on.buf, off.buf, tr.buf, n, tol, mg.buf, mn.buf, cap, fo.buf, vr.buf, NELEM(vr, uint8_t),
                      &pairs);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&on); PyBuffer_Release(&off); PyBuffer_Release(&tr); PyBuffer_Release(&mg);
    PyBuffer_Release(&mn); PyBuffer_Release(&fo); PyBuffer_Release(&vr);
    if (g == -2)
        return PyErr_NoMemory();
    if (g == -3) {
        PyErr_SetString(PyExc_ValueError, "group_m21: a track is outside voices_required");
        return NULL;
    }
    if (g == -4) {
        PyErr_SetString(PyExc_ValueError, "group_m21: first_of is shorter than the notes");
        return NULL;
    }
    return Py_BuildValue("(LL)", (long long)g, (long long)pairs);
}

static PyMethodDef methods[] = {
    {"scan_smf", py_scan_smf, METH_VARARGS, "Scan an SMF into event arrays (see smf_kernels.scan_smf)."},
    {"pair_notes", py_pair_notes, METH_VARARGS, "pretty_midi's note pairing (see smf_kernels.pair_notes)."},
    {"get_beats", py_get_beats, METH_VARARGS, "pretty_midi's get_beats (see smf_kernels.get_beats)."},
    {"beat_start_score", py_beat_start_score, METH_VARARGS, "One candidate of estimate_beat_start."},
    {"paint_tracks", py_paint_tracks, METH_VARARGS, "Notes -> merged track cells (see smf_kernels.paint_tracks)."},
    {"quantize", py_quantize, METH_VARARGS, "Times -> grid steps (see smf_kernels.quantize)."},
    {"ticks_to_seconds", py_ticks_to_seconds, METH_VARARGS, "Ticks -> seconds (see smf_kernels.ticks_to_seconds)."},
    {"bar_coords", py_bar_coords, METH_VARARGS, "Cell steps -> bar and step in bar (see smf_kernels.bar_coords)."},
    {"pair_m21", py_pair_m21, METH_VARARGS, "music21's note pairing (see smf_kernels.pair_m21)."},
    {"group_m21", py_group_m21, METH_VARARGS, "music21's chord gathering (see smf_kernels.group_m21)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_smf", "Compiled kernels of pipeline.io.smf_kernels.",
                                    -1, methods};

PyMODINIT_FUNC PyInit__smf(void)
{
    return PyModule_Create(&module);
}
