"""Key rules of docs/contract.md §2 (pure functions, no storage)."""

from __future__ import annotations

import pytest

from media_jobs.pipeline import keys
from media_jobs.pipeline.errors import ErrorCode, PipelineError


def test_raw_key_uses_the_segment_of_the_asset_type() -> None:
    assert (
        keys.raw_key(123, "PHOTO_VERTICAL", "vertical-03", "IMG_2705.jpg")
        == "123/raw/photo/vertical/vertical-03-IMG_2705.jpg"
    )
    assert keys.raw_key("9", "VIDEO_HORIZONTAL", "horizontal-01", "clip.mov").startswith(
        "9/raw/video/horizontal/"
    )


@pytest.mark.parametrize("filename", ["", "a/b.jpg", "..", "."])
def test_raw_key_refuses_filenames_that_would_change_the_path(filename: str) -> None:
    with pytest.raises(ValueError):
        keys.raw_key(1, "PHOTO_VERTICAL", "vertical-01", filename)


def test_raw_key_refuses_unknown_types() -> None:
    with pytest.raises(ValueError, match="ZIP"):
        keys.raw_key(1, "ZIP", "x", "a.zip")


def test_every_asset_type_has_a_two_level_segment() -> None:
    for asset_type, segment in keys.SEGMENT_BY_TYPE.items():
        raw = keys.raw_key(5, asset_type, "ref", "f.jpg")
        assert keys.split_raw_key(raw).segment == segment
        assert segment.count("/") == 1


def test_split_raw_key_drops_date_folders_and_keeps_the_prefix() -> None:
    parts = keys.split_raw_key("123/raw/2024-05-17/photo/vertical/2024-05-18/vertical-03-a.jpg")
    assert parts == keys.RawKeyParts(
        prefix="123/", segment="photo/vertical", filename="vertical-03-a.jpg"
    )


def test_split_raw_key_splits_at_the_first_raw_folder_only() -> None:
    parts = keys.split_raw_key("123/raw/photo/raw/a.jpg")
    assert (parts.prefix, parts.segment, parts.filename) == ("123/", "photo/raw", "a.jpg")
    # "draw/" contains "raw/" but is not a raw folder
    with pytest.raises(PipelineError) as err:
        keys.split_raw_key("123/draw/photo/a.jpg")
    assert err.value.code == ErrorCode.INVALID_KEY


def test_split_raw_key_keeps_unicode_and_spaces() -> None:
    parts = keys.split_raw_key("77/raw/photo/horizontal/horizontal-01-Salão de festas ñ 写真.jpg")
    assert parts.filename == "horizontal-01-Salão de festas ñ 写真.jpg"
    assert parts.stem == "horizontal-01-Salão de festas ñ 写真"


@pytest.mark.parametrize(
    "bad_key",
    [
        "123/photo/vertical/a.jpg",  # no raw/
        "",
        "/123/raw/photo/vertical/a.jpg",  # leading slash
        "123/raw/../../etc/passwd",
        "123/raw/photo/../a.jpg",
        "123//raw/photo/a.jpg",
        "123/raw/",
        "123/raw/2024-01-01/",
    ],
)
def test_split_raw_key_rejects_bad_keys_with_invalid_key(bad_key: str) -> None:
    with pytest.raises(PipelineError) as err:
        keys.split_raw_key(bad_key)
    assert err.value.code == ErrorCode.INVALID_KEY


def test_derivative_keys_follow_the_segment_and_become_jpeg() -> None:
    raw = "123/raw/2023-12-31/photo/vertical/vertical-03-IMG 2705.HEIC"
    got = {size: keys.derivative_key(raw, size) for size in keys.IMAGE_SIZES}
    assert got == {
        size: f"123/processed/photo/vertical/{size}/vertical-03-IMG 2705.jpg"
        for size in ("thumbnail", "small", "medium", "large")
    }
    with pytest.raises(ValueError):
        keys.derivative_key(raw, "huge")


def test_image_sizes_are_the_spec_widths() -> None:
    assert keys.IMAGE_SIZES == {"thumbnail": 200, "small": 400, "medium": 800, "large": 1200}


def test_video_output_keys() -> None:
    raw = "55/raw/video/horizontal/horizontal-01-tour.final.MOV"
    # The poster is named like the transcode: the backend asks for
    # thumbnail/<basename of the processed key> (docs/contract.md §2).
    assert (
        keys.poster_key(raw)
        == "55/processed/video/horizontal/thumbnail/horizontal-01-tour.final.mp4"
    )
    assert (
        keys.transcode_key(raw)
        == "55/processed/video/horizontal/original/horizontal-01-tour.final.mp4"
    )
    assert keys.transcode_folder(raw) == "55/processed/video/horizontal/original/"


def test_poster_of_an_mp4_is_the_go_systems_key() -> None:
    raw = "55/raw/video/vertical/2024-01-02/vertical-02-walk.mp4"
    assert keys.poster_key(raw) == "55/processed/video/vertical/thumbnail/vertical-02-walk.mp4"
    assert keys.legacy_poster_keys(raw) == [
        "55/processed/video/vertical/thumbnail/vertical-02-walk.jpg"
    ]
    mov = "55/raw/video/vertical/vertical-03-walk.MOV"
    assert keys.legacy_poster_keys(mov) == [
        "55/processed/video/vertical/thumbnail/vertical-03-walk.jpg",
        "55/processed/video/vertical/thumbnail/vertical-03-walk.MOV",
    ]


@pytest.mark.parametrize(
    ("resolution", "raw_type", "name"),
    [
        ("large", "PHOTO_VERTICAL", "large_photo_vertical"),
        ("thumbnail", "VIDEO_HORIZONTAL", "thumbnail_video_horizontal"),
        ("original", "VIDEO_VERTICAL", "original_video_vertical"),
        ("small", "PHOTO", "small_photo"),  # the coarse type of a plain-key queue message
        ("", "PHOTO_HORIZONTAL", "original_photo_horizontal"),
        ("medium", "", "medium_unknown"),
    ],
)
def test_output_names_use_the_raw_assets_type(resolution: str, raw_type: str, name: str) -> None:
    assert keys.output_name(resolution, raw_type) == name


def test_file_without_extension_and_without_segment() -> None:
    assert keys.derivative_key("8/raw/README", "small") == "8/processed/small/README.jpg"


def test_zip_key() -> None:
    assert keys.zip_key(42) == "42/processed/zip/listing-media.zip"
    assert keys.zip_key("42") == keys.zip_key(42)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "123/raw/photo/vertical/vertical-03-IMG_2705.jpg",
            "photo/vertical/vertical-03-IMG_2705.jpg",
        ),
        ("123/raw/2022-01-02/photo/vertical/a.jpg", "photo/vertical/a.jpg"),
        ("123/processed/photo/vertical/large/a.jpg", "photo/vertical/large/a.jpg"),
        ("123/processed/video/vertical/original/v.mp4", "video/vertical/original/v.mp4"),
        ("123/raw/project/doc/Planta baixa ç.pdf", "project/doc/Planta baixa ç.pdf"),
        ("raw/photo/x.jpg", "photo/x.jpg"),
        # a date-like file name is a file name, not a folder
        ("123/raw/photo/2024-01-01", "photo/2024-01-01"),
    ],
)
def test_zip_entry_names(key: str, expected: str) -> None:
    assert keys.zip_entry_name(key, 123) == expected


@pytest.mark.parametrize(
    "key",
    [
        "123/raw/../../../etc/passwd",
        "/123/raw/photo/a.jpg",
        "123/raw/photo/..\\..\\win.ini",
        "123/raw/photo/a..b.jpg",
        "//..//",
        "..",
    ],
)
def test_zip_entry_names_never_escape(key: str) -> None:
    name = keys.zip_entry_name(key, 123)
    assert name
    assert ".." not in name
    assert not name.startswith("/")
    assert "\\" not in name


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("C:/Windows/drive.jpg", "C_/Windows/drive.jpg"),
        ("123/raw/photo/line\r\nbreak.jpg", "photo/line__break.jpg"),
        ("123/raw/photo/tab\tnul\x00del\x7f.jpg", "photo/tab_nul_del_.jpg"),
        ('123/raw/photo/a<b>c:d"e|f?g*h.jpg', "photo/a_b_c_d_e_f_g_h.jpg"),
        ("123/raw/photo/cafe\u0301.jpg", "photo/caf\u00e9.jpg"),  # NFD -> NFC
        ("123/raw/photo/x\u202egpj.exe", "photo/x_gpj.exe"),  # no bidi override
        ("123/raw/photo/a\u2028b.jpg", "photo/a_b.jpg"),  # no line separator
        ("123/raw/photo/nul.jpg", "photo/_nul.jpg"),  # Windows device names
        ("123/raw/photo/COM1", "photo/_COM1"),
        ("123/raw/photo/a.jpg. . ", "photo/a.jpg"),  # Windows drops trailing dots/spaces
    ],
)
def test_zip_entry_names_are_portable(key: str, expected: str) -> None:
    assert keys.zip_entry_name(key, 123) == expected


def test_zip_entry_name_segments_fit_a_file_name() -> None:
    name = keys.zip_entry_name("123/raw/photo/" + "\u00e9" * 200 + ".jpeg", 123)
    folder, filename = name.rsplit("/", 1)
    assert folder == "photo"
    assert filename.endswith(".jpeg") and len(filename.encode()) <= 255
    many = keys.unique_entry_names([name, name])
    assert many[1].endswith(" (2).jpeg") and len(many[1].rsplit("/", 1)[1].encode()) <= 255


def test_unique_entry_names_collide_like_macos_and_windows() -> None:
    nfc, nfd = "photo/caf\u00e9.jpg", "photo/cafe\u0301.jpg"
    assert nfc != nfd
    unique = keys.unique_entry_names([nfc, nfd, "PHOTO/CAF\u00c9.JPG"])
    assert unique == [nfc, "photo/cafe\u0301 (2).jpg", "PHOTO/CAF\u00c9 (3).JPG"]
    assert len({keys.entry_name_identity(name) for name in unique}) == 3


def test_a_file_never_takes_the_name_of_a_folder() -> None:
    # "photo" (a file) and "photo/x.jpg" (a file in a folder) cannot both be extracted
    assert keys.unique_entry_names(["photo", "Photo/x.jpg"]) == ["photo (2)", "Photo/x.jpg"]


def test_unique_entry_names_suffix_before_the_extension() -> None:
    names = [
        "photo/a.jpg",
        "photo/a.jpg",
        "photo/A.JPG",
        "photo/a (2).jpg",
        "video/a.jpg",
        "noext",
        "noext",
    ]
    unique = keys.unique_entry_names(names)
    assert unique == [
        "photo/a.jpg",
        "photo/a (2).jpg",
        "photo/A (3).JPG",
        "photo/a (2) (2).jpg",
        "video/a.jpg",
        "noext",
        "noext (2)",
    ]
    assert len({u.casefold() for u in unique}) == len(names)


def test_unique_entry_names_from_colliding_keys() -> None:
    listing = 9
    raw_keys = [
        "9/raw/photo/vertical/v-01-a.jpg",
        "9/raw/2021-03-04/photo/vertical/v-01-a.jpg",
        "9/raw/2021-03-05/photo/vertical/v-01-a.jpg",
    ]
    names = keys.unique_entry_names(keys.zip_entry_name(k, listing) for k in raw_keys)
    assert names == [
        "photo/vertical/v-01-a.jpg",
        "photo/vertical/v-01-a (2).jpg",
        "photo/vertical/v-01-a (3).jpg",
    ]


def test_types() -> None:
    assert keys.is_video_type("VIDEO")
    assert keys.is_video_type("VIDEO_VERTICAL")
    assert not keys.is_video_type("PHOTO_HORIZONTAL")
    assert not keys.is_video_type("PROJECT_RENDER")
    assert keys.coarse_type_from_key("1/raw/video/vertical/v.mp4") == "VIDEO"
    assert keys.coarse_type_from_key("1/raw/photo/vertical/video.jpg") == "PHOTO"


# Written out, not read from keys.SEGMENT_BY_TYPE: a renamed folder must fail here.
@pytest.mark.parametrize(
    ("asset_type", "raw", "large", "poster", "transcode"),
    [
        (
            "PHOTO_VERTICAL",
            "5/raw/photo/vertical/ref-f.jpg",
            "5/processed/photo/vertical/large/ref-f.jpg",
            "5/processed/photo/vertical/thumbnail/ref-f.mp4",
            "5/processed/photo/vertical/original/ref-f.mp4",
        ),
        (
            "PHOTO_HORIZONTAL",
            "5/raw/photo/horizontal/ref-f.jpg",
            "5/processed/photo/horizontal/large/ref-f.jpg",
            "5/processed/photo/horizontal/thumbnail/ref-f.mp4",
            "5/processed/photo/horizontal/original/ref-f.mp4",
        ),
        (
            "VIDEO_VERTICAL",
            "5/raw/video/vertical/ref-f.jpg",
            "5/processed/video/vertical/large/ref-f.jpg",
            "5/processed/video/vertical/thumbnail/ref-f.mp4",
            "5/processed/video/vertical/original/ref-f.mp4",
        ),
        (
            "VIDEO_HORIZONTAL",
            "5/raw/video/horizontal/ref-f.jpg",
            "5/processed/video/horizontal/large/ref-f.jpg",
            "5/processed/video/horizontal/thumbnail/ref-f.mp4",
            "5/processed/video/horizontal/original/ref-f.mp4",
        ),
        (
            "PROJECT_DOC",
            "5/raw/project/doc/ref-f.jpg",
            "5/processed/project/doc/large/ref-f.jpg",
            "5/processed/project/doc/thumbnail/ref-f.mp4",
            "5/processed/project/doc/original/ref-f.mp4",
        ),
        (
            "PROJECT_RENDER",
            "5/raw/project/render/ref-f.jpg",
            "5/processed/project/render/large/ref-f.jpg",
            "5/processed/project/render/thumbnail/ref-f.mp4",
            "5/processed/project/render/original/ref-f.mp4",
        ),
    ],
)
def test_every_asset_type_maps_to_its_spec_folder(
    asset_type: str, raw: str, large: str, poster: str, transcode: str
) -> None:
    assert keys.raw_key(5, asset_type, "ref", "f.jpg") == raw
    assert keys.derivative_key(raw, "large") == large
    assert keys.poster_key(raw) == poster
    assert keys.transcode_key(raw) == transcode


def test_there_are_exactly_the_six_spec_asset_types() -> None:
    assert sorted(keys.SEGMENT_BY_TYPE) == [
        "PHOTO_HORIZONTAL",
        "PHOTO_VERTICAL",
        "PROJECT_DOC",
        "PROJECT_RENDER",
        "VIDEO_HORIZONTAL",
        "VIDEO_VERTICAL",
    ]


def test_derivatives_of_every_size_are_written_out() -> None:
    raw = "9/raw/photo/horizontal/h-01-a.png"
    assert [
        keys.derivative_key(raw, size) for size in ("thumbnail", "small", "medium", "large")
    ] == [
        "9/processed/photo/horizontal/thumbnail/h-01-a.jpg",
        "9/processed/photo/horizontal/small/h-01-a.jpg",
        "9/processed/photo/horizontal/medium/h-01-a.jpg",
        "9/processed/photo/horizontal/large/h-01-a.jpg",
    ]


@pytest.mark.parametrize(
    "bad_key",
    [
        "123/raw/2024-01-01",  # only a date folder after raw/: no file name
        "123/raw/2024-01-01/2024-01-02",
        "123/raw",
    ],
)
def test_a_key_without_a_file_name_after_raw_is_invalid_key(bad_key: str) -> None:
    with pytest.raises(PipelineError) as err:
        keys.split_raw_key(bad_key)
    assert err.value.code == ErrorCode.INVALID_KEY
    assert repr(bad_key) in err.value.message


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        # Windows extractors split at backslashes: so does the entry name
        ("123\\raw\\photo\\vertical\\a.jpg", "photo/vertical/a.jpg"),
        ("123/raw/photo\\vertical/2024-05-17\\b.jpg", "photo/vertical/b.jpg"),
        # a date folder directly above the file goes, like any other date folder
        ("123/raw/photo/vertical/2024-05-18/a.jpg", "photo/vertical/a.jpg"),
        ("123/raw/2024-05-18/a.jpg", "a.jpg"),
        ("123/processed/photo/vertical/large/2024-05-18/a.jpg", "photo/vertical/large/a.jpg"),
        # only the listing's own id is dropped, and only in front
        ("124/raw/photo/a.jpg", "124/raw/photo/a.jpg"),
        ("photo/123/a.jpg", "photo/123/a.jpg"),
        ("", "unnamed"),
        ("123/raw/", "unnamed"),
        # empty, "." and ".." segments go before the listing id and raw/ are looked for
        ("/123/raw/photo/a.jpg", "photo/a.jpg"),
        ("123/./raw/a.jpg", "a.jpg"),
        ("123/../raw/a.jpg", "a.jpg"),
        # the listing id goes even without a raw/ or processed/ folder after it
        ("123/photo/a.jpg", "photo/a.jpg"),
        # trailing dots and spaces go, nothing else ("BOX" keeps its X)
        ("123/raw/photo/BOX", "photo/BOX"),
        # a device name is the part before the first dot
        ("123/raw/photo/nul.tar.gz", "photo/_nul.tar.gz"),
    ],
)
def test_zip_entry_names_of_unusual_keys(key: str, expected: str) -> None:
    assert keys.zip_entry_name(key, 123) == expected


def test_unsafe_key_parts_are_shown_in_the_error() -> None:
    with pytest.raises(PipelineError) as err:
        keys.split_raw_key("123/raw/photo/a\x01.jpg")
    assert err.value.code == ErrorCode.INVALID_KEY
    assert "control character '\\x01'" in err.value.message
    long_key = "123/raw/" + "d/" * 150
    with pytest.raises(PipelineError) as err:
        keys.split_raw_key(long_key)
    assert repr(long_key[:200]) + "..." in err.value.message


def test_invalid_key_messages_are_exact() -> None:
    cases = {
        "": "invalid raw key '': empty key",
        "123/raw": "invalid raw key '123/raw': no filename after 'raw/'",
        "123/photo/a.jpg": "invalid raw key '123/photo/a.jpg': no 'raw/' folder",
        "1//raw/a": "invalid raw key '1//raw/a': empty, '.' or '..' path segment (or a leading '/')",
        "1/raw/./a": "invalid raw key '1/raw/./a': empty, '.' or '..' path segment (or a leading '/')",
        "1/raw/../a": "invalid raw key '1/raw/../a': empty, '.' or '..' path segment (or a leading '/')",
    }
    for key, message in cases.items():
        with pytest.raises(PipelineError) as err:
            keys.split_raw_key(key)
        assert err.value.message == message
    with pytest.raises(PipelineError) as err:
        keys.split_raw_key(None)  # type: ignore[arg-type]
    assert err.value.message == "invalid raw key 'None': empty key"


def test_a_key_is_shown_whole_up_to_200_characters() -> None:
    whole = "1/" + "a" * 198  # 200 characters, no raw/ folder
    with pytest.raises(PipelineError) as err:
        keys.split_raw_key(whole)
    assert err.value.message == f"invalid raw key {whole!r}: no 'raw/' folder"
    cut = whole + "b"
    with pytest.raises(PipelineError) as err:
        keys.split_raw_key(cut)
    assert err.value.message == f"invalid raw key {whole!r}...: no 'raw/' folder"


@pytest.mark.parametrize(
    ("char", "refused"),
    [("\x1f", True), (" ", False), ("\x7f", True), ("\x80", False), ("~", False)],
)
def test_control_characters_are_refused_and_the_rest_kept(char: str, refused: bool) -> None:
    key = f"1/raw/photo/a{char}b.jpg"
    if refused:
        with pytest.raises(PipelineError) as err:
            keys.split_raw_key(key)
        assert err.value.message.endswith(f": control character {char!r}")
    else:
        assert keys.split_raw_key(key).filename == f"a{char}b.jpg"


@pytest.mark.parametrize("reference", ["", "a/b", ".", ".."])
def test_raw_key_refuses_references_that_would_change_the_path(reference: str) -> None:
    with pytest.raises(ValueError) as err:
        keys.raw_key(1, "PHOTO_VERTICAL", reference, "f.jpg")
    assert str(err.value) == f"reference must be a non-empty name without '/', got {reference!r}"


def test_raw_key_messages() -> None:
    with pytest.raises(ValueError) as err:
        keys.raw_key(1, "PHOTO_VERTICAL", "r", "a/b.jpg")
    assert str(err.value) == "filename must be a non-empty name without '/', got 'a/b.jpg'"
    with pytest.raises(ValueError) as err:
        keys.raw_key(1, "ZIP", "r", "f")
    assert str(err.value) == "unknown asset type 'ZIP'"
    with pytest.raises(ValueError) as err:
        keys.derivative_key("1/raw/a.jpg", "huge")
    assert str(err.value) == (
        "unknown derivative size 'huge'; expected one of ['thumbnail', 'small', 'medium', 'large']"
    )


def test_parts_of_a_key_without_an_extension_or_prefix() -> None:
    parts = keys.split_raw_key("raw/photo/vertical/.hidden")
    assert (parts.prefix, parts.segment, parts.filename, parts.stem) == (
        "",
        "photo/vertical",
        ".hidden",
        ".hidden",
    )
    assert parts.processed_folder("small") == "processed/photo/vertical/small/"
    assert keys.transcode_filename("1/raw/v/clip.final.mov") == "clip.final.mp4"


@pytest.mark.parametrize(
    ("resolution", "raw_type", "name"),
    [
        (" Large ", " Photo Vertical ", "large_photo_vertical"),
        ("  ", "VIDEO", "original_video"),
        ("small", "   ", "small_unknown"),
    ],
)
def test_output_names_are_trimmed_and_lowercased(resolution: str, raw_type: str, name: str) -> None:
    assert keys.output_name(resolution, raw_type) == name


def test_legacy_poster_keys_of_a_jpg_named_video() -> None:
    # the raw file is already .jpg: both legacy rules give the same key, listed once
    assert keys.legacy_poster_keys("5/raw/video/vertical/v.jpg") == [
        "5/processed/video/vertical/thumbnail/v.jpg"
    ]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("123/raw/photo/CON.txt", "photo/_CON.txt"),
        ("123/raw/photo/lpt9", "photo/_lpt9"),
        ("123/raw/photo/LPT10.jpg", "photo/LPT10.jpg"),  # only LPT1-9 are reserved
        ("123/raw/photo/com0.jpg", "photo/com0.jpg"),
        ("123/raw/photo/ aux .jpg", "photo/_ aux .jpg"),
        ("123/raw/photo/con-sole.jpg", "photo/con-sole.jpg"),
        ("123/raw/photo/...", "photo"),  # a name of dots is no name
        ("123/raw/photo/a\u200bb\ufeff.jpg", "photo/a_b_.jpg"),
        ("123/raw/photo/a\u2066b.jpg", "photo/a_b.jpg"),
        ("123/raw/photo/a\u2029b.jpg", "photo/a_b.jpg"),
    ],
)
def test_more_unportable_names(key: str, expected: str) -> None:
    assert keys.zip_entry_name(key, 123) == expected


def test_long_segments_keep_their_extension_unless_it_is_the_long_part() -> None:
    exact = "a" * 251 + ".jpg"  # 255 bytes: fits
    assert keys.zip_entry_name(f"1/raw/{exact}", 1) == exact
    over = "a" * 252 + ".jpg"
    assert keys.zip_entry_name(f"1/raw/{over}", 1) == "a" * 251 + ".jpg"
    long_ext = "a." + "e" * 300  # the "extension" is most of the name: cut as a whole
    assert keys.zip_entry_name(f"1/raw/{long_ext}", 1) == long_ext[:255]
    half = "a" * 200 + "." + "e" * 126  # 127-byte extension: kept (limit // 2)
    assert keys.zip_entry_name(f"1/raw/{half}", 1) == "a" * 128 + "." + "e" * 126
    more = "a" * 200 + "." + "e" * 127  # 128 bytes: more than half, cut as a whole
    assert keys.zip_entry_name(f"1/raw/{more}", 1) == more[:255]
    multibyte = "é" * 200 + ".jpg"  # cut at a character boundary
    assert keys.zip_entry_name(f"1/raw/{multibyte}", 1) == "é" * 125 + ".jpg"


def test_numbered_names_stay_within_255_bytes() -> None:
    name = "b" * 251 + ".jpg"
    first, second = keys.unique_entry_names([name, name])
    assert first == name
    assert second == "b" * 247 + " (2).jpg" and len(second.encode()) == 255


def test_numbered_names_are_cut_at_a_character_boundary() -> None:
    name = "\u00e9" * 125 + ".jpg"  # 254 bytes; " (2).jpg" leaves 247 bytes: 123.5 "é"
    second = keys.unique_entry_names([name, name])[1]
    assert second == "\u00e9" * 123 + " (2).jpg"


def test_a_file_never_takes_the_name_of_any_folder_above_another_file() -> None:
    # "a/b/c.jpg" needs the folders "a/b" and "a": neither may be a file's name
    names = ["a/b", "A", "a/b/c.jpg"]
    assert keys.unique_entry_names(names) == ["a/b (2)", "A (2)", "a/b/c.jpg"]
