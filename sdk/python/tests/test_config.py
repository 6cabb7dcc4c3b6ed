"""The bootstrap environment and the secret hand-off."""

import os
import subprocess
import sys
import tempfile
import unittest

from spear import Config, ConfigError, Secret

SECRET = "00112233445566778899aabbccddeeff"


def base(**extra):
    env = {"SPEAR_INSTANCE_ID": "process:fn-1", "SPEAR_CHANNEL": "unix", "SPEAR_ADDRESS": "/tmp/x.sock"}
    env.update(extra)
    return env


def pipe_holding(text: str) -> int:
    r, w = os.pipe()
    os.write(w, text.encode())
    os.close(w)
    return r


class SecretHandoffTest(unittest.TestCase):
    @unittest.skipUnless(sys.platform.startswith("linux"), "PR_SET_DUMPABLE is Linux's")
    def test_from_env_makes_the_process_non_dumpable(self):
        # In a child: the test process itself stays dumpable.
        script = (
            "import ctypes, spear\n"
            "libc = ctypes.CDLL(None)\n"
            "before = libc.prctl(3, 0, 0, 0, 0)\n"  # PR_GET_DUMPABLE
            "spear.Config.from_env()\n"
            "print(before, libc.prctl(3, 0, 0, 0, 0))\n"
        )
        fd = pipe_holding(SECRET)
        try:
            env = dict(os.environ, **base(SPEAR_SECRET_FD=str(fd)))
            env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            out = subprocess.run([sys.executable, "-c", script], env=env, pass_fds=(fd,),
                                 capture_output=True, text=True, check=True).stdout
        finally:
            os.close(fd)
        self.assertEqual(out.split(), ["1", "0"])

    def test_fd_wins_and_is_closed(self):
        fd = pipe_holding(f"  {SECRET}\n")
        with tempfile.NamedTemporaryFile("w") as f:
            f.write("ff" * 16)
            f.flush()
            env = base(SPEAR_SECRET_FD=str(fd), SPEAR_SECRET_FILE=f.name, SPEAR_SECRET="ee" * 16)
            cfg = Config.from_env(env)
        self.assertEqual(cfg.secret.reveal(), bytes.fromhex(SECRET))
        with self.assertRaises(OSError):
            os.fstat(fd)  # closed once read
        # Neither the secret nor its descriptor stays in the environment.
        self.assertNotIn("SPEAR_SECRET", env)
        self.assertNotIn("SPEAR_SECRET_FD", env)

    def test_file_over_env(self):
        with tempfile.NamedTemporaryFile("w") as f:
            f.write(f"\n{SECRET}\n\n")
            f.flush()
            cfg = Config.from_env(base(SPEAR_SECRET_FILE=f.name, SPEAR_SECRET="ee" * 16))
        self.assertEqual(cfg.secret.reveal(), bytes.fromhex(SECRET))

    def test_env_alone(self):
        cfg = Config.from_env(base(SPEAR_SECRET=SECRET))
        self.assertEqual(cfg.secret.reveal(), bytes.fromhex(SECRET))

    def test_errors_never_quote_the_secret(self):
        leaky = "not-hex-" + SECRET
        for env in (base(SPEAR_SECRET=leaky), base(SPEAR_SECRET_FD=str(pipe_holding(leaky)))):
            with self.assertRaises(ConfigError) as cm:
                Config.from_env(env)
            self.assertNotIn(SECRET, str(cm.exception))
        with self.assertRaises(ConfigError):
            Config.from_env(base())  # no secret at all
        with self.assertRaises(ConfigError):
            Config.from_env(base(SPEAR_SECRET_FILE="/nonexistent/secret"))
        with self.assertRaises(ConfigError):
            Config.from_env(base(SPEAR_SECRET_FD="not-a-number"))
        with self.assertRaises(ConfigError):
            Config.from_env(base(SPEAR_SECRET=" "))

    def test_secret_never_prints(self):
        cfg = Config.from_env(base(SPEAR_SECRET=SECRET))
        for text in (repr(cfg), str(cfg), repr(cfg.secret), f"{cfg.secret}"):
            self.assertNotIn(SECRET, text)
            self.assertNotIn(bytes.fromhex(SECRET).decode("latin-1"), text)
        self.assertEqual(cfg.secret, Secret(bytes.fromhex(SECRET)))


class EnvironmentTest(unittest.TestCase):
    def test_required_and_supported(self):
        with self.assertRaises(ConfigError):
            Config.from_env(base(SPEAR_SECRET=SECRET, SPEAR_INSTANCE_ID=""))
        with self.assertRaises(ConfigError):
            Config.from_env(base(SPEAR_SECRET=SECRET, SPEAR_ADDRESS=""))
        with self.assertRaises(ConfigError) as cm:
            Config.from_env(base(SPEAR_SECRET=SECRET, SPEAR_CHANNEL="grpc"))
        self.assertIn("tcp", str(cm.exception))
        cfg = Config.from_env(base(SPEAR_SECRET=SECRET, SPEAR_CHANNEL="tcp", SPEAR_ADDRESS="127.0.0.1:9"))
        self.assertEqual((cfg.channel, cfg.address), ("tcp", "127.0.0.1:9"))


if __name__ == "__main__":
    unittest.main()
