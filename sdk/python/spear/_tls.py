"""TLS on a tcp channel (docs/protocol.md, "TLS"), with the standard
library's ssl module: the agent is checked by a pin or a CA, and in mutual
mode the instance presents the certificate the agent issued it, whose
Ed25519 key it derives from its secret."""

from __future__ import annotations

import hashlib
import hmac
import os
import ssl
import tempfile
from dataclasses import dataclass
from typing import Mapping, Optional

from ._errors import AuthFailed, ConfigError

ENV_TLS_PIN = "SPEAR_TLS_PIN"
ENV_TLS_CA = "SPEAR_TLS_CA"
ENV_TLS_SERVER_NAME = "SPEAR_TLS_SERVER_NAME"
ENV_TLS_CERT = "SPEAR_TLS_CERT"

#: HKDF info of the client key.
CLIENT_KEY_INFO = b"spear-tls-client-key-v1"

# PKCS#8 for an Ed25519 private key (RFC 8410) is this prefix and the seed.
_PKCS8_ED25519 = bytes.fromhex("302e020100300506032b657004220420")


def client_key_seed(secret: bytes) -> bytes:
    """The mutual-TLS key's Ed25519 seed: HKDF-SHA256 (RFC 5869) of the
    secret, no salt, info "spear-tls-client-key-v1", 32 bytes."""
    prk = hmac.new(b"\0" * 32, secret, hashlib.sha256).digest()
    return hmac.new(prk, CLIENT_KEY_INFO + b"\x01", hashlib.sha256).digest()


def client_key_pem(secret: bytes) -> bytes:
    """The mutual-TLS private key, PEM-encoded PKCS#8."""
    import base64

    der = _PKCS8_ED25519 + client_key_seed(secret)
    return b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(der) + b"-----END PRIVATE KEY-----\n"


@dataclass(frozen=True)
class TLS:
    """How to reach the agent over TLS: check it by pin (hex SHA-256 of
    its certificate) or by CA and server name; cert is the instance's
    client certificate in mutual mode."""

    pin: str = ""
    ca: str = ""
    server_name: str = ""
    cert: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Optional["TLS"]:
        """The SPEAR_TLS_* variables, or None when the channel has no TLS."""
        t = cls(
            pin=env.get(ENV_TLS_PIN, ""),
            ca=env.get(ENV_TLS_CA, ""),
            server_name=env.get(ENV_TLS_SERVER_NAME, ""),
            cert=env.get(ENV_TLS_CERT, ""),
        )
        if not t.pin and not t.ca:
            return None
        if t.pin:
            try:
                if len(bytes.fromhex(t.pin)) != 32:
                    raise ValueError
            except ValueError:
                raise ConfigError(f"{ENV_TLS_PIN} is not a hex SHA-256") from None
        return t

    def context(self, secret: bytes) -> ssl.SSLContext:
        """The client's SSLContext: TLS 1.3; with a pin, no chain or name
        check (check_pin does the check once connected); with a CA, both."""
        if self.pin:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            try:
                ctx = ssl.create_default_context(cadata=self.ca)
            except (ssl.SSLError, ValueError) as e:
                raise ConfigError(f"{ENV_TLS_CA}: {e}") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if self.cert:
            _load_client_cert(ctx, self.cert.encode(), client_key_pem(secret))
        return ctx

    def server_hostname(self, host: str) -> str:
        """The name the agent's certificate is checked against (CA mode)."""
        return self.server_name or host

    def check_pin(self, ssl_object: Optional[ssl.SSLObject]) -> None:
        """Refuse a connection whose agent is not the pinned certificate,
        before anything is sent on it."""
        if not self.pin:
            return
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der or not hmac.compare_digest(hashlib.sha256(der).digest(), bytes.fromhex(self.pin)):
            raise AuthFailed(f"the agent's TLS certificate does not match {ENV_TLS_PIN}")


def _load_client_cert(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """ssl loads a key from a file only. The file is an anonymous memory
    file where the platform has them (Linux), else a temporary file in a
    private directory, removed at once."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("spear-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, cert_pem + key_pem)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory() as d:  # mode 0700
        path = os.path.join(d, "client.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, cert_pem + key_pem)
        finally:
            os.close(fd)
        ctx.load_cert_chain(path)
