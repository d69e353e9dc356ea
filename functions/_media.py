"""Media type detection by magic bytes. Names and Content-Type headers are never trusted."""

from __future__ import annotations

from pathlib import Path

# (offset, signature, media type). Order matters only where signatures share a prefix.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"BM", "image/bmp"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"\x1aE\xdf\xa3", "video/webm"),  # EBML: WebM or Matroska, told apart by ffprobe later
    (0, b"ID3", "audio/mpeg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"OggS", "audio/ogg"),
    (0, b"%PDF", "application/pdf"),
    (0, b"%!PS", "application/postscript"),
    (0, b"\xc5\xd0\xd3\xc6", "application/postscript"),  # DOS EPS binary header
)

_RIFF_KINDS = {b"WEBP": "image/webp", b"AVI ": "video/x-msvideo", b"WAVE": "audio/wav"}
_ISO_BRANDS_IMAGE = {b"avif", b"avis", b"heic", b"heix", b"mif1"}
_ISO_BRANDS_QUICKTIME = {b"qt  "}

HEAD_BYTES = 512


def sniff_bytes(head: bytes) -> str:
    """Return the media type that `head` (the first bytes of a file) really is, or
    `application/octet-stream` when it is nothing we recognise."""
    if head[:4] == b"RIFF" and head[8:12] in _RIFF_KINDS:
        return _RIFF_KINDS[head[8:12]]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _ISO_BRANDS_IMAGE:
            return "image/avif" if brand.startswith(b"avi") else "image/heic"
        if brand in _ISO_BRANDS_QUICKTIME:
            return "video/quicktime"
        return "video/mp4"
    for offset, signature, media_type in _SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return media_type
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<?xml", b"<svg", b"<!doctype", b"<html")):
        return "image/svg+xml" if b"<svg" in text else "text/html"
    return "application/octet-stream"


def sniff(path: Path) -> str:
    with path.open("rb") as f:
        return sniff_bytes(f.read(HEAD_BYTES))
