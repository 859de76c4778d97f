"""Description files: the thesis's sets, and what happens with blank lines, repeats and bad files."""
from __future__ import annotations

import pytest

from dfdet.cli import main
from dfdet.errors import DataError
from dfdet.text.descriptions import (Descriptions, THESIS_SETS, check_lengths, from_files, load_descriptions,
                                     read_description_file)
from dfdet.text.model import build_text_model, get_tokenizer


def write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_thesis_sets_load_as_described(shared):
    one = load_descriptions("1desc")
    assert one.real == ("The image of a person.",) and one.fake == ("The image of a deepfake.",)
    ten = load_descriptions("10desc")
    assert len(ten.real) == 10 and len(ten.fake) == 10
    big = load_descriptions("550desc")
    assert len(big.real) == 550 and len(big.fake) == 550  # repeats are kept ...
    assert len(set(big.real)) == 53 and len(set(big.fake)) == 70  # ... over ~53 / ~70 unique sentences
    assert set(THESIS_SETS) == {"1desc", "10desc", "550desc"}


def test_blank_lines_and_whitespace_are_skipped_repeats_kept(tmp_path):
    real = write(tmp_path / "real.txt", "\n  A real face.  \n\n\tA real face.\r\nAn honest photo.\n\n")
    fake = write(tmp_path / "fake.txt", "A forged face.")  # no trailing newline
    d = from_files(real, fake)
    assert d.real == ("A real face.", "A real face.", "An honest photo.")
    assert d.fake == ("A forged face.",)
    assert d.labels == [0, 0, 0, 1]
    # content, not the file names, identifies a set (the cache key)
    assert d.digest == Descriptions("other", d.real, d.fake).digest
    assert d.digest != Descriptions("x", d.real[1:], d.fake).digest


def test_utf8_bom_is_tolerated(tmp_path):
    real = write(tmp_path / "r.txt", "\ufeffA real face.\n")
    assert read_description_file(real) == ["A real face."]


@pytest.mark.parametrize("content", ["", "\n\n   \n\t\n"])
def test_a_class_without_sentences_is_an_error(tmp_path, content):
    real = write(tmp_path / "real.txt", "A real face.\n")
    fake = write(tmp_path / "fake.txt", content)
    with pytest.raises(DataError, match=r"fake\.txt: no fake descriptions"):
        from_files(real, fake)


def test_missing_file_names_the_path(tmp_path):
    real = write(tmp_path / "real.txt", "A real face.\n")
    with pytest.raises(DataError, match="fake description file not found: .*nothing.txt"):
        from_files(real, tmp_path / "nothing.txt")


def test_sentence_in_both_classes_is_an_error(tmp_path):
    real = write(tmp_path / "real.txt", "A face.\nA real face.\n")
    fake = write(tmp_path / "fake.txt", "A fake face.\n  A face.\n")
    with pytest.raises(DataError, match="'A face.' is listed as both real"):
        from_files(real, fake)


def test_non_utf8_file_is_an_error(tmp_path):
    real = write(tmp_path / "real.txt", "Une photo d'un visage réel.\n", encoding="utf-16")
    fake = write(tmp_path / "fake.txt", "A fake face.\n")
    with pytest.raises(DataError, match="not UTF-8"):
        from_files(real, fake)


def test_folder_and_pair_specs(tmp_path):
    write(tmp_path / "my_real.txt", "A real face.\n")
    write(tmp_path / "my_fake.txt", "A fake face.\n")
    d = load_descriptions(tmp_path)
    assert (d.real, d.fake) == (("A real face.",), ("A fake face.",))
    d2 = load_descriptions(f"{tmp_path / 'my_real.txt'},{tmp_path / 'my_fake.txt'}")
    assert d2.digest == d.digest


def test_folder_with_two_fake_files_is_ambiguous(tmp_path):
    write(tmp_path / "real.txt", "A real face.\n")
    write(tmp_path / "fake.txt", "A fake face.\n")
    write(tmp_path / "fake_2.txt", "Another fake face.\n")
    with pytest.raises(DataError, match="exactly one .txt file with 'fake'.*fake.txt.*fake_2.txt"):
        load_descriptions(tmp_path)


def test_folder_missing_a_class(tmp_path):
    write(tmp_path / "real.txt", "A real face.\n")
    with pytest.raises(DataError, match="'fake' in its name, found none"):
        load_descriptions(tmp_path)


def test_unknown_set_name():
    with pytest.raises(DataError, match="unknown description set '5desc'.*1desc, 10desc, 550desc"):
        load_descriptions("5desc")


def test_sentence_longer_than_clip_context_is_refused(tmp_path, tiny_clip):
    long = " ".join(["forged"] * 90) + "."
    d = Descriptions("long", ("A real face.",), (long,))
    with pytest.raises(DataError, match=r"fake description .* has \d+ tokens; CLIP reads at most 75"):
        check_lengths(d, get_tokenizer(tiny_clip.config.model))
    with pytest.raises(DataError, match="CLIP reads at most 75"):
        build_text_model(tiny_clip, "zeroshot_1desc", descriptions=d)


def test_cli_reports_bad_descriptions_without_traceback(tmp_path, capsys):
    write(tmp_path / "real.txt", "A real face.\n")
    write(tmp_path / "fake.txt", "\n\n")
    code = main(["train", "--method", "textguided_1desc", "--manifest", str(tmp_path / "m.csv"),
                 "--set", f"descriptions={tmp_path}", "--model", "dfdet-tiny-vit", "--pretrained", "none",
                 "--device", "cpu", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "no fake descriptions" in err and "Traceback" not in err
