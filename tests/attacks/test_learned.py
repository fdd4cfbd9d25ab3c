"""The learned inversion: trained on the attacker's corpus, found by spec, refused when it has seen the
audited originals, and loaded strictly from its weights."""

import json

import pytest
import torch

from attacks import MethodInfo, build_attack
from attacks.learned import TinyUNet, checkpoint_path, load_inversion_weights
from redteam.anonymizers import build_method
from redteam.core.config import AuditConfig, MethodSource
from redteam.engine import AuditRun
from redteam.training import train_inversion


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("REDTEAM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_training_saves_weights_and_a_record_where_the_attack_looks(cache, sample_dir):
    spec = "mosaic:block=12"
    path = train_inversion(sample_dir / "barack_obama", spec, minutes=5, max_steps=6, seed=1)
    assert path == checkpoint_path(build_method(spec).spec) and path.is_file()
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["spec"] == "mosaic:block=12" and record["steps"] == 6 and len(record["corpus_files"]) == 3
    assert record["loss_first_100"] > 0
    assert path.suffix == ".safetensors"
    model = TinyUNet()
    model.load_state_dict(load_inversion_weights(path))  # safetensors: tensors only, nothing unpickled
    attack = build_attack("learned")
    known = MethodInfo("m", build_method(spec))
    assert attack.applicable(known)[0]
    images = torch.rand(1, 3, 150, 130, generator=torch.Generator().manual_seed(0))
    out = attack.reconstruct(images, method=known, generator=torch.Generator())
    assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1
    assert not attack.applicable(MethodInfo("m", build_method("mosaic:block=16")))[0]  # another spec: no checkpoint


def test_a_checkpoint_trained_on_the_audited_faces_is_refused(cache, sample_dir, tmp_path, cache_dir):
    train_inversion(sample_dir / "barack_obama", "mosaic:block=12", minutes=5, max_steps=2)
    config = AuditConfig(
        originals=sample_dir,
        out=tmp_path / "report",
        methods=(MethodSource("mosaic", "reference", spec="mosaic:block=12"),),
        cache_dir=cache_dir,
        recognizers=("dlib",),
        attacks=("none", "learned"),
    )
    result = AuditRun(config).run()
    (skipped,) = result.skipped_attacks
    assert skipped.attack == "learned" and "audited originals" in skipped.reason
    assert {row.attack for row in result.rows} == {"none"}


def test_untrained_method_is_skipped_with_the_command_to_train(cache):
    ok, reason = build_attack("learned").applicable(MethodInfo("m", build_method("gaussian_blur:sigma=3")))
    assert not ok and "redteam attack train" in reason
    ok, reason = build_attack("learned").applicable(MethodInfo("m", None))
    assert not ok and "observed" in reason


def test_a_checkpoint_that_differs_from_its_record_is_refused(cache, sample_dir):
    spec = "mosaic:block=12"
    path = train_inversion(sample_dir / "barack_obama", spec, minutes=5, max_steps=2, seed=1)
    method = MethodInfo("m", build_method(spec))
    assert build_attack("learned").applicable(method)[0]
    assert build_attack("learned").provenance(method)["steps"] == "2"
    torch.save(TinyUNet().state_dict(), path)  # swapped weights: not what the record describes
    ok, reason = build_attack("learned").applicable(method)
    assert not ok and "does not match the SHA-256 in its training record" in reason


def test_a_pickle_payload_where_the_inversion_looks_is_refused(cache, tmp_path):
    """A plain checkpoint still loads (restricted unpickling); a pickle payload is refused by name, never run."""
    from redteam.core.errors import InputError

    plain = tmp_path / "plain.pt"
    torch.save(TinyUNet().state_dict(), plain)
    TinyUNet().load_state_dict(load_inversion_weights(plain))
    sentinel = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {sentinel}",))

    hostile = tmp_path / "hostile.pt"
    torch.save({"w": Payload()}, hostile)
    with pytest.raises(InputError, match="not a plain tensor checkpoint: refused"):
        load_inversion_weights(hostile)
    disguised = tmp_path / "disguised.safetensors"  # the name does not make it safetensors
    disguised.write_bytes(hostile.read_bytes())
    with pytest.raises(InputError, match="disguised.safetensors"):
        load_inversion_weights(disguised)
    assert not sentinel.exists()
