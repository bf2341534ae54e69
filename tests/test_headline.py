"""The headline numbers `dvc metrics show` lists (scores.json), from hand-made evaluation reports."""

from __future__ import annotations

import pytest

from pipeline.metrics.headline import jukebox_scores, lstm_scores, musegan_scores


def test_lstm_scores_take_perplexities_and_test_accuracy():
    report = {"valid": {"perplexity": 70.0, "accuracy": 0.05, "cross_entropy": 4.2},
              "test": {"perplexity": 112.0, "accuracy": 0.01, "cross_entropy": 4.7}}
    assert lstm_scores(report) == {"valid_perplexity": 70.0, "test_perplexity": 112.0, "test_accuracy": 0.01}


def test_musegan_scores_average_the_tracks_that_have_a_value():
    per_src = {"EB": {"Drums": 0.5, "Piano": 0.0}, "UPC": {"Drums": None, "Piano": 3.0, "Bass": 5.0},
               "QN": {"Drums": None, "Piano": 1.0}, "DP": {"Drums": 0.25}, "TD": {"Piano-Bass": 1.0, "Piano-Guitar": 2.0}}
    report = {"official": {"data": per_src, "jamming": per_src}, "corrected": {"data": per_src, "jamming": per_src},
              "samples": {"jamming": 4}}
    scores = musegan_scores(report)
    assert set(scores) == {"data", "jamming"}
    assert scores["data"]["official"] == {"EB": 0.25, "UPC": 4.0, "QN": 1.0, "DP": 0.25, "TD": 1.5}
    assert scores["jamming"]["corrected"] == scores["data"]["official"]


def test_musegan_scores_keep_none_where_no_track_has_a_value():
    per_src = {"QN": {"Drums": None}}
    assert musegan_scores({"official": {"data": per_src}})["data"]["official"] == {"QN": None}


def test_jukebox_scores_one_row_per_level_with_its_prior():
    report = {"vqvae": {"levels": {f"level_{i}": {"level": i, "hop": 8 * 4 ** i, "codebook_usage": 0.1 * i,
                                                  "spectral_convergence_db": -float(i)} for i in range(3)}},
              "priors": [{"level": 2, "heldout_bits_per_token": 1.0}, {"level": 0, "heldout_bits_per_token": 3.0}]}
    scores = jukebox_scores(report)
    assert list(scores) == ["level_0", "level_1", "level_2"]
    assert scores["level_0"] == {"hop": 8, "heldout_bits_per_token": 3.0, "codebook_usage": 0.0,
                                 "spectral_convergence_db": -0.0}
    assert scores["level_1"]["heldout_bits_per_token"] is None  # no prior trained at that level
    assert scores["level_2"]["heldout_bits_per_token"] == pytest.approx(1.0)
