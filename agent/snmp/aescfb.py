"""AES in CFB-128 mode, the cipher of SNMPv3 privacy (RFC 3826 and its 192/256-bit variants), through
the OpenSSL that Python's ssl module already links (the agent's MQTT connection loads it anyway).

Why not the `cryptography` package: its import costs the agent about 8.7 MiB resident (a 14 MB Rust
extension) for this one cipher, and a router's Python often has no wheel of it at all. This module
asks OpenSSL's EVP interface for the same cipher through ctypes (about 0.3 MiB). DES privacy still
needs `cryptography` (agent/snmp/usm.py imports it at the first DES message), since OpenSSL 3 keeps
DES in its legacy provider.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

_CIPHERS = {16: "EVP_aes_128_cfb128", 24: "EVP_aes_192_cfb128", 32: "EVP_aes_256_cfb128"}


@functools.cache
def _libcrypto() -> Any:
    """OpenSSL's libcrypto: the one the ssl module's extension is linked with (a handle on a shared object
    finds the symbols of the libraries it depends on), else one found by its usual names."""
    import _ssl
    candidates = [getattr(_ssl, "__file__", None), None, "libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so"]
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(candidate)
            lib.EVP_CIPHER_CTX_new
        except (OSError, AttributeError):
            continue
        break
    else:
        raise OSError("OpenSSL's libcrypto was not found (looked beside the ssl module, then libcrypto.so.3, "
                      "libcrypto.so.1.1, libcrypto.so)")
    lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
    lib.EVP_CIPHER_CTX_new.argtypes = []
    lib.EVP_CIPHER_CTX_free.restype = None
    lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
    for name in _CIPHERS.values():
        getattr(lib, name).restype = ctypes.c_void_p
        getattr(lib, name).argtypes = []
    lib.EVP_CipherInit_ex.restype = ctypes.c_int
    lib.EVP_CipherInit_ex.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p,
                                      ctypes.c_char_p, ctypes.c_int]
    lib.EVP_CipherUpdate.restype = ctypes.c_int
    lib.EVP_CipherUpdate.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int),
                                     ctypes.c_char_p, ctypes.c_int]
    return lib


def cfb128(key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
    """`data` encrypted (or decrypted) with AES-CFB128 under `key` (16, 24 or 32 bytes) and `iv` (16 bytes).
    CFB is a stream mode: the result is as long as `data`, and no padding is involved."""
    if len(key) not in _CIPHERS:
        raise ValueError(f"an AES key is 16, 24 or 32 bytes, not {len(key)}")
    if len(iv) != 16:
        raise ValueError(f"AES-CFB128's IV is 16 bytes, not {len(iv)}")
    lib = _libcrypto()
    ctx = lib.EVP_CIPHER_CTX_new()
    if not ctx:
        raise MemoryError("EVP_CIPHER_CTX_new failed")
    try:
        cipher = getattr(lib, _CIPHERS[len(key)])()
        if lib.EVP_CipherInit_ex(ctx, cipher, None, key, iv, 1 if encrypt else 0) != 1:
            raise OSError("EVP_CipherInit_ex failed")
        out = ctypes.create_string_buffer(len(data) + 16)
        written = ctypes.c_int(0)
        if data and lib.EVP_CipherUpdate(ctx, out, ctypes.byref(written), data, len(data)) != 1:
            raise OSError("EVP_CipherUpdate failed")
        if written.value != len(data):  # a stream mode has nothing left for EVP_CipherFinal
            raise OSError(f"EVP_CipherUpdate gave {written.value} bytes for {len(data)}")
        return out.raw[:written.value]
    finally:
        lib.EVP_CIPHER_CTX_free(ctx)
