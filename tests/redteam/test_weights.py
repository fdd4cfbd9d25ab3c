import pytest

from redteam.core.errors import InputError, ModelUnavailableError
from redteam.core.weights import MODEL_FILES, download_model_file, get_model_file, import_model_file


def test_catalog_resolves_through_torch_home(offline_environment):
    facenet = get_model_file("facenet_vggface2")
    assert facenet.path() == offline_environment / "checkpoints" / "20180402-114759-vggface2.pt"
    assert not facenet.is_available()
    with pytest.raises(ModelUnavailableError, match="redteam models"):
        facenet.require()
    for name in ("mtcnn", "dlib_resnet", "dlib_landmarks5", "lpips_alex_linear"):
        assert MODEL_FILES[name].is_available(), f"{name} should ship inside a pip package"


def test_import_verifies_the_published_hash_and_copies_atomically(tmp_path, offline_environment):
    wrong = tmp_path / "alexnet.pth"
    wrong.write_bytes(b"not alexnet")
    with pytest.raises(InputError, match="published prefix"):
        import_model_file("alexnet_trunk", wrong)
    assert not get_model_file("alexnet_trunk").is_available()
    with pytest.raises(InputError, match="ships inside a pip package"):
        import_model_file("dlib_resnet", wrong)
    with pytest.raises(InputError, match="unknown model"):
        import_model_file("arcface", wrong)
    with pytest.raises(InputError, match="is a hub model"):
        import_model_file("ddpm_celebahq", wrong)


def test_download_fails_closed_without_network(monkeypatch):
    import urllib.request

    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(ModelUnavailableError, match="redteam models import facenet_vggface2"):
        download_model_file("facenet_vggface2")
    assert not get_model_file("facenet_vggface2").is_available()
    assert not list(get_model_file("facenet_vggface2").path().parent.glob("*.part"))


class _Payload:
    """Unpickling this runs `touch SENTINEL`: what a hostile checkpoint does to a plain torch.load."""

    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.sentinel}",))


def test_a_pickle_payload_checkpoint_is_refused_by_name_and_never_run(tmp_path):
    import torch

    from attacks.super_resolution import load_descriptor
    from redteam.core.errors import InputError
    from redteam.core.weights import load_plain_checkpoint

    sentinel = tmp_path / "ran"
    hostile = tmp_path / "weights.pth"
    torch.save({"conv.weight": _Payload(str(sentinel))}, hostile)
    with pytest.raises(InputError, match="weights.pth: this file is not a plain tensor checkpoint: refused.*posix.system"):
        load_plain_checkpoint(hostile)
    with pytest.raises(InputError, match="not a plain tensor checkpoint"):
        load_descriptor(hostile, torch.device("cpu"))
    assert not sentinel.exists()
    plain = tmp_path / "plain.pth"
    torch.save({"w": torch.ones(2)}, plain)
    assert torch.equal(load_plain_checkpoint(plain)["w"], torch.ones(2))


def test_an_unknown_download_lists_every_model_that_downloads() -> None:
    from redteam.core.weights import HUB_MODELS, MODEL_FILES, download_model_file

    with pytest.raises(InputError) as raised:
        download_model_file("nosuch")
    fix = str(raised.value)
    assert all(name in fix for name in HUB_MODELS)  # hub models included
    assert all((name in fix) == (entry.url is not None) for name, entry in MODEL_FILES.items())  # pip-shipped ones left out
