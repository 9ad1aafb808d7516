"""RFC 8291 encryption: the RFC's own test vector, and round trips through http-ece."""

from __future__ import annotations

import base64

import http_ece
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from clarion.providers.webpush_encryption import encrypt


def b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def private_key(text: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(b64(text), "big"), ec.SECP256R1())


def public_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


# RFC 8291, Appendix A.
PLAINTEXT = b"When I grow up, I want to be a watermelon"
AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
UA_PUBLIC = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
AUTH_SECRET = "BTBZMqHH6r4Tts7J_aSIgg"
SALT = "DGv6ra1nlYgDCS1FRnbzlw"
MESSAGE = ("DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6"
           "PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN")


def test_rfc_8291_test_vector() -> None:
    """With the RFC's sender key and salt, the body is byte for byte the RFC's."""
    body = encrypt(PLAINTEXT, b64(UA_PUBLIC), b64(AUTH_SECRET), sender=private_key(AS_PRIVATE), salt=b64(SALT))
    assert body == b64(MESSAGE)


def test_each_message_has_its_own_sender_key_and_salt_and_decrypts() -> None:
    """Two encryptions of one payload differ in salt and key; http-ece decrypts both."""
    receiver = ec.generate_private_key(ec.SECP256R1())
    auth = b"0123456789abcdef"
    first, second = (encrypt(b'{"title": "Hi"}', public_bytes(receiver), auth) for _ in range(2))
    assert first[:16] != second[:16] and first[21:86] != second[21:86]
    for body in (first, second):
        assert http_ece.decrypt(body, private_key=receiver, auth_secret=auth, version="aes128gcm") == b'{"title": "Hi"}'


@pytest.mark.parametrize(("ua_public", "auth", "payload"), [
    (b"\x04" + b"\x01" * 64, b"0123456789abcdef", b"{}"),  # not a point on the curve
    (b"\x04" * 10, b"0123456789abcdef", b"{}"),  # too short
    (None, b"short", b"{}"),  # auth secret not 16 bytes
    (None, b"0123456789abcdef", b"x" * 4080),  # more than one record (4096 with tag and delimiter)
], ids=["off-curve", "short-key", "short-auth", "too-long"])
def test_malformed_input_is_a_value_error(ua_public: bytes | None, auth: bytes, payload: bytes) -> None:
    receiver = public_bytes(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ValueError):
        encrypt(payload, ua_public or receiver, auth)
