"""TLS on tcp channels: the environment, the pin, and the client key
derived from the secret (the vector is docs/protocol.md's, and Go's
chantls test's)."""

import hashlib
import unittest

from spear import AuthFailed, Config, ConfigError, TLS
from spear._tls import client_key_pem, client_key_seed

SECRET = "00112233445566778899aabbccddeeff"


def base(**extra):
    env = {"SPEAR_INSTANCE_ID": "process:fn-1", "SPEAR_CHANNEL": "tcp", "SPEAR_ADDRESS": "127.0.0.1:1", "SPEAR_SECRET": SECRET}
    env.update(extra)
    return env


class FakeSSLObject:
    def __init__(self, der):
        self.der = der

    def getpeercert(self, binary_form=False):
        return self.der


class TLSTest(unittest.TestCase):
    def test_client_key_vector(self):
        secret = bytes(range(32))
        self.assertEqual(client_key_seed(secret).hex(), "b5636f9c45f8b477b50d20be9f4a667935e5060fa78c149012d901a900f9ef5d")
        pem = client_key_pem(secret)
        self.assertTrue(pem.startswith(b"-----BEGIN PRIVATE KEY-----\n"))

    def test_env(self):
        self.assertIsNone(Config.from_env(base()).tls)
        pin = "ab" * 32
        cfg = Config.from_env(base(SPEAR_TLS_PIN=pin, SPEAR_TLS_CERT="CERT"))
        self.assertEqual(cfg.tls, TLS(pin=pin, cert="CERT"))
        with self.assertRaises(ConfigError):
            Config.from_env(base(SPEAR_TLS_PIN="not hex"))
        with self.assertRaises(ConfigError):
            Config.from_env(base(SPEAR_TLS_PIN="ab"))
        with self.assertRaises(ConfigError):  # TLS on a unix channel
            Config.from_env(base(SPEAR_CHANNEL="unix", SPEAR_ADDRESS="/tmp/s", SPEAR_TLS_PIN=pin))
        with self.assertRaises(ConfigError):
            TLS(ca="not pem").context(b"x")

    def test_pin(self):
        der = b"the agent's certificate"
        t = TLS(pin=hashlib.sha256(der).hexdigest())
        t.check_pin(FakeSSLObject(der))  # accepted
        for other in (FakeSSLObject(b"another certificate"), FakeSSLObject(None), None):
            with self.assertRaises(AuthFailed):
                t.check_pin(other)
        ctx = t.context(b"secret")
        self.assertFalse(ctx.check_hostname)  # the pin replaces the name check


if __name__ == "__main__":
    unittest.main()
