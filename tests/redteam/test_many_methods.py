"""The demo set through a dozen reference methods at once, including the layered pipeline, k-Same, a
solid box and a synthetic replacement (tiny random diffusion pipeline): every one is in the report."""

import pytest

from redteam.core.config import AuditConfig, MethodSource
from redteam.engine import AuditRun
from reports import write_reports

METHODS = {
    "blur": "gaussian_blur:sigma=2",
    "box_blur": "box_blur:size=15",
    "motion": "motion_blur:length=15,angle=30",
    "mosaic": "mosaic:block=12",
    "downsample": "downsample:factor=8",
    "noise": "noise:sigma=0.1",
    "jpeg": "jpeg:quality=10",
    "eye_bar": "eye_bar",
    "box": "box:color=black,margin=0.5",
    "layered": "downsample:factor=4 | jpeg:quality=15 | noise:sigma=0.05",
    "k_same": "k_same:k=2",
    "deface": "box_blur:fraction=0.5,context=0,margin=0.3,shape=ellipse",
    "replace_then_blur": "synthetic:size=32,steps=2 | gaussian_blur:sigma=4",
}


@pytest.mark.slow
def test_a_dozen_methods_in_one_audit(sample_dir, tmp_path, cache_dir, tiny_inpainting):
    config = AuditConfig(
        originals=sample_dir,
        out=tmp_path / "report",
        methods=tuple(MethodSource(name, "reference", spec=spec) for name, spec in METHODS.items()),
        cache_dir=cache_dir,
        recognizers=("dlib",),
        builtin_policy="demo_policy.toml",
        attacks=("none", "parrot"),
    )
    result = AuditRun(config).run()
    assert [v.method for v in result.method_verdicts] == list(METHODS)
    assert {row.method for row in result.rows} == set(METHODS)
    assert tiny_inpainting  # the synthetic stage really ran through the diffusers pipeline
    markdown = write_reports(result, tmp_path / "report")["markdown"].read_text()
    for name in METHODS:
        assert f"| {name} | reference |" in markdown
    verdicts = {v.method: v.verdict.value for v in result.method_verdicts}
    assert verdicts["blur"] == "FAIL" and verdicts["box"] != "FAIL"
    k_same_rank1 = [v for v in result.metric_verdicts if v.method == "k_same" and v.metric == "rank1"][0]
    assert k_same_rank1.estimate.rate <= 0.5
