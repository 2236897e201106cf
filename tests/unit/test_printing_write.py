"""``kd.core.printing.write_print_file``: the one writer of every printed sheet (real files)."""

import os

import pytest

from kd.core import printing
from kd.errors import StoreError


def test_writes_the_page_into_a_new_folder_and_returns_its_absolute_path(tmp_path):
    folder = str(tmp_path / "new" / "print")
    path = printing.write_print_file(folder, "考场情况记录单-1.html", "<p>考场</p>")
    assert path == os.path.abspath(os.path.join(folder, "考场情况记录单-1.html"))
    assert open(path, "rb").read() == "<p>考场</p>".encode()
    assert os.listdir(folder) == ["考场情况记录单-1.html"]  # no .part left
    again = printing.write_print_file(folder, "考场情况记录单-1.html", "<p>二</p>")  # replaced whole
    assert again == path and open(path, encoding="utf-8").read() == "<p>二</p>"


def test_write_page_writes_into_the_data_folders_print_folder(tmp_path):
    path = printing.write_page(str(tmp_path), "门贴.html", "x")
    assert path == os.path.join(str(tmp_path), printing.PRINT_DIR, "门贴.html")


def test_a_folder_that_cannot_be_made_is_a_store_error_with_a_remedy(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StoreError) as info:
        printing.write_print_file(str(blocker / "print"), "a.html", "x")
    assert str(blocker / "print" / "a.html") in str(info.value) and "可写" in info.value.remedy
