import os

import pytest

from redteam.core.errors import InputError, UsageError
from redteam.datasets import Counterparts, check_out_dir, discover_images, output_targets, read_manifest


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_identity_folders_and_flat_files(tmp_path):
    touch(tmp_path / "alice" / "1.jpg")
    touch(tmp_path / "alice" / "2.png")
    touch(tmp_path / "bob.jpg")
    touch(tmp_path / "notes.txt")
    touch(tmp_path / ".hidden" / "x.jpg")
    dataset = discover_images(tmp_path, role="originals")
    assert [(e.rel, e.identity) for e in dataset.entries] == [("alice/1.jpg", "alice"), ("alice/2.png", "alice"), ("bob.jpg", "bob")]
    assert dataset.ignored == ("notes.txt",)
    assert dataset.identities_known


def test_missing_or_empty_originals_are_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        discover_images(tmp_path / "nope", role="originals")
    with pytest.raises(InputError, match="holds no images"):
        discover_images(tmp_path, role="originals")


def test_counterparts_may_change_suffix_but_not_be_ambiguous(tmp_path):
    touch(tmp_path / "anon" / "alice" / "1.png")
    assert Counterparts(tmp_path / "anon").find("alice/1.jpg") == tmp_path / "anon" / "alice" / "1.png"
    assert Counterparts(tmp_path / "anon").find("bob/1.jpg") is None
    touch(tmp_path / "anon" / "alice" / "1.webp")
    with pytest.raises(InputError, match="several anonymized files"):
        Counterparts(tmp_path / "anon").find("alice/1.jpg")


def test_counterparts_of_a_folder_list_each_subfolder_once(tmp_path, monkeypatch):
    for index in range(30):
        touch(tmp_path / "anon" / "alice" / f"{index}.png")
    touch(tmp_path / "anon" / "bob" / "0.jpg")
    touch(tmp_path / "anon" / "bob" / "1.png")
    touch(tmp_path / "anon" / "bob" / "1.webp")
    listed = []
    real_iterdir = type(tmp_path).iterdir
    monkeypatch.setattr(type(tmp_path), "iterdir", lambda self: listed.append(self) or real_iterdir(self))
    counterparts = Counterparts(tmp_path / "anon")
    assert [counterparts.find(f"alice/{index}.jpg") for index in range(30)] == [tmp_path / "anon" / "alice" / f"{index}.png" for index in range(30)]
    assert counterparts.find("bob/0.jpg") == tmp_path / "anon" / "bob" / "0.jpg"
    assert counterparts.find("carol/0.jpg") is None
    with pytest.raises(InputError, match="several anonymized files"):
        counterparts.find("bob/1.jpg")
    assert sorted(listed) == [tmp_path / "anon" / "alice", tmp_path / "anon" / "bob"]


def test_counterparts_do_not_follow_links_out_of_the_folder(tmp_path):
    """As `discover_images`: a file link or a folder link leading outside is not followed (the original
    itself, linked in as its "anonymized" version, would otherwise be audited as the tool's output)."""
    secret = touch(tmp_path / "orig" / "alice" / "1.jpg")
    touch(tmp_path / "elsewhere" / "2.png")
    touch(tmp_path / "anon" / "alice" / "3.png")
    (tmp_path / "anon" / "alice" / "1.jpg").symlink_to(secret)
    (tmp_path / "anon" / "bob").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "anon" / "alice" / "4.png").symlink_to(tmp_path / "anon" / "alice" / "3.png")  # a link inside: followed
    counterparts = Counterparts(tmp_path / "anon")
    assert counterparts.find("alice/1.jpg") is None and counterparts.find("bob/2.jpg") is None
    assert counterparts.find("alice/3.jpg") == tmp_path / "anon" / "alice" / "3.png"
    assert counterparts.find("alice/4.jpg") == tmp_path / "anon" / "alice" / "4.png"
    assert counterparts.outside == {"alice/1.jpg", "bob/2.jpg"}


def test_manifest_rows_and_errors(tmp_path):
    touch(tmp_path / "orig" / "a" / "1.jpg")
    manifest = tmp_path / "m.csv"
    manifest.write_text("original,anonymized,method,identity\norig/a/1.jpg,anon/1.png,blur,alice\n")
    rows = read_manifest(manifest, tmp_path / "orig")
    assert rows[0].original_rel == "a/1.jpg" and rows[0].method == "blur" and rows[0].identity == "alice"
    bad = tmp_path / "bad.csv"
    bad.write_text("original,method\nx,y\n")
    with pytest.raises(InputError, match="lacks column"):
        read_manifest(bad, tmp_path / "orig")
    outside = tmp_path / "outside.csv"
    outside.write_text("original,anonymized,method\nelsewhere/1.jpg,anon/1.png,blur\n")
    with pytest.raises(InputError, match="outside the originals folder"):
        read_manifest(outside, tmp_path / "orig")


def test_output_inside_an_input_is_refused(tmp_path):
    with pytest.raises(UsageError, match="inside input folder"):
        check_out_dir(tmp_path / "orig" / "report", [tmp_path / "orig"])
    check_out_dir(tmp_path / "report", [tmp_path / "orig"])
    assert (tmp_path / "report").is_dir()


def test_an_output_folder_that_is_or_lies_under_a_file_is_refused(tmp_path):
    touch(tmp_path / "file")
    with pytest.raises(UsageError, match="file is an existing file"):
        check_out_dir(tmp_path / "file", [tmp_path / "orig"])
    with pytest.raises(InputError, match="cannot be written \\(a parent is a file\\)"):
        check_out_dir(tmp_path / "file" / "report", [tmp_path / "orig"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(InputError, match="cannot be written"):
        check_out_dir(tmp_path / "ro" / "report", [tmp_path / "orig"])


@pytest.mark.parametrize(
    "content, message",
    [
        (b"original,anonymized,method\n\xff\xfe\xfa,anon/1.png,blur\n", "not UTF-8"),
        (b"original,anonymized,method\n" + b"x" * (200 * 1024) + b",anon/1.png,blur\n", "not a well-formed CSV"),
    ],
)
def test_hostile_manifests_are_input_errors(tmp_path, content, message):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_manifest(manifest, tmp_path)


def test_a_tree_writer_never_writes_over_or_above_its_inputs(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(UsageError, match="contains input folder"):
        check_out_dir(tmp_path, [tmp_path / "photos"], mirrors_inputs=True)
    check_out_dir(tmp_path / "report", [tmp_path / "photos"], mirrors_inputs=True)


def test_inputs_that_differ_only_in_suffix_are_refused_before_anything_is_written(tmp_path):
    assert output_targets(["a/1.jpg", "b.webp"], tmp_path) == {"a/1.jpg": tmp_path / "a" / "1.png", "b.webp": tmp_path / "b.png"}
    with pytest.raises(UsageError, match="person.jpg and person.png would both be written"):
        output_targets(["person.jpg", "person.png"], tmp_path)


def test_a_manifest_saved_with_a_byte_order_mark_reads(tmp_path):
    touch(tmp_path / "orig" / "a" / "1.jpg")
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("\ufefforiginal,anonymized,method\norig/a/1.jpg,anon/1.png,blur\n".encode())
    assert read_manifest(manifest, tmp_path / "orig")[0].original_rel == "a/1.jpg"


def test_two_rows_for_one_original_and_method_are_refused(tmp_path):
    touch(tmp_path / "orig" / "a" / "1.jpg")
    manifest = tmp_path / "m.csv"
    manifest.write_text("original,anonymized,method\norig/a/1.jpg,anon/1.png,blur\norig/a/1.jpg,anon/1b.png,blur\norig/a/1.jpg,px/1.png,mosaic\n")
    with pytest.raises(InputError, match="line 3: original orig/a/1.jpg already has a 'blur' row \\(line 2\\)"):
        read_manifest(manifest, tmp_path / "orig")


def test_a_cache_inside_an_input_is_refused(tmp_path):
    from redteam.datasets import check_outside_inputs

    with pytest.raises(UsageError, match="cache folder .* is inside input folder"):
        check_outside_inputs(tmp_path / "orig" / ".cache", [tmp_path / "orig"], "cache folder")


def test_a_nul_byte_in_a_manifest_path_is_an_input_error(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"original,anonymized,method\na\x00.jpg,b.png,blur\n")
    with pytest.raises(InputError, match="line 2: a field contains a NUL character"):
        read_manifest(manifest, tmp_path)


def test_links_leaving_the_folder_are_listed_not_followed_and_loops_end(tmp_path):
    root, outside = tmp_path / "orig", touch(tmp_path / "private" / "secret.jpg")
    touch(root / "a" / "1.jpg")
    (root / "a" / "inside.jpg").symlink_to(root / "a" / "1.jpg")
    (root / "leak.jpg").symlink_to(outside)
    (root / "loop1.jpg").symlink_to(root / "loop2.jpg")
    (root / "loop2.jpg").symlink_to(root / "loop1.jpg")
    (root / "a" / "up").symlink_to(root, target_is_directory=True)
    dataset = discover_images(root, role="originals")
    assert [e.rel for e in dataset.entries] == ["a/1.jpg", "a/inside.jpg"] and dataset.outside == ("leak.jpg",)


# Issue 22 ------------------------------------------------------------------------------------------


def _refuse_listing(monkeypatch, folder):
    """Listing `folder` fails as it does without read permission (tests run as root, where chmod does not)."""
    real_scandir, real_iterdir = os.scandir, type(folder).iterdir

    def scandir(path="."):
        if os.fspath(path) == os.fspath(folder):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    def iterdir(self):
        if self == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(type(folder), "iterdir", iterdir)


def test_an_unreadable_folder_of_originals_is_an_error_naming_it(tmp_path, monkeypatch):
    touch(tmp_path / "orig" / "alice" / "1.jpg")
    touch(tmp_path / "orig" / "bob" / "1.jpg")
    _refuse_listing(monkeypatch, tmp_path / "orig" / "bob")
    with pytest.raises(InputError, match="originals folder .*bob cannot be read \\(Permission denied\\)") as error:
        discover_images(tmp_path / "orig", role="originals")  # its images would silently be left out of the audit
    assert "chmod" in error.value.fix
    unreadable = []
    assert [e.rel for e in discover_images(tmp_path / "orig", role="anonymized", unreadable=unreadable).entries] == ["alice/1.jpg"]
    assert unreadable == [("bob", "Permission denied")]


def test_an_unreadable_anonymized_folder_leaves_its_originals_unmatched_with_the_reason(tmp_path, monkeypatch):
    touch(tmp_path / "anon" / "alice" / "1.png")
    touch(tmp_path / "anon" / "bob" / "1.png")
    _refuse_listing(monkeypatch, tmp_path / "anon" / "bob")
    counterparts = Counterparts(tmp_path / "anon")
    assert counterparts.find("alice/1.jpg") == tmp_path / "anon" / "alice" / "1.png"
    assert counterparts.find("bob/1.jpg") is None  # not a PermissionError out of the audit (exit 5)
    assert counterparts.unreadable == {"bob/1.jpg": f"folder {tmp_path / 'anon' / 'bob'} cannot be read (Permission denied)"}


def test_names_that_are_not_utf8_are_carried_as_escapes(tmp_path):
    for folder, suffix in (("orig", b".jpg"), ("anon", b".png")):
        os.makedirs(os.fsencode(tmp_path / folder) + b"/caf\xe9", exist_ok=True)
        with open(os.fsencode(tmp_path / folder) + b"/caf\xe9/b\xffad" + suffix, "wb") as handle:
            handle.write(b"x")
    entry = discover_images(tmp_path / "orig", role="originals").entries[0]
    assert (entry.rel, entry.identity) == ("caf\\xe9/b\\xffad.jpg", "caf\\xe9")
    entry.rel.encode("utf-8")  # reaches caches, tables and reports as valid UTF-8
    assert entry.path.read_bytes() == b"x"  # the file itself is read by its real name
    found = Counterparts(tmp_path / "anon").find(entry.rel)
    assert found is not None and os.fsencode(found).endswith(b"/caf\xe9/b\xffad.png")


@pytest.mark.parametrize("column", ["original", "anonymized"])
def test_a_manifest_row_that_names_a_folder_is_an_error_naming_the_line(tmp_path, column):
    touch(tmp_path / "orig" / "a" / "1.jpg")
    touch(tmp_path / "anon" / "1.png")
    (tmp_path / "orig" / "a" / "2.jpg").mkdir()
    (tmp_path / "anon" / "folder").mkdir()
    row = "orig/a/2.jpg,anon/1.png" if column == "original" else "orig/a/1.jpg,anon/folder"
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"original,anonymized,method\norig/a/1.jpg,anon/1.png,blur\n{row},box\n")
    folder = tmp_path / ("orig/a/2.jpg" if column == "original" else "anon/folder")
    with pytest.raises(InputError, match=f"line 3: {column} {folder} is a folder, not an image file"):
        read_manifest(manifest, tmp_path / "orig")


def test_a_manifest_without_an_originals_folder_uses_the_folder_its_originals_share(tmp_path):
    from redteam.datasets import manifest_originals_root

    touch(tmp_path / "data" / "orig" / "alice" / "1.jpg")
    touch(tmp_path / "data" / "orig" / "bob" / "2.jpg")
    manifest = tmp_path / "data" / "lists" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text("original,anonymized,method\n../orig/alice/1.jpg,../anon/1.png,blur\n../orig/bob/2.jpg,../anon/2.png,blur\n")
    assert manifest_originals_root(manifest) == (tmp_path / "data" / "orig").resolve()
    assert [row.original_rel for row in read_manifest(manifest, None)] == ["alice/1.jpg", "bob/2.jpg"]
    inside = tmp_path / "data" / "lists" / "inside.csv"
    inside.write_text("original,anonymized,method\n../orig/alice/1.jpg,../orig/alice/1_blur.png,blur\n../orig/bob/2.jpg,../anon/2.png,blur\n")
    with pytest.raises(InputError, match="line 2: anonymized .*1_blur.png lies inside .*orig, the folder of the originals"):
        read_manifest(inside, None)  # it would be audited as an original
