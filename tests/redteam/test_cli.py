"""The CLI through a real process: exit-code contract, demo, fail-closed, inputs untouched."""

import json
import os
import subprocess
import sys

import pytest
import torch
from facenet_pytorch import InceptionResnetV1


def redteam(*args, cwd=None, columns=200):
    env = dict(os.environ, COLUMNS=str(columns))
    return subprocess.run([sys.executable, "-m", "redteam", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def write_policy(path, body):
    path.write_text(body)
    return path


PASSABLE = """
min_samples = 5
required_tiers = ["naive"]
{extra}
[limits.naive]
verify = 0.5
"""


def audit(originals, tmp_path, cache_dir, *extra):
    return redteam("audit", originals, "--out", tmp_path / "report", "--cache-dir", cache_dir, *extra)


def test_exit_0_when_every_method_passes(originals, tmp_path, cache_dir, hashes_of):
    before = hashes_of(originals)
    policy = write_policy(tmp_path / "p.toml", PASSABLE.format(extra=""))
    done = audit(originals, tmp_path, cache_dir, "--method", "box:margin=0.6", "--policy", policy, "--attack", "none")  # a bare spec
    assert done.returncode == 0, done.stderr
    assert "PASS" in done.stdout
    assert hashes_of(originals) == before
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["methods"][0]["verdict"] == "PASS" and summary["methods"][0]["method"] == "box"  # named after its family
    assert (summary["overall"], summary["exit_code"]) == ("PASS", 0) and summary["finished_at"].endswith("+00:00")


def test_names_with_markup_are_shown_as_written(originals, tmp_path, cache_dir):
    """A method named like terminal markup is printed literally: never a styled 'PASS', never a crash."""
    policy = write_policy(tmp_path / "p.toml", PASSABLE.format(extra=""))
    done = audit(
        originals, tmp_path, cache_dir, "--method", "[bold red]PASS[/bold red]=box:margin=0.6", "--method", "[/x]=box", "--policy", policy, "--attack", "none"
    )
    assert done.returncode == 0, done.stderr
    assert "[bold red]PASS[/bold red]" in done.stdout and "[/x]" in done.stdout and "Traceback" not in done.stderr


def test_exit_1_when_a_method_fails(originals, tmp_path, cache_dir):
    policy = write_policy(tmp_path / "p.toml", PASSABLE.format(extra=""))
    done = audit(originals, tmp_path, cache_dir, "--method", "blur=gaussian_blur:sigma=2", "--policy", policy, "--attack", "none")
    assert done.returncode == 1, done.stderr
    assert "FAIL" in done.stdout


def test_exit_4_and_no_pass_when_the_policy_requires_a_missing_model(originals, tmp_path, cache_dir):
    policy = write_policy(tmp_path / "p.toml", PASSABLE.format(extra='required_recognizers = ["facenet"]'))
    done = audit(originals, tmp_path, cache_dir, "--method", "box=box:margin=0.6", "--policy", policy, "--attack", "none")
    assert done.returncode == 4, done.stderr
    assert "facenet" in done.stderr
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["methods"][0]["verdict"] == "INCONCLUSIVE" and (summary["overall"], summary["exit_code"]) == ("INCONCLUSIVE", 4)
    assert any("facenet" in reason for reason in summary["methods"][0]["reasons"])


def test_exit_4_when_lpips_is_required_but_its_trunk_is_missing(originals, tmp_path, cache_dir):
    policy = write_policy(tmp_path / "p.toml", PASSABLE.format(extra='required_metrics = ["lpips"]'))
    done = audit(originals, tmp_path, cache_dir, "--method", "box=box:margin=0.6", "--policy", policy, "--attack", "none")
    assert done.returncode == 4
    assert "lpips" in done.stderr.lower()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--method", "blur=gaussian_blur:sigma=-1"], 3, "outside"),
        (["--method", "=box"], 2, "NAME=VALUE"),
        (["--method", "blur"], 3, "unknown method"),  # a bare spec: the method's own name
        (["--method", "b=box", "--method", "b=box:margin=0.6"], 2, "names repeat"),
        ([], 2, "no method"),
        (["--method", "b=box", "--attack", "magic"], 3, "unknown attack"),
        (["--anonymized", "x=/does/not/exist"], 3, "does not exist"),
        (["--method", "b=box", "--policy", "/does/not/exist.toml"], 3, "cannot be read"),
        (["--method", "b=box", "--bogus-option"], 2, "No such option"),
    ],
)
def test_usage_and_input_errors_have_documented_codes_and_no_traceback(originals, tmp_path, cache_dir, args, code, message):
    done = audit(originals, tmp_path, cache_dir, *args)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_policy_is_exit_3(originals, tmp_path, cache_dir):
    policy = write_policy(tmp_path / "p.toml", "[limits.naive]\nrank1 = 2.0\n")
    done = audit(originals, tmp_path, cache_dir, "--method", "b=box", "--policy", policy)
    assert done.returncode == 3 and "must be a rate" in done.stderr


def test_missing_originals_is_exit_3(tmp_path, cache_dir):
    done = audit(tmp_path / "none", tmp_path, cache_dir, "--method", "b=box")
    assert done.returncode == 3 and "does not exist" in done.stderr


def test_output_inside_the_input_is_refused(originals, cache_dir, hashes_of):
    before = hashes_of(originals)
    done = redteam("audit", originals, "--out", originals / "report", "--cache-dir", cache_dir, "--method", "b=box")
    assert done.returncode == 2 and "inside input folder" in done.stderr
    assert hashes_of(originals) == before


@pytest.mark.slow
def test_demo_runs_offline_and_shows_mild_blur_failing_for_dlib(tmp_path, cache_dir, sample_dir, hashes_of):
    before = hashes_of(sample_dir)
    done = redteam("demo", "--out", tmp_path / "demo", "--cache-dir", cache_dir)
    assert done.returncode == 0, done.stderr
    assert "report.html" in done.stdout
    assert hashes_of(sample_dir) == before
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    mild = [v for v in summary["verdicts"] if v["method"] == "blur_mild" and v["recognizer"] == "dlib" and v["tier"] == "naive"]
    assert {v["metric"]: v["verdict"] for v in mild}["verify"] == "FAIL"
    assert {v["metric"]: v["n"] for v in mild} == {"verify": 5, "rank1": 5, "rank1_other": 3}
    assert all(v["ci_low"] is not None and v["ci_high"] is not None for v in mild)
    assert {v["metric"]: v["chance"] for v in mild}["rank1"] == pytest.approx(0.2)
    for name in ("report.html", "report.md", "results.parquet", "summary.json"):
        assert (tmp_path / "demo" / name).stat().st_size > 0


@pytest.mark.slow
def test_models_lists_and_imports_weights(tmp_path, offline_environment):
    listing = redteam("models")
    assert listing.returncode == 0
    assert "facenet_vggface2" in listing.stdout and "missing" in listing.stdout and "available" in listing.stdout
    weights = tmp_path / "downloaded.pt"
    torch.save(InceptionResnetV1(pretrained=None, classify=True, num_classes=8631).state_dict(), weights)
    imported = redteam("models", "import", "facenet_vggface2", weights)
    assert imported.returncode == 0, imported.stderr
    assert (offline_environment / "checkpoints" / "20180402-114759-vggface2.pt").is_file()
    garbage = tmp_path / "garbage.pt"
    torch.save({"x": torch.zeros(1)}, garbage)
    refused = redteam("models", "import", "facenet_vggface2", garbage)
    assert refused.returncode == 4 and "InceptionResnetV1" in refused.stderr
    offline = redteam("models", "download", "alexnet_trunk")
    assert offline.returncode == 4 and "redteam models import alexnet_trunk" in offline.stderr


@pytest.mark.slow
def test_models_catalog_includes_the_attack_checkpoints_and_hub_models(tmp_path, offline_environment):
    listing = redteam("models", "list", "--full", columns=1000)
    for text in (
        "realesrgan_x4plus",
        "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
        "gfpgan_v1.4",
        "hub:google/ddpm-celebahq-256",
        "hub:stabilityai/stable-diffusion-x4-upscaler",
        "OpenRAIL",
    ):
        assert text in listing.stdout, text
    offline = redteam("models", "download", "ddpm_celebahq")
    assert offline.returncode == 4 and "HF_HOME" in offline.stderr and "Traceback" not in offline.stderr
    refused = redteam("models", "import", "sd_x4_upscaler", tmp_path)
    assert refused.returncode != 0 and "hub model" in refused.stderr


@pytest.mark.slow
def test_list_commands_show_the_registries():
    attacks = redteam("list", "attacks")
    assert attacks.returncode == 0 and "parrot" in attacks.stdout and "naive" in attacks.stdout
    methods = redteam("list", "methods")
    assert "gaussian_blur" in methods.stdout and "sigma=6.0" in methods.stdout
    recognizers = redteam("list", "recognizers")
    assert "dlib" in recognizers.stdout and "facenet" in recognizers.stdout


@pytest.mark.slow
def test_anonymize_and_calibrate_leave_their_inputs_untouched(originals, tmp_path, hashes_of):
    before = hashes_of(originals)
    done = redteam("anonymize", originals, tmp_path / "out", "--method", "mosaic:block=12 | jpeg:quality=20", "--seed", 1)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "joe_biden" / "biden.png").is_file()
    inside = redteam("anonymize", originals, originals / "out", "--method", "box")
    assert inside.returncode == 2 and "inside input folder" in inside.stderr
    bad = redteam("anonymize", originals, tmp_path / "x", "--method", "mosaic:block=1")
    assert bad.returncode == 3 and "outside" in bad.stderr
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "image_a,image_b,same\n"
        f"{originals}/barack_obama/obama.jpg,{originals}/barack_obama/obama2.jpg,1\n"
        f"{originals}/barack_obama/obama.jpg,{originals}/joe_biden/biden.jpg,0\n"
    )
    calibrated = redteam("calibrate", "--pairs", pairs, "--out", tmp_path / "thresholds.json", "--recognizer", "dlib")
    assert calibrated.returncode == 0, calibrated.stderr
    assert "unreliable" in calibrated.stdout  # one impostor pair cannot support FAR 1e-3
    assert hashes_of(originals) == before


@pytest.mark.slow
def test_attack_command_reconstructs_a_folder(sample_dir, tmp_path, hashes_of):
    anonymized = tmp_path / "mosaic"
    assert redteam("anonymize", sample_dir, anonymized, "--method", "mosaic:block=12").returncode == 0
    before = hashes_of(anonymized)
    done = redteam("attack", anonymized, tmp_path / "restored", "--attack", "lanczos", "--originals", sample_dir)
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "restored" / "redteam-attack.json").read_text())
    assert record["attack"] == "lanczos" and record["method"] == "mosaic:block=12" and len(record["files"]) == 5
    assert hashes_of(anonymized) == before
    wrong = redteam("attack", anonymized, tmp_path / "x", "--attack", "wiener")
    assert wrong.returncode == 3 and "no blur stage" in wrong.stderr


@pytest.mark.slow
def test_attack_train_saves_a_checkpoint_with_its_record(tmp_path, sample_dir, hashes_of):
    corpus = sample_dir / "joe_biden"
    before = hashes_of(corpus)
    trained = redteam("attack", "train", "--method", "mosaic:block=8", "--faces", corpus, "--minutes", "0.1", "--out", tmp_path / "inv.pt", "--device", "cpu")
    assert trained.returncode == 0, trained.stderr
    record = json.loads((tmp_path / "inv.json").read_text())
    assert record["spec"] == "mosaic:block=8" and record["steps"] > 0 and len(record["corpus_files"]) == len(list(corpus.iterdir()))
    assert (tmp_path / "inv.pt").is_file() and hashes_of(corpus) == before
    missing = redteam("attack", "train", "--method", "mosaic:block=8", "--faces", tmp_path / "nowhere", "--minutes", "0.1")
    assert missing.returncode != 0 and "nowhere" in missing.stderr and "Traceback" not in missing.stderr
    zero = redteam("attack", "train", "--method", "mosaic:block=8", "--faces", corpus, "--minutes", "0")
    assert zero.returncode == 2 and "--minutes must be positive" in zero.stderr
    unknown = redteam("attack", "train", "--method", "smudge", "--faces", corpus)
    assert unknown.returncode == 3 and "smudge" in unknown.stderr  # a bad method spec is a configuration error


# Issue 22 ------------------------------------------------------------------------------------------


def test_an_unexpected_error_is_exit_5_naming_where_it_happened_never_aborted(tmp_path, monkeypatch):
    """numpy's EOFError out of a command became click's "Aborted!" and exit 1, which reads as a verdict."""
    import tempfile

    import typer
    from typer.testing import CliRunner

    from redteam.cli import guarded

    toy = typer.Typer()

    @toy.command()
    @guarded
    def crash() -> None:
        raise EOFError("No data left in file")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    done = CliRunner().invoke(toy, [])
    assert done.exit_code == 5, done.output
    assert "Aborted" not in done.output and "Traceback" not in done.output
    assert "EOFError: No data left in file" in done.output and f"the traceback is in {tmp_path}" in done.output
    (saved,) = tmp_path.glob("redteam-crash-*.txt")
    assert "Traceback" in saved.read_text() and "EOFError" in saved.read_text()


def _cli_without_torch(*args, env=None):
    """The CLI in a process that reports, on exit, whether torch was imported."""
    code = (
        "import sys\nfrom redteam.cli import main\nsys.argv = ['redteam', *sys.argv[1:]]\n"
        "try:\n    main()\nfinally:\n    print('torch imported' if 'torch' in sys.modules else 'torch not imported', file=sys.stderr)\n"
    )
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["/nonexistent", "-m", "box"], 3, "originals folder /nonexistent does not exist"),
        (["/nonexistent"], 3, "originals folder /nonexistent does not exist"),  # the missing folder first, not "no method"
        ([], 2, "missing ORIGINALS"),
        (["ORIGINALS"], 2, "no method to audit"),
        (["ORIGINALS", "--anonymized", "b=/nowhere"], 3, "anonymized folder /nowhere for method 'b' does not exist"),
        (["ORIGINALS", "--manifest", "/nowhere.csv"], 3, "manifest /nowhere.csv does not exist"),
        (["ORIGINALS", "-m", "b=box", "--gallery", "/nowhere"], 3, "gallery folder /nowhere does not exist"),
    ],
)
def test_usage_errors_are_named_before_anything_loads_and_create_nothing(originals, tmp_path, args, code, message):
    """`audit /nonexistent -m box --out x` took 10 s (models loaded, two warnings), said "no method to
    audit" without a method, and left an empty x behind."""
    out = tmp_path / "x"
    done = _cli_without_torch("audit", *[originals if arg == "ORIGINALS" else arg for arg in args], "--out", out)
    assert done.returncode == code, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr and "unavailable" not in done.stderr
    assert "torch not imported" in done.stderr
    assert not out.exists()


@pytest.mark.parametrize("where", ["corrupt-file", "folder-from-env"])
def test_a_bad_run_store_is_refused_before_the_audit_and_no_report_says_otherwise(originals, tmp_path, cache_dir, where):
    """A store that is not SQLite (or REDTEAM_STORE naming a folder) let the audit write summary.json, JUnit
    and SARIF saying PASS with exit_code 0, then exit 3."""
    env = dict(os.environ)
    if where == "corrupt-file":
        store = tmp_path / "runs.sqlite"
        store.write_text("this is not a database " * 20)
        extra = ["--store", store]
    else:
        (tmp_path / "stores").mkdir()
        env["REDTEAM_STORE"] = str(tmp_path / "stores")
        extra = []
    policy = write_policy(tmp_path / "p.toml", PASSABLE.format(extra=""))
    done = subprocess.run(
        [sys.executable, "-m", "redteam", "audit", originals, "--out", tmp_path / "report", "--cache-dir", cache_dir, "-m", "box:margin=0.6"]
        + ["--policy", policy, "--attack", "none", "-r", "dlib", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 3, done.stderr
    assert "run store" in done.stderr and ("REDTEAM_STORE" in done.stderr if where == "folder-from-env" else "not a readable run store" in done.stderr)
    assert not (tmp_path / "report").exists()


def test_a_manifest_needs_no_originals_argument(originals, tmp_path, cache_dir):
    """The README says --manifest is "instead of folders": ORIGINALS is the folder its originals share."""
    import numpy as np
    from PIL import Image

    lines = ["original,anonymized,method"]
    for path in sorted(originals.rglob("*.jpg")):
        rel = path.relative_to(originals)
        target = tmp_path / "anon" / rel.with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros_like(np.asarray(Image.open(path).convert("RGB")))).save(target)  # everything blacked out
        lines.append(f"../originals/{rel.as_posix()},../anon/{rel.with_suffix('.png').as_posix()},black")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "pairs.csv").write_text("\n".join(lines) + "\n")
    policy = write_policy(tmp_path / "p.toml", PASSABLE.format(extra=""))
    done = redteam(
        "audit",
        "--manifest",
        tmp_path / "lists" / "pairs.csv",
        "--out",
        tmp_path / "report",
        "--cache-dir",
        cache_dir,
        "--policy",
        policy,
        "--attack",
        "none",
        "-r",
        "dlib",
        "--no-identify",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["config"]["originals"] == str(originals.resolve()) and summary["sample"]["faces"] == 5
    assert summary["methods"][0]["method"] == "black" and summary["methods"][0]["verdict"] == "PASS"


def test_hostile_file_and_method_names_reach_no_output_raw(originals, tmp_path, cache_dir):
    """A name that is not UTF-8 crashed the audit (exit 5) after half its reports were written; ANSI
    sequences and control characters reached the terminal and made report.junit.xml invalid XML."""
    import xml.etree.ElementTree as ElementTree

    hostile = "evil\x1b[31mred\x07bell\rcr\nnl\x85nel"
    from PIL import Image

    face = Image.open(originals / "joe_biden" / "biden.jpg")
    face.save(originals / f"{hostile}.jpg", quality=90)  # other bytes than the original: not a duplicate
    face.save(os.fsencode(originals) + b"/b\xffad.jpg", quality=85, format="JPEG")
    policy = write_policy(tmp_path / "p.toml", PASSABLE.format(extra=""))
    done = subprocess.run(
        [sys.executable, "-m", "redteam", "audit", originals, "--out", tmp_path / "report", "--cache-dir", cache_dir]
        + ["--method", f"{hostile}=box:margin=0.6", "--policy", policy, "--attack", "none", "-r", "dlib"],
        capture_output=True,
        env=dict(os.environ, COLUMNS="200"),
        timeout=600,
    )
    stdout, stderr = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
    assert done.returncode == 0, stderr
    assert "Traceback" not in stderr
    for text in (stdout, stderr, (tmp_path / "report" / "redteam.log").read_text(encoding="utf-8")):
        assert not any(character in text for character in ("\x1b", "\x07", "\r", "\x85"))
    assert "evil\\x1b[31mred\\x07bell\\rcr\\nnl\\x85nel" in stdout  # the method, shown with its escapes
    ElementTree.parse(tmp_path / "report" / "report.junit.xml")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert {"b\\xffad.jpg", f"{hostile}.jpg"} <= set(summary["input_hashes"])
    assert "b\\\\xffad.jpg" in (tmp_path / "report" / "report.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_terminal_shows_the_summary_and_every_rate_only_with_verbose(originals, tmp_path, cache_dir):
    """The terminal printed a 66-78-row rate table on every run. By default: the verdict table and the summary
    (LEAK lines first); --verbose adds every rate; --quiet keeps the LEAK lines, the verdict line and errors;
    --json puts summary.json, and nothing else, on stdout."""
    policy = write_policy(tmp_path / "p.toml", PASSABLE.format(extra=""))
    common = ["--cache-dir", cache_dir, "--method", "blur=gaussian_blur:sigma=2", "--policy", policy, "--attack", "none", "-r", "dlib"]
    default = redteam("audit", originals, "--out", tmp_path / "default", *common)
    assert default.returncode == 1, default.stderr
    assert "Verdicts (policy" in default.stdout and "Rates (" not in default.stdout and "--verbose" in default.stdout
    leaks = [line for line in default.stdout.splitlines() if line.startswith("LEAK ")]
    assert leaks and default.stdout.startswith("LEAK ")  # a blur of sigma 2 publishes the faces: named first
    verbose = redteam("audit", originals, "--out", tmp_path / "verbose", "--verbose", *common)
    assert verbose.returncode == 1 and "Rates (95% wilson interval)" in verbose.stdout
    quiet = redteam("audit", originals, "--out", tmp_path / "quiet", "--quiet", *common)
    assert quiet.returncode == 1, quiet.stderr
    lines = quiet.stdout.splitlines()
    assert lines[: len(leaks)] == leaks and len(lines) == len(leaks) + 1 and lines[-1].startswith("FAIL: 1 method(s) audited")
    assert "redteam:" not in quiet.stderr and "Verdicts" not in quiet.stdout + quiet.stderr
    as_json = redteam("audit", originals, "--out", tmp_path / "json", "--json", *common)
    assert as_json.returncode == 1, as_json.stderr
    assert as_json.stdout == (tmp_path / "json" / "summary.json").read_text(encoding="utf-8")
    assert json.loads(as_json.stdout)["exit_code"] == 1
    assert "Verdicts (policy" in as_json.stderr and "LEAK " in as_json.stderr
    both = redteam("audit", originals, "--out", tmp_path / "both", "--verbose", "--quiet", *common)
    assert both.returncode == 2 and "contradict" in both.stderr and not (tmp_path / "both").exists()


def test_audit_help_shows_the_exit_codes_and_the_extras_literally():
    """`[ray]` in --executor's help was swallowed as rich markup, and --help had no exit-code table."""
    from redteam.core.errors import ExitCode

    done = redteam("audit", "--help", columns=250)
    assert done.returncode == 0
    assert "pip install 'face-anon-redteam[ray]'" in done.stdout
    table = done.stdout[done.stdout.index("Exit codes") :]
    for code in ExitCode:
        if code is not ExitCode.INTERRUPTED:
            assert f" {int(code)}  " in table, code
    assert "the first of 4, 6, 1, 0" in table


def test_models_lists_hashes_shortened_and_whole_with_full(offline_environment):
    """`redteam models` wrapped each SHA-256 over 6 lines."""
    from redteam.core.weights import MODEL_FILES

    digest = MODEL_FILES["realesrgan_x4plus"].sha256
    listing = redteam("models", columns=120)
    assert listing.returncode == 0, listing.stderr
    assert f"{digest[:12]}…" in listing.stdout and digest not in listing.stdout
    row = next(line for line in listing.stdout.splitlines() if "realesrgan_x4plus" in line)
    assert f"{digest[:12]}…" in row  # on the model's own line, not folded
    full = redteam("models", "list", "--full", columns=400)
    assert digest in full.stdout and "OpenRAIL" in full.stdout
