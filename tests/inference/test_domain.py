"""The embedded model's out-of-domain check: its statistics against hand computations, and the
shipped calibration against the demos (never flagged) and real photos (always flagged)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ccnet.inference.domain import DomainCheck, domain_check, domain_scores, load_check, log_row_prior, row_bands
from ccnet.inference.images import decode_image
from ccnet.inference.predictor import Predictor
from ccnet.project import ASSETS, DEMOS, ROOT
from ccnet.weights.load import load_model

PHOTOS = sorted((ROOT / "tests" / "data" / "photos").glob("*.jpg"))
DEMO_FILES = sorted(p for p in DEMOS.glob("*.png") if not p.stem.endswith("_label"))


def test_row_bands_cut_the_height_into_equal_parts():
    assert row_bands(8, 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert row_bands(5, 2).tolist() == [0, 0, 0, 1, 1]


def test_the_row_prior_counts_classes_per_band_with_one_pseudo_count():
    label = np.array([[0, 0], [0, 1], [1, 1], [255, 1]])  # 2 bands of 2 rows; 255 is ignored
    prior = np.exp(log_row_prior([label], num_classes=2, bands=2))
    np.testing.assert_allclose(prior, [[(3 + 1) / 6, (1 + 1) / 6], [(0 + 1) / 5, (3 + 1) / 5]])


def test_scores_are_the_mean_entropy_and_the_mean_layout_log_probability():
    probabilities = torch.tensor([[[1.0, 0.5]], [[0.0, 0.5]]])  # K=2, H=1, W=2
    log_prior = np.log(np.array([[0.25, 0.75]]))
    scores = domain_scores(probabilities, log_prior)
    assert scores.entropy == pytest.approx(np.log(2) / 2, abs=1e-4)  # one sure pixel, one coin flip
    assert scores.layout == pytest.approx(np.log(0.25), abs=1e-4)  # both pixels argmax class 0


def test_a_check_survives_a_round_trip_and_flags_either_statistic():
    check = DomainCheck(np.log(np.full((2, 3), 1 / 3)), 0.3, -2.0, "synthetic street scenes")
    again = DomainCheck.from_dict(json.loads(json.dumps(check.to_dict())))
    np.testing.assert_allclose(again.log_prior, check.log_prior, atol=1e-5)
    assert (again.max_entropy, again.min_layout, again.known) == (0.3, -2.0, "synthetic street scenes")
    sure = torch.zeros(3, 4, 4)
    sure[0] = 1.0
    assert not check.assess(sure).out_of_domain and check.assess(sure).note is None
    unsure = torch.full((3, 4, 4), 1 / 3)
    verdict = check.assess(unsure)
    assert verdict.out_of_domain and "entropy 1.10 > 0.30" in verdict.note
    strict = DomainCheck(check.log_prior, 0.3, -1.0, "synthetic street scenes")  # log(1/3) = -1.10 < -1
    assert "layout -1.10 < -1.00" in strict.assess(sure).note


def test_only_the_embedded_model_has_a_check():
    assert domain_check("default") is not None
    assert domain_check("ccnet_r50-d8_512x1024_80k_cityscapes") is None


@pytest.fixture(scope="module")
def embedded():
    loaded = load_model("default")
    return Predictor(loaded.net, loaded.protocol, "cpu"), load_check(ASSETS / "domain_default.json")


def _verdict(embedded, path):
    predictor, check = embedded
    logits = predictor.predict(decode_image(path), with_attention=False).logits
    return check.assess(torch.softmax(logits, dim=0))


@pytest.mark.parametrize("path", DEMO_FILES, ids=lambda p: p.name)
def test_no_demo_scene_is_flagged(embedded, path):
    assert not _verdict(embedded, path).out_of_domain


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_every_real_photo_is_flagged(embedded, path):
    verdict = _verdict(embedded, path)
    assert verdict.out_of_domain and "synthetic street scenes" in verdict.note


def test_the_shipped_calibration_had_no_false_alarm_and_says_how_it_was_made():
    report = json.loads((ASSETS / "domain_default.json").read_text())
    assert report["held_out"]["false_alarms"] == 0 and report["held_out"]["images"] >= 256
    assert report["check"]["max_entropy"] == pytest.approx(1.5 * report["held_out"]["max_entropy"], abs=1e-3)
    assert report["check"]["min_layout"] == pytest.approx(report["held_out"]["min_layout"] - 1.0, abs=1e-3)
    assert len(PHOTOS) == 10 and report["photos_flagged"] == "10/10"


def test_a_score_exactly_at_its_threshold_is_still_in_the_domain():
    """The rule is strict: entropy above the largest held-out one, layout below the smallest."""
    from ccnet.inference.domain import DomainScores

    check = DomainCheck(np.log(np.full((2, 3), 1 / 3)), 0.3, -2.0, "synthetic street scenes")
    assert not check.verdict(DomainScores(entropy=0.3, layout=-2.0)).out_of_domain
    assert check.verdict(DomainScores(entropy=0.3 + 1e-9, layout=-2.0)).out_of_domain
    assert check.verdict(DomainScores(entropy=0.3, layout=-2.0 - 1e-9)).out_of_domain
