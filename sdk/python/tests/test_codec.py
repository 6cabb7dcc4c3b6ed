"""The hand-written encoders against the Go implementation's vectors
(conformance/testdata/vectors.json) and docs/protocol.md's examples."""

import json
import os
import unittest

from spear import _proto as pb
from spear._auth import ROLE_AGENT, ROLE_INSTANCE, proof
from spear._errors import Code, ProtocolError
from spear._frame import HEADER_SIZE, Flag, FrameError, encode, parse_header

VECTORS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "conformance", "testdata", "vectors.json")


def load():
    with open(VECTORS, encoding="utf-8") as f:
        return json.load(f)


class VectorTest(unittest.TestCase):
    def setUp(self):
        self.v = load()
        self.frames = {f["name"]: f for f in self.v["frames"]}

    def frame(self, name):
        f = self.frames[name]
        raw = bytes.fromhex(f["frame"])
        type_, flags, id_, length = parse_header(raw[:HEADER_SIZE], 1 << 24)
        self.assertEqual((type_, flags, id_, length), (f["type"], f["flags"], f["id"], len(raw) - HEADER_SIZE), name)
        return f, raw, raw[HEADER_SIZE:]

    def test_proofs(self):
        h = self.v["handshake"]
        args = (bytes.fromhex(h["secret"]), bytes.fromhex(h["nonce"]), bytes.fromhex(h["client_nonce"]), h["instance_id"])
        self.assertEqual(proof(args[0], ROLE_INSTANCE, *args[1:]).hex(), h["proof"])
        self.assertEqual(proof(args[0], ROLE_AGENT, *args[1:]).hex(), h["server_proof"])

    def test_auth_frames(self):
        f, _, payload = self.frame("auth_challenge")
        ch = pb.decode_auth_challenge(payload)
        self.assertEqual(ch.nonce.hex(), f["message"]["nonce"])
        self.assertEqual(ch.versions, [1])

        f, raw, _ = self.frame("auth_request")
        m = f["message"]
        mine = pb.encode_auth_request(m["instance_id"], bytes.fromhex(m["client_nonce"]), bytes.fromhex(m["proof"]))
        self.assertEqual(encode(f["type"], 0, 0, mine), raw)

        f, raw, _ = self.frame("auth_request_features")
        m = f["message"]
        mine = pb.encode_auth_request(m["instance_id"], bytes.fromhex(m["client_nonce"]), bytes.fromhex(m["proof"]), m["features"])
        self.assertEqual(encode(f["type"], 0, 0, mine), raw)
        self.assertEqual(m["features"], [pb.FEATURE_SPLIT])

        f, _, payload = self.frame("auth_response")
        r = pb.decode_auth_response(payload)
        m = f["message"]
        self.assertEqual(r, pb.AuthResponse(m["session_id"], m["features"], bytes.fromhex(m["server_proof"]), m["heartbeat_interval_ms"], m["max_payload"]))

    def test_execute(self):
        for name in ("execute_request", "execute_request_empty"):
            f, _, payload = self.frame(name)
            m = f["message"]
            r = pb.decode_execute_request(payload)
            self.assertEqual(r, pb.ExecuteRequest(m["method"], bytes.fromhex(m["payload"]), m["timeout_ms"], m["metadata"]))
            self.assertEqual(pb.encode_execute_request(r.method, r.payload, r.timeout_ms, r.metadata), payload, name)
        for name in ("execute_response", "execute_response_empty"):
            f, raw, payload = self.frame(name)
            m = f["message"]
            data, meta = pb.decode_execute_response(payload)
            self.assertEqual((data.hex(), meta), (m["payload"], m["metadata"]))
            self.assertEqual(encode(f["type"], f["flags"], f["id"], pb.encode_execute_response(data, meta)), raw, name)
            if not meta:
                self.assertEqual(pb.execute_response_size(len(data)), len(payload))
                self.assertEqual(pb.encode_execute_response_header(len(data)) + data, payload)

    def test_execute_split(self):
        f, raw, payload = self.frame("execute_request_split")
        m = f["message"]
        self.assertEqual(f["flags"], Flag.SPLIT)
        r = pb.decode_execute_request_split(payload)
        self.assertEqual(r, pb.ExecuteRequest(m["method"], bytes.fromhex(m["payload"]), m["timeout_ms"], m["metadata"]))
        mine = pb.encode_execute_request_split(r.method, r.payload, r.timeout_ms, r.metadata)
        self.assertEqual(encode(f["type"], f["flags"], f["id"], mine), raw)
        f, raw, payload = self.frame("execute_response_split")
        data, meta = pb.decode_execute_response_split(payload)
        self.assertEqual((data.hex(), meta), (f["message"]["payload"], f["message"]["metadata"]))
        self.assertEqual(encode(f["type"], f["flags"], f["id"], pb.SPLIT_RESPONSE_HEADER + data), raw)
        with self.assertRaises(ProtocolError):
            pb.decode_execute_request_split(b"\x00\x00\x00\x09abc")  # envelope longer than the payload
        with self.assertRaises(ProtocolError):  # the payload belongs after the envelope, not in it
            pb.decode_execute_request_split(len(b"\x12\x01x").to_bytes(4, "big") + b"\x12\x01x")
        for envelope in (b"\x12\x00", b"\x0a\x01m\x12\x00"):  # even an empty one, after another field
            with self.assertRaises(ProtocolError):
                pb.decode_execute_request_split(len(envelope).to_bytes(4, "big") + envelope + b"body")
        r = pb.decode_execute_request_split(b"\x00\x00\x00\x00")  # an empty envelope, an empty payload
        self.assertEqual(r, pb.ExecuteRequest("", b"", 0, {}))
        self.assertIs(type(r.payload), bytes)

    def test_control_frames(self):
        for name in ("signal_terminate", "signal_custom"):
            f, raw, payload = self.frame(name)
            m = f["message"]
            s = pb.decode_signal(payload)
            self.assertEqual(s, pb.SignalMessage(m["kind"], m["name"], bytes.fromhex(m["data"])))
            self.assertEqual(encode(f["type"], 0, f["id"], pb.encode_signal(*s)), raw)
        for name, text in (("error", "message"), ("close", "reason")):
            f, raw, payload = self.frame(name)
            code, message = pb.decode_error(payload)
            self.assertEqual((code, message), (f["message"]["code"], f["message"][text]))
            self.assertEqual(encode(f["type"], 0, f["id"], pb.encode_error(code, message)), raw)
        for name in ("stream_data_end", "heartbeat_ack", "cancel"):
            f, raw, payload = self.frame(name)
            self.assertEqual(payload.hex(), f["message"].get("data", ""))
            self.assertEqual(encode(f["type"], f["flags"], f["id"], payload), raw)

    def test_protocol_md_stream_example(self):
        # docs/protocol.md, section 4.
        want = bytes.fromhex("00000003" "01" "06" "0005" "0102030405060708" "616263")
        self.assertEqual(encode(6, 0x0005, 0x0102030405060708, b"abc"), want)


class DecodeErrorsTest(unittest.TestCase):
    def test_header_checks_in_order(self):
        # Version first: a peer of another version frames differently.
        h = encode(99, 0, 0, b"")[:HEADER_SIZE]
        bad_version = bytes([0, 0, 0, 0, 2]) + h[5:]
        with self.assertRaises(FrameError) as cm:
            parse_header(bad_version, 10)
        self.assertEqual(cm.exception.code, Code.UNSUPPORTED_VERSION)
        too_big = (11).to_bytes(4, "big") + h[4:]
        with self.assertRaises(FrameError) as cm:
            parse_header(too_big, 10)
        self.assertEqual(cm.exception.code, Code.TOO_LARGE)
        with self.assertRaises(FrameError) as cm:
            parse_header(h, 10)
        self.assertEqual(cm.exception.code, Code.INVALID_MESSAGE)

    def test_malformed_messages(self):
        for bad in (b"\x0a\x05ab", b"\x08", b"\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80", b"\x00\x01", b"\x0b"):
            with self.assertRaises(ProtocolError, msg=bad.hex()):
                pb.decode_execute_request(bad)
        with self.assertRaises(ProtocolError):
            pb.decode_execute_request(b"\x0a\x02\xff\xfe")  # method is not UTF-8

    def test_unknown_fields_skipped(self):
        # fixed64 and fixed32 fields of a later version are skipped.
        extra = bytes([9 << 3 | 1]) + b"\x00" * 8 + bytes([10 << 3 | 5]) + b"\x00" * 4
        r = pb.decode_execute_request(pb.encode_execute_request("m", b"p") + extra)
        self.assertEqual((r.method, r.payload), ("m", b"p"))

    def test_varints(self):
        for n in (0, 1, 127, 128, 300, 16383, 16384, (1 << 32) - 1, (1 << 63) + 5):
            self.assertEqual(len(pb.varint(n)), pb.varint_size(n))
            got = pb.decode_execute_request(bytes([3 << 3]) + pb.varint(n)).timeout_ms
            self.assertEqual(got, n)


if __name__ == "__main__":
    unittest.main()
