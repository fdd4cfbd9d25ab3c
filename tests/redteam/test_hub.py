"""An audit never tries the model hub: no download function of huggingface_hub is even called."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from redteam.core.config import AuditConfig, MethodSource
from redteam.engine import AuditRun
from redteam.runlog import RunLog


def test_an_audit_calls_no_hub_download_function(sample_dir: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22: redteam.log held huggingface_hub's `hf_hub_download ... Downloading` warning: diffusers was
    handed a hub id and looked it up through `hf_hub_download` (local_files_only, but a hub call all the
    same). With every download function replaced by one that records and raises, nothing calls them."""
    import deepinv  # noqa: F401 - imported first, so their references to the hub functions are replaced too
    import diffusers  # noqa: F401
    import huggingface_hub

    from redteam.core import hub

    calls: list[str] = []
    originals = {name: getattr(huggingface_hub, name) for name in ("hf_hub_download", "snapshot_download")}

    def recorder(name: str):
        def refuse(*args: object, **kwargs: object) -> object:
            calls.append(f"{name}{args}")
            raise OSError(f"test: {name} called during an audit")

        return refuse

    for module in list(sys.modules.values()):
        for name, function in originals.items():
            if getattr(module, name, None) is function:
                monkeypatch.setattr(module, name, recorder(name))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # as on a connected machine: the audit itself must stay offline
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(hub, "_failed", {})
    monkeypatch.setattr(hub, "_loaded", {})
    config = AuditConfig(
        originals=sample_dir,
        out=tmp_path / "out",
        methods=(MethodSource("mosaic", "reference", spec="mosaic:block=12"),),
        cache_dir=cache_dir,
        recognizers=("dlib",),
        attacks=("none", "sdedit", "sd_upscale", "diffpir", "inpaint"),
    )
    runlog = RunLog()
    with runlog.capturing():
        result = AuditRun(config).run()
    assert calls == []
    assert not [warning for warning in runlog.warnings if "hf_hub" in warning or "Downloading" in warning]
    skipped = {s.attack: s.reason for s in result.skipped_attacks}
    for attack in ("sdedit", "sd_upscale", "diffpir"):  # each missing model named once, with the command that fetches it
        assert "an audit never downloads" in skipped[attack] and "redteam models download" in skipped[attack], attack
