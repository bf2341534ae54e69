"""The few numbers per model that ``dvc metrics show`` lists (the ``scores.json`` files), taken from
each family's full ``evaluation.json``, which stays beside them as an artefact.

One file per row of ``dvc metrics show`` and the same keys in every file of a family, so the table
has a handful of columns per family instead of one per track, track pair, level and setting:

- LSTM, ``models/lstm/<variant>/scores.json``: valid and test perplexity, test next-token accuracy.
- MuseGAN, ``models/musegan/scores/<data|variant>.json``: EB, UPC, QN (mean over the tracks that have
  them), DP (drums) and TD (mean over track pairs), under both definitions (``official``: MuseGAN v1's
  code; ``corrected``: ours, see docs/musegan_metrics.md).
- Jukebox, ``models/jukebox/scores/level_<n>.json``: per VQ-VAE level, the prior's or upsampler's
  held-out bits per token, and the VQ-VAE's codebook usage and spectral convergence (dB) on the
  held-out clips.
"""

from __future__ import annotations

from collections.abc import Mapping


def _mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def lstm_scores(report: Mapping) -> dict[str, float]:
    """From ``stages.lstm.run_evaluate``'s report."""
    return {"valid_perplexity": report["valid"]["perplexity"], "test_perplexity": report["test"]["perplexity"],
            "test_accuracy": report["test"]["accuracy"]}


def musegan_scores(report: Mapping) -> dict[str, dict]:
    """From ``stages.musegan.run_evaluate``'s report: ``{source: {definition: {metric: value}}}`` for the
    data and each evaluated variant."""
    scores: dict[str, dict] = {}
    definitions = [d for d in ("official", "corrected") if d in report]
    for src in report[definitions[0]]:
        scores[src] = {}
        for definition in definitions:
            per_metric = report[definition][src]
            scores[src][definition] = {metric: _mean(per_metric[metric].values())
                                       for metric in ("EB", "UPC", "QN", "DP", "TD") if metric in per_metric}
    return scores


def jukebox_scores(report: Mapping) -> dict[str, dict]:
    """From ``stages.jukebox.run_evaluate``'s report: ``{"level_<n>": {...}}``, one per VQ-VAE level."""
    priors = {p["level"]: p for p in report["priors"]}
    scores: dict[str, dict] = {}
    for name, level in sorted(report["vqvae"]["levels"].items()):
        prior = priors.get(level["level"], {})
        scores[name] = {"hop": level["hop"],
                        "heldout_bits_per_token": prior.get("heldout_bits_per_token"),
                        "codebook_usage": level["codebook_usage"],
                        "spectral_convergence_db": level["spectral_convergence_db"]}
    return scores
