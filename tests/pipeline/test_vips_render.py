"""vips_render's own rules: when libvips is used at all, and how its errors are worded for
the CORRUPT_IMAGE message a job's callback carries."""

from __future__ import annotations

import pytest

from media_jobs.pipeline import vips_render

pyvips = pytest.importorskip("pyvips")


def test_the_message_keeps_libvips_first_three_lines_once_each() -> None:
    """libvips repeats a warning once per occurrence; the message keeps the first three
    lines of its error, each once, on one line."""
    error = pyvips.Error(
        "unable to copy to memory",
        "VipsJpeg: Corrupt JPEG data: 29 extraneous bytes before marker 0xc4\n"
        "VipsJpeg: Corrupt JPEG data: 29 extraneous bytes before marker 0xc4\n"
        "VipsJpeg: Invalid progressive/lossless parameters Ss=0 Se=0 Ah=11 Al=4\n",
    )
    assert vips_render._first_line(error) == (
        "unable to copy to memory; "
        "VipsJpeg: Corrupt JPEG data: 29 extraneous bytes before marker 0xc4"
    )


def test_the_message_is_at_most_300_characters() -> None:
    error = pyvips.Error("unable to call jpegload_source", "VipsJpeg: " + "x" * 400)
    message = vips_render._first_line(error)
    assert message == "unable to call jpegload_source; VipsJpeg: " + "x" * 258
    assert len(message) == 300


def test_an_error_without_text_is_named_by_its_class() -> None:
    assert vips_render._first_line(pyvips.Error("", "\n")) == "Error"


def test_libvips_is_not_used_without_pyvips_or_when_it_cannot_be_queried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No pyvips (its import failed): Pillow renders everything. A libvips whose version
    query fails is one we do not know: not used either."""
    monkeypatch.setattr(vips_render, "pyvips", None)
    assert vips_render._has_loaders() is False
    monkeypatch.undo()

    def broken(flag: int) -> int:
        raise pyvips.Error("unable to query the libvips version", "\n")

    monkeypatch.setattr(pyvips, "version", broken)
    assert vips_render._has_loaders() is False
