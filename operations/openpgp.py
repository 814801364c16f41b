"""OpenPGP, as far as an apt repository's signing key needs it: the fingerprint of an ASCII-armored public key,
computed in pure Python (RFC 4880 / RFC 9580), so that neither the controller nor the hosts need ``gpg`` to check
that a downloaded key is the expected one.

:func:`key_fingerprint` is the primary key's fingerprint, :func:`key_fingerprints` every primary key's in a block,
:func:`holds_only` whether a block holds one given key and no other (apt trusts every key in a ``Signed-By`` file).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterator

_ARMOR_BEGIN = re.compile(r"-----BEGIN PGP (.+)-----")
_PUBLIC_KEY_BLOCK = "PUBLIC KEY BLOCK"
_PUBLIC_KEY_TAG = 6
_PACKET_NAMES = {
    1: "public-key encrypted session key",
    2: "signature",
    3: "symmetric-key encrypted session key",
    4: "one-pass signature",
    5: "secret key",
    6: "public key",
    7: "secret subkey",
    8: "compressed data",
    9: "symmetrically encrypted data",
    11: "literal data",
    13: "user ID",
    14: "public subkey",
    17: "user attribute",
    18: "encrypted and integrity protected data",
}


def crc24(data: bytes) -> int:
    """The CRC-24 of RFC 4880 section 6.1, which an armor's ``=XXXX`` line carries."""
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor(armored: str) -> bytes:
    """
    The binary packets of an ASCII-armored ``PUBLIC KEY BLOCK`` (text before its ``BEGIN`` line is ignored, as gpg
    does). The CRC-24 checksum line is checked when present (RFC 9580 lets a writer omit it). ``ValueError`` saying
    why for anything else.
    """
    lines = [line.strip() for line in armored.splitlines()]
    found = next(
        ((index, match[1]) for index, line in enumerate(lines) if (match := _ARMOR_BEGIN.fullmatch(line))), None
    )
    if found is None:
        raise ValueError("not an ASCII-armored OpenPGP block (no -----BEGIN PGP … ----- line)")
    begin, label = found
    if label != _PUBLIC_KEY_BLOCK:
        raise ValueError(f"an armored {label}, not a {_PUBLIC_KEY_BLOCK}")
    try:
        end = lines.index(f"-----END PGP {label}-----", begin + 1)
    except ValueError:
        raise ValueError(f"the armor has no -----END PGP {label}----- line (truncated?)") from None
    body = lines[begin + 1 : end]
    headers = 0
    while headers < len(body) and ": " in body[headers]:  # Version:, Comment: … (a base64 line has no ':')
        headers += 1
    data_lines = [line for line in body[headers:] if line]
    checksum = data_lines.pop()[1:] if data_lines and data_lines[-1].startswith("=") else None
    try:
        data = base64.b64decode("".join(data_lines), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the armor's body is not valid base64") from None
    if not data:
        raise ValueError("the armor holds no data")
    if checksum is not None:
        try:
            expected = base64.b64decode(checksum, validate=True)
        except (binascii.Error, ValueError):
            expected = b""
        if len(expected) != 3:
            raise ValueError(f"the armor's checksum line ={checksum} is malformed")
        if crc24(data) != int.from_bytes(expected, "big"):
            raise ValueError(
                f"bad armor checksum: the data's CRC-24 is {crc24(data):06X}, the armor says "
                f"{int.from_bytes(expected, 'big'):06X} (the block is corrupted)"
            )
    return data


def _packet(data: bytes, offset: int) -> tuple[int, int, int]:
    """The tag, body offset and body length of the packet at ``offset`` (old or new header format)."""
    ctb = data[offset]
    if not ctb & 0x80:
        raise ValueError(f"byte {offset} is not an OpenPGP packet header (0x{ctb:02X})")
    if ctb & 0x40:  # new format: tag in the low 6 bits, then a 1-, 2- or 5-octet length
        tag = ctb & 0x3F
        first = data[offset + 1] if offset + 1 < len(data) else None
        if first is None:
            raise ValueError(f"the packet header at byte {offset} is truncated")
        if first < 192:
            return tag, offset + 2, first
        if first < 224:
            if offset + 2 >= len(data):
                raise ValueError(f"the packet header at byte {offset} is truncated")
            return tag, offset + 3, ((first - 192) << 8) + data[offset + 2] + 192
        if first == 255:
            if offset + 6 > len(data):
                raise ValueError(f"the packet header at byte {offset} is truncated")
            return tag, offset + 6, int.from_bytes(data[offset + 2 : offset + 6], "big")
        raise ValueError(f"the packet at byte {offset} has a partial body length, which no key packet may have")
    tag, length_type = (ctb >> 2) & 0x0F, ctb & 0x03  # old format: tag in bits 5-2, length type in bits 1-0
    if length_type == 3:
        raise ValueError(f"the packet at byte {offset} has an indeterminate length, which no key packet may have")
    size = (1, 2, 4)[length_type]
    if offset + 1 + size > len(data):
        raise ValueError(f"the packet header at byte {offset} is truncated")
    return tag, offset + 1 + size, int.from_bytes(data[offset + 1 : offset + 1 + size], "big")


def _packets(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Each packet's tag and body."""
    offset = 0
    while offset < len(data):
        tag, start, length = _packet(data, offset)
        if start + length > len(data):
            raise ValueError(f"the {_PACKET_NAMES.get(tag, f'tag {tag}')} packet at byte {offset} is truncated")
        yield tag, data[start : start + length]
        offset = start + length


def _v4_fingerprint(body: bytes) -> str:
    """The fingerprint of a public-key packet's body: SHA-1 over 0x99, the 2-octet body length and the body."""
    version = body[0] if body else None
    if version in (2, 3):
        raise ValueError(
            f"a version {version} key (PGP 2.x, obsolete: its fingerprint is MD5 over the key material); only "
            "version 4 keys are supported"
        )
    if version in (5, 6):
        raise ValueError(
            f"a version {version} key (its fingerprint is SHA-256 based, RFC 9580); only version 4 keys are supported"
        )
    if version != 4:
        raise ValueError(f"a public key packet of unknown version {version}; only version 4 keys are supported")
    if len(body) < 6:
        raise ValueError("the version 4 public key packet is too short to hold a key")
    if len(body) > 0xFFFF:
        raise ValueError("the version 4 public key packet is longer than a fingerprint can cover (64 KiB)")
    return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()


def _first_public_key(data: bytes) -> bytes:
    tag, start, length = _packet(data, 0)
    if tag != _PUBLIC_KEY_TAG:
        raise ValueError(f"not a public key: the block starts with a {_PACKET_NAMES.get(tag, f'tag {tag}')} packet")
    if start + length > len(data):
        raise ValueError("the public key packet is truncated")
    return data[start : start + length]


def key_fingerprint(armored: str) -> str:
    """
    The OpenPGP V4 fingerprint (40 uppercase hex digits) of the primary public key an ASCII-armored public key
    block starts with, computed in pure Python: dearmor (checking the CRC-24), read the first packet's header (old
    or new format), require a version 4 public-key packet, SHA-1 over 0x99, its 2-octet length and its body.
    ``ValueError`` saying why for anything else: not armored, a bad checksum, another kind of block or packet, a
    version 3, 5 or 6 key.
    """
    return _v4_fingerprint(_first_public_key(dearmor(armored)))


def _armored_blocks(armored: str) -> list[str]:
    """The text of each armored block, from its ``BEGIN`` line up to the next one; the whole text when none."""
    lines = armored.splitlines()
    starts = [index for index, line in enumerate(lines) if _ARMOR_BEGIN.fullmatch(line.strip())]
    if not starts:
        return [armored]  # dearmor says what is wrong with it
    return ["\n".join(lines[start:end]) for start, end in zip(starts, [*starts[1:], len(lines)], strict=True)]


def key_fingerprints(armored: str) -> list[str]:
    """
    The fingerprints of every primary public key in the text, in order: every key of every armored block (a keyring
    export may hold several keys, and apt trusts the keys of *every* block of an ``.asc`` keyring, so a block
    appended after the first counts too); ``ValueError`` as :func:`key_fingerprint` for any of the blocks, or when
    any packet is malformed.
    """
    fingerprints = []
    for block in _armored_blocks(armored):
        data = dearmor(block)
        _first_public_key(data)
        fingerprints += [_v4_fingerprint(body) for tag, body in _packets(data) if tag == _PUBLIC_KEY_TAG]
    return fingerprints


def holds_only(armored: str, fingerprint: str) -> bool:
    """
    Whether ``armored`` holds the key ``fingerprint`` (40 uppercase hex digits) and no other primary key, in any of
    its armored blocks (apt would trust them all); ``False`` for anything that is not readable armored key blocks.
    """
    try:
        return key_fingerprints(armored) == [fingerprint]
    except ValueError:
        return False
