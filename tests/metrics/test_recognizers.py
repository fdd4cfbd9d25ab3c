"""Contract tests over every registered recognizer, plus weight resolution for FaceNet."""

import numpy as np
import pytest
import torch
from facenet_pytorch import InceptionResnetV1

from metrics.recognizers import RECOGNIZERS
from metrics.recognizers.dlib_resnet import DlibRecognizer
from metrics.recognizers.facenet import FaceNetRecognizer
from redteam.core.errors import ModelUnavailableError
from redteam.faces import FaceDetector
from redteam.images import load_image


def save_random_facenet(torch_home):
    """Random InceptionResnetV1 weights (with the 8631-way head of the real file) where facenet-pytorch looks."""
    model = InceptionResnetV1(pretrained=None, classify=True, num_classes=8631)
    target = torch_home / "checkpoints" / "20180402-114759-vggface2.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), target)
    return target


@pytest.fixture(scope="module")
def obama_and_biden(sample_dir):
    detector = FaceDetector()
    faces = {}
    for rel in ("barack_obama/obama.jpg", "barack_obama/obama2.jpg", "joe_biden/biden.jpg"):
        image = load_image(sample_dir / rel)
        faces[rel] = (image.pixels, detector.detect(image.pixels)[0])
    return faces


def build(name, torch_home):
    if name == "facenet":
        save_random_facenet(torch_home)
    return RECOGNIZERS[name]()


@pytest.mark.parametrize("name", sorted(RECOGNIZERS))
def test_recognizer_contract(name, offline_environment, obama_and_biden):
    recognizer = build(name, offline_environment)
    assert recognizer.availability().available
    pixels, face = obama_and_biden["barack_obama/obama.jpg"]
    alignment = recognizer.locate(pixels, face)
    chip = recognizer.crop(pixels, alignment)
    assert chip.shape == (recognizer.crop_size, recognizer.crop_size, 3) and chip.dtype == np.uint8
    chips = torch.from_numpy(np.stack([chip, chip])).permute(0, 3, 1, 2).float() / 255.0
    embeddings = recognizer.embed(chips)
    assert embeddings.shape == (2, recognizer.embedding_dim) and embeddings.dtype == torch.float32
    assert torch.allclose(embeddings[0], embeddings[1], atol=1e-5)  # deterministic
    assert recognizer.distances(embeddings, embeddings).shape == (2, 2)
    assert isinstance(recognizer.fingerprint, str) and recognizer.fingerprint
    assert recognizer.threshold.value > 0 and recognizer.threshold.source


def test_dlib_separates_people_and_recognizes_another_photo(obama_and_biden):
    recognizer = DlibRecognizer()
    chips = []
    for pixels, face in obama_and_biden.values():
        chips.append(recognizer.crop(pixels, recognizer.locate(pixels, face)))
    tensor = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255.0
    distances = recognizer.distances(*(2 * [recognizer.embed(tensor)]))
    same_person, different = distances[0, 1].item(), distances[0, 2].item()
    assert same_person < recognizer.threshold.value < different


def test_facenet_is_unavailable_without_weights_and_says_how_to_fix():
    availability = FaceNetRecognizer.availability()
    assert not availability.available
    assert "redteam models" in availability.reason
    with pytest.raises(ModelUnavailableError, match="facenet_vggface2"):
        _ = FaceNetRecognizer().fingerprint


def test_facenet_loads_weights_from_torch_home_and_normalises(offline_environment):
    path = save_random_facenet(offline_environment)
    recognizer = FaceNetRecognizer()
    embeddings = recognizer.embed(torch.rand(3, 3, 160, 160, generator=torch.Generator().manual_seed(0)))
    assert embeddings.shape == (3, 512)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-5)
    assert not recognizer.threshold.calibrated
    from redteam.core.provenance import sha256_file

    assert sha256_file(path) in recognizer.fingerprint


def test_facenet_rejects_a_file_that_is_not_inception_resnet(offline_environment):
    target = offline_environment / "checkpoints" / "20180402-114759-vggface2.pt"
    target.parent.mkdir(parents=True)
    torch.save({"conv.weight": torch.zeros(3)}, target)
    recognizer = FaceNetRecognizer()
    assert recognizer.fingerprint.startswith("facenet-vggface2-")  # keyed by the file's hash, without building the network
    with pytest.raises(ModelUnavailableError, match="not an InceptionResnetV1"):
        recognizer.embed(torch.rand(1, 3, 160, 160))


def test_injected_embedder_needs_no_weights():
    model = InceptionResnetV1(pretrained=None)
    recognizer = FaceNetRecognizer(embedder=model)
    assert recognizer.embed(torch.rand(1, 3, 160, 160)).shape == (1, 512)
