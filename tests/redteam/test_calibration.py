import json

import numpy as np
import pytest

from metrics.recognizers.dlib_resnet import DlibRecognizer
from redteam.calibration import calibrate, load_threshold, read_pairs, threshold_at_far
from redteam.core.errors import ConfigError, InputError
from redteam.faces import FaceDetector
from redteam.images import load_image


def test_threshold_at_far_accepts_at_most_that_share_of_impostors():
    impostor = np.linspace(0.5, 1.5, 2000)
    genuine = np.linspace(0.1, 0.7, 100)
    value = threshold_at_far(impostor, genuine, 1e-3)
    assert value["far_observed"] <= 1e-3
    assert value["reliable"] is True
    assert 0.0 < value["tar"] <= 1.0
    assert threshold_at_far(impostor[:50], genuine, 1e-3)["reliable"] is False


def test_calibrate_on_real_pairs_and_refuse_unreliable_thresholds(tmp_path, sample_dir):
    pairs = tmp_path / "pairs.csv"
    rows = [
        ("barack_obama/obama.jpg", "barack_obama/obama2.jpg", 1),
        ("barack_obama/obama.jpg", "joe_biden/biden.jpg", 0),
        ("barack_obama/obama2.jpg", "eileen_collins/astronaut.jpg", 0),
    ]
    pairs.write_text("image_a,image_b,same\n" + "".join(f"{sample_dir / a},{sample_dir / b},{s}\n" for a, b, s in rows))
    detector, recognizer = FaceDetector(), DlibRecognizer()

    def embed(model, path):
        import torch

        image = load_image(path)
        face = detector.detect(image.pixels)[0]
        chip = model.crop(image.pixels, model.locate(image.pixels, face))
        return model.embed(torch.from_numpy(chip).permute(2, 0, 1)[None].float() / 255.0)[0]

    report = calibrate(read_pairs(pairs), {"dlib": recognizer}, embed, str(pairs))
    entry = report["recognizers"]["dlib"]
    assert entry["n_genuine"] == 1 and entry["n_impostor"] == 2
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(report))
    with pytest.raises(ConfigError, match="only 2 impostor pairs"):
        load_threshold(path, "dlib", 1e-3)
    assert load_threshold(path, "facenet", 1e-3) is None


def test_pairs_file_errors(tmp_path):
    bad = tmp_path / "pairs.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="lacks column"):
        read_pairs(bad)
    bad.write_text("image_a,image_b,same\nx.jpg,y.jpg,maybe\n")
    with pytest.raises(InputError, match="line 2"):
        read_pairs(bad)


def test_calibration_of_another_model_is_refused(tmp_path):
    report = {
        "recognizers": {
            "dlib": {
                "fingerprint": "dlib-other-weights",
                "distance": "euclidean",
                "n_impostor": 20000,
                "thresholds": {"0.001": {"threshold": 0.5, "reliable": True}},
            }
        }
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps(report))
    with pytest.raises(ConfigError, match="another dlib model"):
        load_threshold(path, "dlib", 1e-3, "dlib-these-weights")
    threshold = load_threshold(path, "dlib", 1e-3, "dlib-other-weights")
    assert threshold.calibrated and threshold.value == 0.5 and threshold.far == 1e-3
