"""The heavy attack dependencies are extras (issue 22, install size): without diffusers and transformers (the
`diffusion` extra) or spandrel (`sr`), an audit runs, lists the attacks that need them as skipped with the
`pip install 'face-anon-redteam[EXTRA]'` that adds them, and exits 4 only when such an attack was asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: The CLI in a process where the extras' packages cannot be imported (as on a base install).
WITHOUT_EXTRAS = (
    "import sys\n"
    "for name in ('diffusers', 'transformers', 'spandrel'):\n"
    "    sys.modules[name] = None\n"
    "from redteam.cli import main\n"
    "sys.argv = ['redteam', *sys.argv[1:]]\n"
    "main()\n"
)

POLICY = 'min_samples = 5\nrequired_tiers = ["naive"]\n[limits.naive]\nverify = 0.5\n'
DIFFUSION = "pip install 'face-anon-redteam[diffusion]'"


def without_extras(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, *map(str, args)], capture_output=True, text=True, timeout=900)


def test_an_audit_without_the_extras_lists_their_attacks_as_skipped_with_the_install_hint(originals: Path, tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "p.toml").write_text(POLICY)
    common = ["--cache-dir", cache_dir, "-m", "box=box:margin=0.6", "--policy", tmp_path / "p.toml", "-r", "dlib"]
    # auto without the slower classical attacks: what matters here is what is skipped, and why
    auto = without_extras(
        "audit", originals, "--out", tmp_path / "auto", *common, "--attack", "auto", *[f"--attack=-{a}" for a in ("blind_deconv", "denoise", "jpeg_deblock")]
    )
    assert auto.returncode in (0, 1), auto.stderr
    assert "Traceback" not in auto.stderr
    skipped = {s["attack"]: s["reason"] for s in json.loads((tmp_path / "auto" / "summary.json").read_text())["skipped_attacks"]}
    for attack in ("sdedit", "sd_upscale", "inpaint", "diffpir"):
        assert DIFFUSION in skipped[attack], (attack, skipped[attack])
    assert "pip install 'face-anon-redteam[sr]'" in skipped["sr"]
    assert f"skipped sdedit, sd_upscale, inpaint, diffpir for box: needs `{DIFFUSION}` (diffusers is not installed)" in auto.stderr  # one line
    assert "skipped sr for box: needs `pip install 'face-anon-redteam[sr]'` (spandrel is not installed)" in auto.stderr
    requested = without_extras("audit", originals, "--out", tmp_path / "sdedit", *common, "--attack", "sdedit")
    assert requested.returncode == 4, requested.stderr
    assert DIFFUSION in requested.stderr and "Traceback" not in requested.stderr
    assert json.loads((tmp_path / "sdedit" / "summary.json").read_text())["exit_code"] == 4
