"""On real photos with several per person (../shared/faces/dev/identities), dlib must see through
mild blur and mosaic and be near chance behind a solid box over the head."""

import pytest

from redteam.core.config import AuditConfig, MethodSource
from redteam.engine import AuditRun

pytestmark = pytest.mark.slow  # real photos from ../shared, about a minute


@pytest.fixture(scope="module")
def result(shared_faces, cache_dir, tmp_path_factory):
    config = AuditConfig(
        originals=shared_faces / "dev" / "identities",
        out=tmp_path_factory.mktemp("real"),
        methods=(
            MethodSource("blur", "reference", spec="gaussian_blur:sigma=2"),
            MethodSource("mosaic", "reference", spec="mosaic:block=12"),
            MethodSource("box", "reference", spec="box:margin=0.6"),
        ),
        cache_dir=cache_dir,
        recognizers=("dlib",),
        attacks=("none",),
    )
    return AuditRun(config).run()


def rate(result, method, metric):
    (verdict,) = [v for v in result.metric_verdicts if v.method == method and v.metric == metric]
    return verdict


def test_mild_blur_and_mosaic_are_identified_from_other_photos(result):
    for method in ("blur", "mosaic"):
        verdict = rate(result, method, "rank1_other")
        assert verdict.estimate.trials >= 10
        assert verdict.estimate.rate >= 0.8, (method, verdict.estimate)
        assert verdict.estimate.low > verdict.chance  # far above chance, with confidence


def test_solid_box_over_the_head_is_near_chance(result):
    for metric in ("rank1", "rank1_other"):
        verdict = rate(result, "box", metric)
        assert verdict.estimate.low <= verdict.chance <= verdict.estimate.high, (metric, verdict.estimate, verdict.chance)
    assert rate(result, "box", "verify").estimate.successes == 0


def test_k_same_keeps_rank1_within_one_over_k(shared_faces, cache_dir, tmp_path):
    k = 4
    config = AuditConfig(
        originals=shared_faces / "dev" / "identities",
        out=tmp_path / "report",
        methods=(MethodSource("k_same", "reference", spec=f"k_same:k={k}"),),
        cache_dir=cache_dir,
        recognizers=("dlib",),
        attacks=("none",),
    )
    result = AuditRun(config).run()
    verdict = rate(result, "k_same", "rank1")
    assert verdict.estimate.trials >= 16
    assert verdict.estimate.low <= 1.0 / k, verdict.estimate  # at most 1/k, within its confidence margin
    assert verdict.estimate.rate <= 1.0 / k + 0.1
