"""The building blocks of the app's file URLs and storage layout.

Signed tokens (HMAC-SHA256 with an expiry and a purpose), storage segments that
can never climb out of their directory, and file names reduced to labels.
"""

from __future__ import annotations

import pytest

from chatkit_asgi._attachments import (
    AttachmentRules,
    ExpiredToken,
    InvalidToken,
    Signer,
    clean_name,
    storage_segment,
)

KEY = b"k" * 32


def test_a_token_carries_its_claims_until_it_expires() -> None:
    signer = Signer(KEY)
    token = signer.sign("download", {"i": "atc_1"}, expires_at=1000)
    assert signer.verify(token, "download", now=999)["i"] == "atc_1"
    with pytest.raises(ExpiredToken):
        signer.verify(token, "download", now=1000)


def test_a_token_is_bound_to_its_key_purpose_and_content() -> None:
    signer = Signer(KEY)
    token = signer.sign("download", {"i": "atc_1"}, expires_at=1000)
    claims, mac = token.split(".")
    with pytest.raises(InvalidToken):
        Signer(b"x" * 32).verify(token, "download", now=0)
    with pytest.raises(InvalidToken):
        signer.verify(token, "upload", now=0)
    other = signer.sign("download", {"i": "atc_2"}, expires_at=1000).split(".")[0]
    for forged in (f"{other}.{mac}", f"{claims}.{mac[:-1]}", claims, "", ".", "a.b.c", "é.é"):
        with pytest.raises(InvalidToken):
            signer.verify(forged, "download", now=0)


def test_an_expired_token_still_tells_when_it_expired() -> None:
    signer = Signer(KEY)
    token = signer.sign("download", {}, expires_at=1000)
    assert signer.expiry(token, "download") == 1000
    assert Signer(b"x" * 32).expiry(token, "download") is None


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        Signer(b"short")


@pytest.mark.parametrize(
    "value", ["..", ".", "../bob", "a/b", "a\\b", "a\x00b", "", "Bob", "a..b", "x" * 200]
)
def test_unsafe_segments_are_hashed(value: str) -> None:
    segment = storage_segment(value)
    assert segment.startswith("~")
    assert "/" not in segment and "\\" not in segment and ".." not in segment


def test_plain_segments_are_kept_readable() -> None:
    assert storage_segment("alice") == "alice"
    assert storage_segment("atc_0123abcd") == "atc_0123abcd"
    assert storage_segment("user@example.com") == "user@example.com"
    assert storage_segment("Alice") != storage_segment("alice")  # case-insensitive disks


@pytest.mark.parametrize(
    ("name", "clean"),
    [
        ("photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("C:\\fakepath\\report.pdf", "report.pdf"),
        ("a\x00b\nc.txt", "abc.txt"),
        ("..", "file"),
        ("", "file"),
        ("été.png", "été.png"),
    ],
)
def test_names_are_reduced_to_labels(name: str, clean: str) -> None:
    assert clean_name(name) == clean


def test_the_allow_list_takes_exact_types_families_and_everything() -> None:
    rules = AttachmentRules.of(["image/*", "application/PDF"], 10)
    assert rules.allows("image/png")
    assert rules.allows("Application/pdf; charset=binary")
    assert not rules.allows("text/plain")
    assert not rules.allows("")
    assert AttachmentRules.of(["*/*"], 10).allows("application/x-anything")
