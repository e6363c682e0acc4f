"""Compiled loops of the ensemble analysis (numba): the greedy steps that cannot be vectorised.

Every kernel works on flat arrays of one analysis and on *buckets*: runs of consecutive
positions of a sort order that share a key (a video, or a video and a label). Bucket ``b`` spans
``order[starts[b]:starts[b + 1]]``. The rules each kernel implements are documented where they
are used (:mod:`jobs.ensemble.matching`, :mod:`jobs.ensemble.fusion`, :mod:`jobs.ensemble.metrics`);
the kernels only run them fast.
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np

#: Tolerance comparisons are inclusive up to this many seconds (times are stored to the ms).
TIME_EPS = 1e-6


@numba.njit(cache=True, nogil=True)
def _lower_bound(order: np.ndarray, lo: int, hi: int, values: np.ndarray, x: float) -> int:  # pragma: no cover
    """First position in ``order[lo:hi]`` whose value is >= ``x`` (values ascending along order)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if values[order[mid]] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True)
def greedy_groups(by_time: np.ndarray, by_seed: np.ndarray, starts: np.ndarray, model: np.ndarray,
                  n_models: int, time: np.ndarray, conf: np.ndarray, label: np.ndarray, key: np.ndarray,
                  tolerance: float, same_label: bool) -> np.ndarray:  # pragma: no cover - compiled
    """Seed-based one-to-one grouping across models; returns the seed (group) of every event.

    ``by_time`` sorts the events by (bucket, model, time, key), ``by_seed`` by (bucket,
    -confidence, model, time, key); both have the same buckets. A seed takes from every other
    model its best untaken event within the tolerance whose label equals the seed's
    (``same_label``) or differs from it: highest confidence, then nearest, earliest, lowest key.
    """
    n = len(time)
    group = np.full(n, -1, dtype=np.int64)
    taken = np.zeros(n, dtype=np.bool_)
    model_start = np.zeros(n_models + 1, dtype=np.int64)
    for b in range(len(starts) - 1):
        s, e = starts[b], starts[b + 1]
        # the range of each model within this bucket of by_time
        for m in range(n_models + 1):
            model_start[m] = e
        for p in range(e - 1, s - 1, -1):
            model_start[model[by_time[p]]] = p
        for m in range(n_models - 1, -1, -1):
            if model_start[m] > model_start[m + 1]:
                model_start[m] = model_start[m + 1]
        for j in range(s, e):
            seed = by_seed[j]
            if taken[seed]:
                continue
            taken[seed] = True
            group[seed] = seed
            t = time[seed]
            for m in range(n_models):
                if m == model[seed]:
                    continue
                lo = _lower_bound(by_time, model_start[m], model_start[m + 1], time, t - tolerance - TIME_EPS)
                best = -1
                for p in range(lo, model_start[m + 1]):
                    c = by_time[p]
                    if time[c] > t + tolerance + TIME_EPS:
                        break
                    if taken[c] or (label[c] == label[seed]) != same_label:
                        continue
                    if best < 0:
                        best = c
                        continue
                    if conf[c] != conf[best]:
                        if conf[c] > conf[best]:
                            best = c
                        continue
                    dc, db = abs(time[c] - t), abs(time[best] - t)
                    if dc != db:
                        if dc < db:
                            best = c
                        continue
                    if time[c] != time[best]:
                        if time[c] < time[best]:
                            best = c
                        continue
                    if key[c] < key[best]:
                        best = c
                if best >= 0:
                    taken[best] = True
                    group[best] = seed
    return group


@numba.njit(cache=True, nogil=True)
def nearest_claims(pred_order: np.ndarray, pred_bucket: np.ndarray, truth_order: np.ndarray,
                   truth_starts: np.ndarray, pred_time: np.ndarray, truth_time: np.ndarray,
                   tolerance: float) -> np.ndarray:  # pragma: no cover - compiled
    """Predictions in ``pred_order`` each claim the nearest unclaimed truth of their bucket.

    ``pred_bucket[p]`` is the truth bucket of prediction ``p`` (``-1``: none); truths of bucket
    ``b`` are ``truth_order[truth_starts[b]:truth_starts[b + 1]]`` in time order. Ties go to the
    earlier truth. Returns the truth claimed by every prediction, ``-1`` for none.
    """
    claimed = np.full(len(pred_time), -1, dtype=np.int64)
    used = np.zeros(len(truth_time), dtype=np.bool_)
    for p in pred_order:
        b = pred_bucket[p]
        if b < 0:
            continue
        t = pred_time[p]
        lo = _lower_bound(truth_order, truth_starts[b], truth_starts[b + 1], truth_time, t - tolerance - TIME_EPS)
        best = -1
        best_dt = 0.0
        for q in range(lo, truth_starts[b + 1]):
            g = truth_order[q]
            if truth_time[g] > t + tolerance + TIME_EPS:
                break
            if used[g]:
                continue
            dt = abs(truth_time[g] - t)
            if best < 0 or dt < best_dt:
                best, best_dt = g, dt
        if best >= 0:
            used[best] = True
            claimed[p] = best
    return claimed


@numba.njit(cache=True, nogil=True)
def hard_nms(order: np.ndarray, starts: np.ndarray, time: np.ndarray, window: float) -> np.ndarray:
    """Keep-flags of hard NMS: in each bucket (strongest first) an event within ``window`` of a
    kept one is dropped."""  # pragma: no cover - compiled
    keep = np.zeros(len(time), dtype=np.bool_)
    kept = np.empty(len(time), dtype=np.float64)
    for b in range(len(starts) - 1):
        n_kept = 0
        for j in range(starts[b], starts[b + 1]):
            i = order[j]
            t = time[i]
            lo, hi = 0, n_kept  # first kept time >= t - window
            while lo < hi:
                mid = (lo + hi) // 2
                if kept[mid] < t - window - TIME_EPS:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < n_kept and kept[lo] <= t + window + TIME_EPS:
                continue
            for k in range(n_kept, lo, -1):
                kept[k] = kept[k - 1]
            kept[lo] = t
            n_kept += 1
            keep[i] = True
    return keep


@numba.njit(cache=True, nogil=True)
def soft_nms(order: np.ndarray, starts: np.ndarray, time: np.ndarray, conf: np.ndarray, window: float,
             sigma: float) -> np.ndarray:  # pragma: no cover - compiled
    """Gaussian soft-NMS per bucket; returns the decayed confidences (every event is kept).

    Repeatedly the strongest remaining event (ties: the earliest) is final and every remaining
    one within the window decays by ``exp(-overlap**2 / sigma)``, ``overlap = 1 - |dt| / window``.
    """
    out = conf.copy()
    for b in range(len(starts) - 1):
        s, e = starts[b], starts[b + 1]
        n = e - s
        items = order[s:e].copy()
        done = np.zeros(n, dtype=np.bool_)
        for _ in range(n):
            top = -1
            for k in range(n):
                if done[k]:
                    continue
                if top < 0 or out[items[k]] > out[items[top]] or (
                        out[items[k]] == out[items[top]] and time[items[k]] < time[items[top]]):
                    top = k
            done[top] = True
            t = time[items[top]]
            for k in range(n):
                if not done[k]:
                    overlap = max(0.0, 1.0 - abs(time[items[k]] - t) / window)
                    out[items[k]] *= math.exp(-(overlap ** 2) / sigma)
    return out


@numba.njit(cache=True, nogil=True)
def nearest_truth_values(track_of_pred: np.ndarray, pred_cell: np.ndarray, gt_starts: np.ndarray,
                         gt_cell: np.ndarray, gt_value: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Per prediction cell, the value of the nearest ground-truth cell of its track (split at the
    integer midpoints ``(a + b) // 2``), ``-1`` when the track has no ground truth."""
    out = np.full(len(pred_cell), -1, dtype=np.int64)
    for p in range(len(pred_cell)):
        tr = track_of_pred[p]
        s, e = gt_starts[tr], gt_starts[tr + 1]
        if s == e:
            continue
        k = pred_cell[p]
        # bisect_right over the midpoints between consecutive ground-truth cells
        lo, hi = 0, e - s - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if (gt_cell[s + mid] + gt_cell[s + mid + 1]) // 2 <= k:
                lo = mid + 1
            else:
                hi = mid
        out[p] = gt_value[s + lo]
    return out


@numba.njit(cache=True, nogil=True)
def claim_cells(pred_starts: np.ndarray, pred_cell: np.ndarray, pred_score: np.ndarray, gt_starts: np.ndarray,
                gt_cell: np.ndarray, half_window: float) -> np.ndarray:  # pragma: no cover - compiled
    """The official matching per track: ground-truth cells in order each claim the highest-scoring
    unclaimed prediction cell within ``half_window`` cells (ties: the first). Returns TP flags."""
    tp = np.zeros(len(pred_cell), dtype=np.bool_)
    for tr in range(len(pred_starts) - 1):
        ps, pe = pred_starts[tr], pred_starts[tr + 1]
        if ps == pe:
            continue
        for q in range(gt_starts[tr], gt_starts[tr + 1]):
            g = gt_cell[q]
            lo, hi = ps, pe
            while lo < hi:
                mid = (lo + hi) // 2
                if pred_cell[mid] < g - half_window:
                    lo = mid + 1
                else:
                    hi = mid
            best = -1
            best_score = -1.0
            for i in range(lo, pe):
                if pred_cell[i] > g + half_window:
                    break
                if not tp[i] and pred_score[i] > best_score:
                    best, best_score = i, pred_score[i]
            if best >= 0:
                tp[best] = True
    return tp


def bucket_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Start offsets of the runs of equal values in ``sorted_keys``, with the end appended."""
    n = len(sorted_keys)
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    change = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    return np.concatenate([[0], change, [n]]).astype(np.int64)


@numba.njit(cache=True, nogil=True)
def counting_order(codes: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """Stable order of ``codes`` (integers in ``[0, n_codes)``) and the start of every code's run."""
    starts = np.zeros(n_codes + 1, dtype=np.int64)
    for c in codes:
        starts[c + 1] += 1
    for c in range(n_codes):
        starts[c + 1] += starts[c]
    fill = starts[:-1].copy()
    order = np.empty(len(codes), dtype=np.int64)
    for i in range(len(codes)):
        c = codes[i]
        order[fill[c]] = i
        fill[c] += 1
    return order, starts


@numba.njit(cache=True, nogil=True)
def _less(a: int, b: int, k1: np.ndarray, k2: np.ndarray, k3: np.ndarray) -> bool:  # pragma: no cover
    if k1[a] != k1[b]:
        return k1[a] < k1[b]
    if k2[a] != k2[b]:
        return k2[a] < k2[b]
    return k3[a] < k3[b]


@numba.njit(cache=True, nogil=True)
def _insertion_sort(order: np.ndarray, s: int, e: int, k1: np.ndarray, k2: np.ndarray,
                    k3: np.ndarray) -> None:  # pragma: no cover - compiled
    """Stable insertion sort of ``order[s:e]`` by ``(k1, k2, k3)`` of its elements."""
    for i in range(s + 1, e):
        x = order[i]
        j = i - 1
        while j >= s and _less(x, order[j], k1, k2, k3):
            order[j + 1] = order[j]
            j -= 1
        order[j + 1] = x


@numba.njit(cache=True, nogil=True)
def _merge_sort(order: np.ndarray, s: int, e: int, k1: np.ndarray, k2: np.ndarray, k3: np.ndarray,
                buf: np.ndarray) -> None:  # pragma: no cover - compiled
    """Stable bottom-up merge sort of ``order[s:e]`` by ``(k1, k2, k3)`` (``buf``: scratch space)."""
    n = e - s
    src, dst = order, buf
    width = 1
    while width < n:
        for lo in range(s, e, 2 * width):
            mid, hi = min(lo + width, e), min(lo + 2 * width, e)
            i, j, k = lo, mid, lo
            while i < mid and j < hi:
                if _less(src[j], src[i], k1, k2, k3):
                    dst[k] = src[j]
                    j += 1
                else:
                    dst[k] = src[i]
                    i += 1
                k += 1
            while i < mid:
                dst[k] = src[i]
                i += 1
                k += 1
            while j < hi:
                dst[k] = src[j]
                j += 1
                k += 1
        src, dst = dst, src
        width *= 2
    if src is not order:
        order[s:e] = src[s:e]


@numba.njit(cache=True, nogil=True)
def sort_runs(order: np.ndarray, starts: np.ndarray, k1: np.ndarray, k2: np.ndarray,
              k3: np.ndarray) -> None:  # pragma: no cover - compiled
    """Sort every run ``order[starts[r]:starts[r + 1]]`` in place by ``(k1, k2, k3)`` of its
    elements, stably. Short runs: insertion sort. Longer ones, unless already in order: a stable
    sort of the run's ``k1`` values gathered into one contiguous buffer, then the spans of equal
    ``k1`` by ``(k2, k3)``."""
    longest = 0
    for r in range(len(starts) - 1):
        longest = max(longest, starts[r + 1] - starts[r])
    keys = np.empty(longest, dtype=np.float64)
    moved = np.empty(longest, dtype=np.int64)
    buf = np.empty(len(order), dtype=np.int64)
    for r in range(len(starts) - 1):
        s, e = starts[r], starts[r + 1]
        n = e - s
        if n <= 16:
            _insertion_sort(order, s, e, k1, k2, k3)
            continue
        presorted = True  # runs often arrive in order (events are written in time order)
        for i in range(s + 1, e):
            if _less(order[i], order[i - 1], k1, k2, k3):
                presorted = False
                break
        if presorted:
            continue
        for i in range(n):
            keys[i] = k1[order[s + i]]
        by_key = np.argsort(keys[:n], kind="mergesort")
        for i in range(n):
            moved[i] = order[s + by_key[i]]
        order[s:e] = moved[:n]
        i = s
        while i < e:
            j = i + 1
            while j < e and k1[order[j]] == k1[order[i]]:
                j += 1
            if j - i > 16:
                _merge_sort(order, i, j, k1, k2, k3, buf)
            elif j - i > 1:
                _insertion_sort(order, i, j, k1, k2, k3)
            i = j


def grouped_order(codes: np.ndarray, n_codes: int, k1: np.ndarray, k2: np.ndarray,
                  k3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions sorted by ``(codes, k1, k2, k3)`` and the start of every code's run (empty runs
    included): a counting sort on the codes, then a sort within each run."""
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    if n_codes > 200_000_000:
        raise ValueError(f"too many buckets to group events by ({n_codes})")
    order, starts = counting_order(codes, int(n_codes))
    sort_runs(order, starts, np.ascontiguousarray(k1, dtype=np.float64), np.ascontiguousarray(k2, dtype=np.float64),
              np.ascontiguousarray(k3, dtype=np.uint64))
    return order, starts.astype(np.int64)


@numba.njit(cache=True, nogil=True)
def first_max(order: np.ndarray, starts: np.ndarray, values: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Per run of ``order``, the element with the largest value (ties: the first in the run; -1
    for an empty run)."""
    out = np.full(len(starts) - 1, -1, dtype=np.int64)
    for r in range(len(starts) - 1):
        if starts[r] == starts[r + 1]:
            continue
        best = order[starts[r]]
        for j in range(starts[r] + 1, starts[r + 1]):
            if values[order[j]] > values[best]:
                best = order[j]
        out[r] = best
    return out


_SHA1_INIT = np.array([0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0], dtype=np.uint32)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@numba.njit(cache=True, nogil=True)
def _rotl(x: np.uint32, n: int) -> np.uint32:  # pragma: no cover - compiled
    return np.uint32((x << np.uint32(n)) | (x >> np.uint32(32 - n)))


@numba.njit(cache=True, nogil=True)
def _sha1(msg: np.ndarray, length: int, state: np.ndarray, w: np.ndarray) -> None:  # pragma: no cover
    """SHA-1 of ``msg[:length]`` into ``state`` (``msg`` has room for the padding)."""
    state[:] = _SHA1_INIT
    padded = ((length + 8) // 64 + 1) * 64
    msg[length] = 0x80
    for i in range(length + 1, padded):
        msg[i] = 0
    bits = np.uint64(length) * np.uint64(8)
    for i in range(8):
        msg[padded - 1 - i] = np.uint8((bits >> np.uint64(8 * i)) & np.uint64(0xFF))
    for block in range(0, padded, 64):
        for t in range(16):
            o = block + 4 * t
            w[t] = (np.uint32(msg[o]) << np.uint32(24)) | (np.uint32(msg[o + 1]) << np.uint32(16)) | (
                np.uint32(msg[o + 2]) << np.uint32(8)) | np.uint32(msg[o + 3])
        for t in range(16, 80):
            w[t] = _rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1)
        a, b, c, d, e = state[0], state[1], state[2], state[3], state[4]
        for t in range(80):
            if t < 20:
                f, k = (b & c) | (~b & d), np.uint32(0x5A827999)
            elif t < 40:
                f, k = b ^ c ^ d, np.uint32(0x6ED9EBA1)
            elif t < 60:
                f, k = (b & c) | (b & d) | (c & d), np.uint32(0x8F1BBCDC)
            else:
                f, k = b ^ c ^ d, np.uint32(0xCA62C1D6)
            tmp = np.uint32(_rotl(a, 5) + f + e + k + w[t])
            e, d, c, b, a = d, c, _rotl(b, 30), a, tmp
        state[0] += a
        state[1] += b
        state[2] += c
        state[3] += d
        state[4] += e


@numba.njit(cache=True, nogil=True)
def keyed_sha1_hex(head_data: np.ndarray, head_starts: np.ndarray, head: np.ndarray, millis: np.ndarray,
                   tail_data: np.ndarray, tail_starts: np.ndarray, tail: np.ndarray,
                   hex_digits: int) -> np.ndarray:  # pragma: no cover - compiled
    """The first ``hex_digits`` hex digits of SHA-1 over ``head + time + tail`` for every row.

    ``head[i]`` / ``tail[i]`` pick byte strings out of ``head_data`` / ``tail_data`` (runs given by
    the ``*_starts`` offsets); the time is ``millis[i] / 1000`` written as Python's ``repr`` of
    that float writes it (``12.0``, ``12.5``, ``12.345``), valid for times below 10**12 s.
    """
    n = len(millis)
    out = np.empty(n * hex_digits, dtype=np.uint8)
    longest = 0
    for i in range(len(head_starts) - 1):
        longest = max(longest, head_starts[i + 1] - head_starts[i])
    longest_tail = 0
    for i in range(len(tail_starts) - 1):
        longest_tail = max(longest_tail, tail_starts[i + 1] - tail_starts[i])
    msg = np.empty(longest + longest_tail + 32 + 128, dtype=np.uint8)
    digits = np.empty(24, dtype=np.uint8)
    state = np.empty(5, dtype=np.uint32)
    w = np.empty(80, dtype=np.uint32)
    hexchars = _HEX
    for i in range(n):
        length = 0
        for j in range(head_starts[head[i]], head_starts[head[i] + 1]):
            msg[length] = head_data[j]
            length += 1
        whole, frac = millis[i] // 1000, millis[i] % 1000
        nd = 0
        while True:
            digits[nd] = 48 + whole % 10
            nd += 1
            whole //= 10
            if whole == 0:
                break
        for j in range(nd - 1, -1, -1):
            msg[length] = digits[j]
            length += 1
        msg[length] = 46  # "."
        length += 1
        if frac == 0:
            msg[length] = 48
            length += 1
        else:
            digits[0], digits[1], digits[2] = frac // 100, (frac // 10) % 10, frac % 10
            last = 2
            while digits[last] == 0:
                last -= 1
            for j in range(last + 1):
                msg[length] = 48 + digits[j]
                length += 1
        for j in range(tail_starts[tail[i]], tail_starts[tail[i] + 1]):
            msg[length] = tail_data[j]
            length += 1
        _sha1(msg, length, state, w)
        for j in range(hex_digits):
            word = state[j // 8]
            nibble = (word >> np.uint32(28 - 4 * (j % 8))) & np.uint32(0xF)
            out[i * hex_digits + j] = hexchars[nibble]
    return out


def spread(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + k) for s, k in zip(starts, sizes)])`` without the loop."""
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return np.repeat(np.asarray(starts, dtype=np.int64) - offsets[:-1], sizes) + np.arange(offsets[-1])


_SOURCES_MIDDLE = np.frombuffer(b'], "sources": [', dtype=np.uint8)
_SOURCES_TAIL = np.frombuffer(b"]}", dtype=np.uint8)


@numba.njit(cache=True, nogil=True)
def _put(out: np.ndarray, at: int, data: np.ndarray, start: int, end: int) -> int:  # pragma: no cover
    for j in range(start, end):
        out[at] = data[j]
        at += 1
    return at


@numba.njit(cache=True, nogil=True)
def json_ids_safe(data: np.ndarray, starts: np.ndarray, rows: np.ndarray) -> bool:  # pragma: no cover
    """Whether the strings ``rows`` (runs of ``data`` given by ``starts``) are JSON string
    literals once quoted: printable ASCII without ``"`` or ``\\``."""
    for r in rows:
        for j in range(starts[r], starts[r + 1]):
            b = data[j]
            if b < 32 or b > 126 or b == 34 or b == 92:
                return False
    return True


@numba.njit(cache=True, nogil=True)
def json_sources(head_data: np.ndarray, head_starts: np.ndarray, head: np.ndarray, model_data: np.ndarray,
                 model_starts: np.ndarray, source_model: np.ndarray, id_data: np.ndarray, id_starts: np.ndarray,
                 source_id: np.ndarray, source_starts: np.ndarray,
                 quote: bool) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """One JSON text per row ``i``: ``head[i]``'s text, the JSON literals of its sources' models
    joined by ``, ``, ``], "sources": [``, its sources' ids (quoted when ``quote``) joined by
    ``, ``, then ``]}``. Sources of row ``i`` are ``source_starts[i]:source_starts[i + 1]``;
    texts are runs of the ``*_data`` byte arrays given by the ``*_starts`` offsets. Returns
    Arrow-style ``(offsets, data)``."""
    n = len(head)
    offsets = np.zeros(n + 1, dtype=np.int64)
    fixed = len(_SOURCES_MIDDLE) + len(_SOURCES_TAIL)
    extra = 2 if quote else 0
    for i in range(n):
        size = head_starts[head[i] + 1] - head_starts[head[i]] + fixed
        for k in range(source_starts[i], source_starts[i + 1]):
            m, s = source_model[k], source_id[k]
            size += model_starts[m + 1] - model_starts[m] + id_starts[s + 1] - id_starts[s] + extra
            if k > source_starts[i]:
                size += 4  # two ", "
        offsets[i + 1] = offsets[i] + size
    out = np.empty(offsets[n], dtype=np.uint8)
    for i in range(n):
        at = _put(out, offsets[i], head_data, head_starts[head[i]], head_starts[head[i] + 1])
        for k in range(source_starts[i], source_starts[i + 1]):
            if k > source_starts[i]:
                out[at], out[at + 1] = 44, 32
                at += 2
            m = source_model[k]
            at = _put(out, at, model_data, model_starts[m], model_starts[m + 1])
        at = _put(out, at, _SOURCES_MIDDLE, 0, len(_SOURCES_MIDDLE))
        for k in range(source_starts[i], source_starts[i + 1]):
            if k > source_starts[i]:
                out[at], out[at + 1] = 44, 32
                at += 2
            if quote:
                out[at] = 34
                at += 1
            s = source_id[k]
            at = _put(out, at, id_data, id_starts[s], id_starts[s + 1])
            if quote:
                out[at] = 34
                at += 1
        at = _put(out, at, _SOURCES_TAIL, 0, len(_SOURCES_TAIL))
    return offsets, out


def kernels_to_compile() -> tuple[list[str], str | None]:
    """The compiled loops with no on-disk cache yet (numba compiles them on first use: a minute or two
    on 2 cores, once per installation), and the cache folder; ``([], None)`` when numba cannot say."""
    names: list[str] = []
    folder: str | None = None
    try:
        for name, value in globals().items():
            cache = getattr(value, "_cache", None)
            index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
            if index is None:
                continue
            folder = str(cache._cache_path)
            if not os.path.exists(index):
                names.append(name)
    except Exception:  # noqa: BLE001 - numba's cache layout is internal: no message rather than a failure
        return [], None
    return names, folder
