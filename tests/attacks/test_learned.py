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


# -- a family trained to a plateau ------------------------------------------------------------------


def test_early_stopping_stops_when_the_validation_score_stops_improving():
    from redteam.training import PlateauStopper

    stopper = PlateauStopper(patience=3, min_delta=0.01)
    sequence = [1.0, 0.8, 0.7, 0.699, 0.71, 0.695, 0.72]  # 0.699 and 0.695 are within 1% of 0.7: no improvement
    stopped_at = None
    for step, value in enumerate(sequence):
        stopper.update(value, step)
        if stopper.should_stop:
            stopped_at = step
            break
    assert stopped_at == 5 and stopper.best == 0.7 and stopper.best_step == 2
    assert not PlateauStopper(patience=2).update(float("nan"), 0)  # a NaN score is never a best


def test_family_specs_are_parsed_validated_and_matched():
    from attacks.learned import FamilySpec
    from redteam.core.errors import ConfigError

    family = FamilySpec.parse("gaussian_blur:sigma=3..24")
    assert family.spec == "gaussian_blur:sigma=3.0..24.0" and FamilySpec.parse(family.spec) == family
    assert family.value_of(build_method("gaussian_blur:sigma=10")) == 10.0
    assert family.value_of(build_method("gaussian_blur:sigma=30")) is None  # outside the range
    assert family.value_of(build_method("gaussian_blur:sigma=10,shape=ellipse")) is None  # another fixed parameter
    assert family.value_of(build_method("mosaic:block=10")) is None
    assert FamilySpec.parse("mosaic:block=6..24,shape=ellipse").spec == "mosaic:block=6..24,shape=ellipse"
    for bad, message in [
        ("gaussian_blur:sigma=3", "exactly one parameter range"),
        ("gaussian_blur:sigma=9..3", "empty or not positive"),
        ("mosaic:block=6..24 | jpeg", "2 stages"),
        ("mosaic:shape=rect..ellipse", "not numeric"),
    ]:
        with pytest.raises(ConfigError, match=message):
            FamilySpec.parse(bad)


class _TinyRecognizer(torch.nn.Module):
    """A random stand-in for dlib's network in the identity loss: 150 x 150 chips (0..255) -> 8-d."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 5, stride=5)

    def forward(self, x):
        return self.conv(x / 255.0).mean(dim=(2, 3))


def tiny_identity():
    from metrics.recognizers.dlib_resnet import DlibRecognizer
    from redteam.training import IdentityModel

    recognizer = DlibRecognizer()
    network = _TinyRecognizer()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return IdentityModel(network, recognizer.locate, recognizer.crop, "tiny-random")


def test_a_family_trains_to_a_plateau_and_the_learned_attack_uses_it_inside_its_range(cache, sample_dir):
    from attacks.learned import FamilySpec, family_checkpoint_path
    from redteam.training import train_until_plateau

    lines = []
    path = train_until_plateau(
        sample_dir / "barack_obama", "gaussian_blur:sigma=2..8", max_minutes=5, seed=1, log=lines.append,
        max_steps=4, eval_every=2, draws=1, identity=tiny_identity(),
    )  # fmt: skip
    assert path == family_checkpoint_path(FamilySpec.parse("gaussian_blur:sigma=2..8")) and path.suffix == ".safetensors"
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["spec"] == "gaussian_blur:sigma=2.0..8.0" and record["stopped"] == "max steps" and record["steps"] == 4
    assert [point["step"] for point in record["curve"]] == [0, 2, 4]
    assert all(point["val_identity"] >= 0 and point["val_l1"] > 0 for point in record["curve"])
    assert record["loss"]["identity"] == "tiny-random" and record["validation_files"] == 1 and len(record["corpus_files"]) == 3
    model = TinyUNet(conditioned=True)
    model.load_state_dict(load_inversion_weights(path))  # safetensors, nothing unpickled
    attack = build_attack("learned")
    inside = MethodInfo("m", build_method("gaussian_blur:sigma=5"))
    assert attack.applicable(inside)[0]
    assert attack.provenance(inside)["family"] == "gaussian_blur:sigma=2.0..8.0"
    assert attack.provenance(inside)["training_curve"].startswith("val_identity by step: 0=")  # the curve goes into the report
    images = torch.rand(1, 3, 140, 120, generator=torch.Generator().manual_seed(0))
    out = attack.reconstruct(images, method=inside, generator=torch.Generator())
    assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1
    ok, reason = attack.applicable(MethodInfo("m", build_method("gaussian_blur:sigma=12")))  # outside the range
    assert not ok and "redteam models train" in reason


def test_family_training_stops_at_the_plateau(cache, sample_dir, monkeypatch):
    """A validation score that never improves stops the loop after `patience` evaluations, keeping the
    weights of the best one (the first)."""
    import redteam.training as training

    monkeypatch.setattr(training, "_evaluate", lambda model, pairs, identity, device: {"val_l1": 0.5, "val_identity": float("nan")})
    path = training.train_until_plateau(
        sample_dir / "barack_obama", "mosaic:block=6..12", max_minutes=5, max_steps=100, eval_every=1, patience=3, draws=1, identity_weight=0.0
    )
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["stopped"] == "plateau" and record["steps"] == 3 and record["best_step"] == 0
    assert record["monitored"] == "val_l1" and record["loss"]["identity"] is None


def test_the_newest_of_an_exact_and_a_family_checkpoint_is_used(cache, sample_dir):
    """A family trained after an exact-spec model replaces it for the specs in its range, and the other way round."""
    import os

    from redteam.training import train_until_plateau

    spec = "mosaic:block=8"
    exact = train_inversion(sample_dir / "barack_obama", spec, minutes=5, max_steps=1, seed=1)
    family = train_until_plateau(sample_dir / "barack_obama", "mosaic:block=6..12", max_minutes=5, max_steps=1, eval_every=1, draws=1, identity_weight=0.0)
    os.utime(exact, (1_000_000, 1_000_000))
    method = MethodInfo("m", build_method(spec))
    assert build_attack("learned").provenance(method)["checkpoint"] == str(family)
    os.utime(family, (900_000, 900_000))
    assert build_attack("learned").provenance(method)["checkpoint"] == str(exact)


# -- the trained parrot -------------------------------------------------------------------------------


def _labelled_corpus(sample_dir, target):
    """Five 'people' made of the sample photos: each photo and its mirror image are one person's two photos."""
    from PIL import Image, ImageOps

    for photo in sorted(sample_dir.rglob("*.jpg")):
        person = target / f"{photo.parent.name}-{photo.stem}"
        person.mkdir(parents=True)
        image = Image.open(photo).convert("RGB")
        image.save(person / "a.png")
        ImageOps.mirror(image).save(person / "b.png")
    return target


class _TinyDlib:
    """dlib's alignment with a random 16-d embedding in place of its network (offline and fast)."""

    embedding_dim = 16

    def __init__(self):
        from metrics.recognizers.dlib_resnet import DlibRecognizer

        self._dlib = DlibRecognizer()
        self.locate, self.crop = self._dlib.locate, self._dlib.crop
        self._projection = torch.randn(3 * 15 * 15, 16, generator=torch.Generator().manual_seed(0))
        self.fingerprint = "tiny-dlib"

    def embed(self, chips):
        return torch.nn.functional.adaptive_avg_pool2d(chips, 15).flatten(1) @ self._projection


def test_the_parrot_trains_a_head_saves_it_and_refuses_the_audited_people(cache, sample_dir, tmp_path):
    from attacks.trained_parrot import TrainedParrot, load_heads, parrot_path, read_record
    from redteam.parrot_training import train_parrot

    corpus = _labelled_corpus(sample_dir, tmp_path / "corpus")
    audited = tmp_path / "audited"
    (audited / "joe_biden-biden").mkdir(parents=True)
    (corpus / "joe_biden-biden" / "a.png").rename(audited / "joe_biden-biden" / "a.png")
    lines = []
    path = train_parrot(
        corpus, "gaussian_blur:sigma=4", max_minutes=5, max_steps=4, eval_every=2, augmentations=2, exclude=audited,
        recognizer_objects={"dlib": _TinyDlib()}, log=lines.append,
    )  # fmt: skip
    assert path == parrot_path(build_method("gaussian_blur:sigma=4").spec) and path.suffix == ".safetensors"
    record = read_record(path)
    assert "joe_biden-biden" not in record["identities"] and len(record["identities"]) == 4  # the audited person left out
    head = record["recognizers"]["dlib"]
    assert head["stopped"] == "max steps" and [p["step"] for p in head["curve"]] == [0, 2, 4]
    assert head["fingerprint"] == "tiny-dlib" and record["training_identities"] + len(record["validation_identities"]) == 4
    heads = load_heads(path, record)
    out = heads["dlib"](torch.randn(3, 16))
    assert out.shape == (3, 16) and torch.allclose(out.norm(dim=1), heads["dlib"].scale.expand(3))
    attack = TrainedParrot()
    method = MethodInfo("m", build_method("gaussian_blur:sigma=4"))
    ok, reason = attack.applicable(method)
    assert not ok and "own embedding space" in reason  # an engine without the hook would score the plain parrot
    assert attack.applicable(MethodInfo("m", build_method("gaussian_blur:sigma=4"), attack_embeddings=True)).ok
    refused = attack.applicable(
        MethodInfo("m", build_method("gaussian_blur:sigma=4"), audited_identities=frozenset({"barack_obama-obama"}), attack_embeddings=True)
    )
    assert not refused.ok and "trained on 1 of the audited people" in refused.reason
    assert attack.embedding_space(method, "dlib", "tiny-dlib") is not None
    assert attack.embedding_space(method, "dlib", "other-weights") is None  # trained on other weights: plain parrot
    ok, reason = attack.applicable(MethodInfo("m", build_method("gaussian_blur:sigma=5")))
    assert not ok and "train-parrot" in reason


def test_the_parrot_needs_enough_labelled_people(cache, sample_dir):
    from redteam.core.errors import InputError
    from redteam.parrot_training import train_parrot

    with pytest.raises(InputError, match="at least 4 are needed"):
        train_parrot(sample_dir, "gaussian_blur:sigma=4", max_minutes=1, recognizer_objects={"dlib": _TinyDlib()})


def test_models_train_commands_refuse_a_cap_that_is_not_positive(cache, sample_dir):
    from typer.testing import CliRunner

    from redteam.cli import app

    for command in (["models", "train", "gaussian_blur:sigma=3..24"], ["models", "train-parrot", "--method", "gaussian_blur:sigma=10"]):
        result = CliRunner().invoke(app, [*command, "--faces", str(sample_dir), "--max-minutes", "0"])
        assert result.exit_code == 2 and "--max-minutes must be positive" in result.output


def test_steps_after_the_last_evaluation_are_evaluated_when_the_cap_stops_training(cache, sample_dir):
    from attacks.learned import training_curve
    from redteam.training import train_until_plateau

    path = train_until_plateau(sample_dir / "barack_obama", "mosaic:block=6..12", max_minutes=5, max_steps=3, eval_every=2, draws=1, identity_weight=0.0)
    record = json.loads(path.with_suffix(".json").read_text())
    assert [point["step"] for point in record["curve"]] == [0, 2, 3] and record["stopped"] == "max steps"
    assert training_curve(record).startswith("val_l1 by step: 0=") and " 3=" in training_curve(record)


@pytest.mark.slow
def test_an_audit_ranks_the_trained_parrot_in_its_own_space(cache, sample_dir, shared_faces, tmp_path):
    """End to end: a parrot trained (real dlib) on other people runs in the default audit's parrot tier, its
    probes and gallery ranked through its head (its similarities differ from the plain parrot's on the
    same anonymized faces), with its checkpoint's hash in the provenance."""
    from PIL import Image, ImageOps

    from redteam.core.config import AuditConfig, MethodSource
    from redteam.engine import AuditRun
    from redteam.parrot_training import train_parrot

    corpus = tmp_path / "corpus"  # people not in the sample: each photo and its mirror are one person's two photos
    for photo in sorted((shared_faces / "dev" / "identities").rglob("*.*")):
        if photo.parent.name in ("barack_obama", "joe_biden") or photo.suffix.lower() not in (".jpg", ".png"):
            continue
        person = corpus / f"{photo.parent.name}-{photo.stem}"
        person.mkdir(parents=True)
        image = Image.open(photo).convert("RGB")
        image.save(person / "a.png")
        ImageOps.mirror(image).save(person / "b.png")
    spec = build_method("gaussian_blur:sigma=4").spec
    train_parrot(corpus, spec, max_minutes=5, max_steps=6, eval_every=3, augmentations=1)
    config = AuditConfig(
        originals=sample_dir,
        out=tmp_path / "report",
        methods=(MethodSource("blur", "reference", spec=spec),),
        cache_dir=tmp_path / "run-cache",
        recognizers=("dlib",),
        attacks=("none", "parrot", "trained_parrot"),
        builtin_policy="demo_policy.toml",
    )
    result = AuditRun(config).run()
    assert not [s for s in result.skipped_attacks if s.attack == "trained_parrot"]
    rows = {(row.attack, row.face_id): row for row in result.rows if row.recognizer == "dlib"}
    trained = [key for key in rows if key[0] == "trained_parrot"]
    assert trained and {rows[key].tier for key in trained} == {"parrot"}
    assert any(rows[key].similarity != pytest.approx(rows[("parrot", key[1])].similarity, abs=1e-6) for key in trained)
    assert result.attack_models["blur"]["trained_parrot"]["sha256"]
