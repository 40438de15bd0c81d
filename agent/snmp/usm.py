"""SNMPv3's message (RFC 3412) with the User-based Security Model (RFC 3414): keys, digests, privacy.

Authentication: HMAC-MD5-96 and HMAC-SHA-96 (RFC 3414), HMAC-SHA-2 (RFC 7860). Privacy: DES-CBC (RFC
3414), AES-CFB128 (RFC 3826), and AES-192/256 with either way vendors extend the localized key: the
Blumenthal draft's (net-snmp's AES-192/AES-256; our `aes192`, `aes256`) and the Reeder draft's (Cisco's
and many others'; net-snmp's AES-192C/AES-256C; our `aes192c`, `aes256c`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any, Callable

from agent.snmp import aescfb
from agent.snmp.ber import (OCTETS, SEQUENCE, BerError, children, expect, header, integer, octets, read_int,
                            read_octets, sequence)

HASHES: dict[str, tuple[Callable[..., Any], int]] = {  # auth protocol: (hash, length of the digest sent)
    "md5": (hashlib.md5, 12), "sha": (hashlib.sha1, 12), "sha224": (hashlib.sha224, 16),
    "sha256": (hashlib.sha256, 24), "sha384": (hashlib.sha384, 32), "sha512": (hashlib.sha512, 48)}
PRIV_KEY_BYTES = {"des": 16, "aes": 16, "aes192": 24, "aes256": 32, "aes192c": 24, "aes256c": 32}
FLAG_AUTH, FLAG_PRIV, FLAG_REPORTABLE = 1, 2, 4
MAX_SIZE = 65507
USM = 3

# usmStats counters (RFC 3414 section 5) that an authoritative engine reports instead of answering
REPORTS = {(1, 3, 6, 1, 6, 3, 15, 1, 1, 1, 0): "unsupported_sec_level", (1, 3, 6, 1, 6, 3, 15, 1, 1, 2, 0): "not_in_time_window",
           (1, 3, 6, 1, 6, 3, 15, 1, 1, 3, 0): "unknown_user", (1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0): "unknown_engine_id",
           (1, 3, 6, 1, 6, 3, 15, 1, 1, 5, 0): "wrong_digest", (1, 3, 6, 1, 6, 3, 15, 1, 1, 6, 0): "decryption_error"}


@functools.lru_cache(maxsize=16)
def passphrase_key(passphrase: bytes, auth: str) -> bytes:
    """RFC 3414 A.2: the hash of one megabyte of the passphrase repeated (Ku)."""
    if not passphrase:
        raise ValueError("an SNMPv3 passphrase cannot be empty")
    repeated = passphrase * (1_048_576 // len(passphrase) + 1)
    return HASHES[auth][0](repeated[:1_048_576]).digest()


def localize(ku: bytes, engine_id: bytes, auth: str) -> bytes:
    """RFC 3414 2.6: a key for one authoritative engine (Kul)."""
    return HASHES[auth][0](ku + engine_id + ku).digest()


def auth_key(passphrase: bytes, engine_id: bytes, auth: str) -> bytes:
    return localize(passphrase_key(passphrase, auth), engine_id, auth)


def priv_key(passphrase: bytes, engine_id: bytes, auth: str, priv: str) -> bytes:
    """The localized privacy key (the auth protocol's hash), extended where the cipher needs more."""
    key = auth_key(passphrase, engine_id, auth)
    size, digest = PRIV_KEY_BYTES[priv], HASHES[auth][0]
    if priv in ("aes192", "aes256"):  # Blumenthal: append the hash of all the key so far
        while len(key) < size:
            key += digest(key).digest()
    elif priv in ("aes192c", "aes256c"):  # Reeder: append the key so far, taken as a passphrase and localized
        while len(key) < size:
            key += auth_key(key, engine_id, auth)
    return key[:size]


def _des(key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
    """DES-CBC through `cryptography` (OpenSSL 3 keeps DES in its legacy provider): loaded only here."""
    from cryptography.hazmat.primitives.ciphers import Cipher, modes
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:  # cryptography before 43
        from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES  # type: ignore[no-redef]
    cipher = Cipher(TripleDES(key * 3), modes.CBC(iv))  # three times one key is single DES
    work = cipher.encryptor() if encrypt else cipher.decryptor()
    return work.update(data) + work.finalize()


@dataclass
class User:
    """One SNMPv3 user's protocols and passphrases (None where its level has none)."""

    name: bytes
    auth: str | None
    auth_pass: bytes | None
    priv: str | None
    priv_pass: bytes | None
    context: bytes = b""

    @property
    def flags(self) -> int:
        return (FLAG_AUTH if self.auth_pass else 0) | (FLAG_PRIV if self.priv_pass else 0)


class Security:
    """A user's keys localized for one device's engine, and the salts its privacy draws on."""

    def __init__(self, user: User, engine_id: bytes) -> None:
        self.user, self.engine_id = user, engine_id
        self.auth_key = auth_key(user.auth_pass, engine_id, user.auth) if user.auth_pass and user.auth else b""
        self.priv_key = (priv_key(user.priv_pass, engine_id, user.auth, user.priv)
                         if user.priv_pass and user.priv and user.auth else b"")
        self._salt = int.from_bytes(os.urandom(8), "big")

    def digest(self, message: bytes) -> bytes:
        assert self.user.auth is not None
        algorithm, length = HASHES[self.user.auth]
        return hmac.new(self.auth_key, message, algorithm).digest()[:length]

    def _next_salt(self) -> int:
        self._salt = (self._salt + 1) % (1 << 64)
        return self._salt

    def encrypt(self, plain: bytes, boots: int, time: int) -> tuple[bytes, bytes]:
        """(ciphertext, msgPrivacyParameters)"""
        if self.user.priv == "des":
            salt = boots.to_bytes(4, "big") + (self._next_salt() & 0xFFFFFFFF).to_bytes(4, "big")
            iv = bytes(a ^ b for a, b in zip(self.priv_key[8:16], salt))
            padded = plain + b"\x00" * (-len(plain) % 8)
            return _des(self.priv_key[:8], iv, padded, True), salt
        salt = self._next_salt().to_bytes(8, "big")
        iv = boots.to_bytes(4, "big") + time.to_bytes(4, "big") + salt
        return aescfb.cfb128(self.priv_key, iv, plain, True), salt

    def decrypt(self, cipher: bytes, params: bytes, boots: int, time: int) -> bytes:
        if len(params) != 8:
            raise BerError(f"msgPrivacyParameters of {len(params)} bytes, not 8")
        if self.user.priv == "des":
            if len(cipher) % 8:
                raise BerError("DES ciphertext not a multiple of 8 bytes")
            iv = bytes(a ^ b for a, b in zip(self.priv_key[8:16], params))
            return _des(self.priv_key[:8], iv, cipher, False)
        return aescfb.cfb128(self.priv_key, boots.to_bytes(4, "big") + time.to_bytes(4, "big") + params, cipher, False)


def message(msg_id: int, flags: int, engine_id: bytes, boots: int, time: int, user: bytes, scoped_pdu: bytes,
            security: Security | None = None) -> bytes:
    """A v3 message carrying `scoped_pdu`, encrypted and signed as `flags` say (with `security`'s keys)."""
    priv_params, data = b"", scoped_pdu
    if flags & FLAG_PRIV:
        assert security is not None
        encrypted, priv_params = security.encrypt(scoped_pdu, boots, time)
        data = octets(encrypted)
    auth_len = HASHES[security.user.auth][1] if flags & FLAG_AUTH and security and security.user.auth else 0
    before_auth = octets(engine_id) + integer(boots) + integer(time) + octets(user)
    params_body = before_auth + octets(b"\x00" * auth_len) + octets(priv_params)
    params = octets(sequence(params_body))
    head = integer(3) + sequence(integer(msg_id), integer(MAX_SIZE), octets(bytes([flags])), integer(USM))
    whole = sequence(head, params, data)
    if not auth_len:
        return whole
    assert security is not None
    # where the zeroed digest lies: the outer header, then head, then params' two headers and what precedes it
    offset = (len(whole) - len(head) - len(params) - len(data)) + len(head) \
        + (len(params) - len(params_body)) + len(before_auth) + (len(octets(b"\x00" * auth_len)) - auth_len)
    return whole[:offset] + security.digest(whole) + whole[offset + auth_len:]


def scoped_pdu(context_engine_id: bytes, context: bytes, pdu: bytes) -> bytes:
    return sequence(octets(context_engine_id), octets(context), pdu)


@dataclass
class Received:
    """A v3 message as read, before any of it is trusted."""

    data: bytes
    msg_id: int
    flags: int
    engine_id: bytes
    boots: int
    time: int
    user: bytes
    auth_at: tuple[int, int]  # where msgAuthenticationParameters' value lies in `data`
    priv_params: bytes
    body: tuple[int, int, int]  # the ScopedPDU, or the OCTET STRING that holds it encrypted

    def authentic(self, security: Security) -> bool:
        start, end = self.auth_at
        if security.user.auth is None or end - start != HASHES[security.user.auth][1]:
            return False
        zeroed = self.data[:start] + b"\x00" * (end - start) + self.data[end:]
        return hmac.compare_digest(security.digest(zeroed), self.data[start:end])

    def scoped(self, security: Security | None) -> tuple[bytes, tuple[int, int, int]]:
        """(bytes, element) of the ScopedPDU's PDU, decrypted with `security` if the message is encrypted."""
        data, element = self.data, self.body
        if self.flags & FLAG_PRIV:
            if security is None or not security.priv_key:
                raise BerError("an encrypted message we cannot decrypt")
            cipher = read_octets(data, element, "encryptedPDU")
            data = security.decrypt(cipher, self.priv_params, self.boots, self.time)
            element = header(data, 0)  # DES pads after the ScopedPDU: the padding is not part of it
        parts = children(data, *expect(element, SEQUENCE, "ScopedPDU"))
        if len(parts) != 3:
            raise BerError("a ScopedPDU has 3 parts")
        return data, parts[2]


def msg_id(data: bytes) -> int:
    """A v3 message's msgID, read without trusting the rest."""
    top = children(data, *expect(header(data, 0), SEQUENCE, "message"))
    return read_int(data, children(data, *expect(top[1], SEQUENCE, "msgGlobalData"))[0], "msgID")


def parse(data: bytes) -> Received:
    top = children(data, *expect(header(data, 0), SEQUENCE, "message"))
    if len(top) != 4 or read_int(data, top[0], "msgVersion") != 3:
        raise BerError("not an SNMPv3 message")
    glob = children(data, *expect(top[1], SEQUENCE, "msgGlobalData"))
    if len(glob) != 4:
        raise BerError("msgGlobalData has 4 parts")
    flags = read_octets(data, glob[2], "msgFlags")
    if len(flags) != 1 or read_int(data, glob[3], "msgSecurityModel") != USM:
        raise BerError("not a USM message")
    start, end = expect(top[2], OCTETS, "msgSecurityParameters")
    usm = children(data, *expect(header(data, start, end), SEQUENCE, "UsmSecurityParameters"))
    if len(usm) != 6:
        raise BerError("UsmSecurityParameters has 6 parts")
    return Received(data, read_int(data, glob[0], "msgID"), flags[0], read_octets(data, usm[0], "engine id"),
                    read_int(data, usm[1], "boots"), read_int(data, usm[2], "time"), read_octets(data, usm[3], "user"),
                    expect(usm[4], OCTETS, "msgAuthenticationParameters"), read_octets(data, usm[5], "privacy"),
                    top[3])


def report_kind(binds: list[Any]) -> str | None:
    """The usmStats counter a REPORT names, as a word; None if it names none of them."""
    return REPORTS.get(binds[0][0]) if binds else None
