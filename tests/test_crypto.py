import numpy as np
import pytest

from learningchain.crypto import SECP256K1_N, PrivateKey, keccak256, keccak256_of, recover_address
from learningchain.errors import InvalidMessage


def test_keccak_matches_the_ethereum_empty_string_vector():
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


@pytest.mark.parametrize("size", [0, 1, 135, 136, 137, 272, 4096, 318 * 1024 + 7])
def test_keccak_matches_pycryptodome_at_every_block_boundary_and_size(size):
    from Crypto.Hash import keccak

    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert keccak256(data) == keccak.new(digest_bits=256, data=data).digest()
    assert keccak256(memoryview(data)) == keccak256(bytearray(data)) == keccak256(data)


@pytest.mark.parametrize("cut", [0, 1, 26, 135, 136, 137, 1000])
def test_keccak_of_parts_is_the_keccak_of_their_concatenation(cut):
    from Crypto.Hash import keccak

    data = bytes(np.random.default_rng(cut).integers(0, 256, 1000, dtype=np.uint8))
    want = keccak.new(digest_bits=256, data=data).digest()
    assert keccak256_of(data[:cut], memoryview(data)[cut:]) == want
    assert keccak256_of(b"", bytearray(data), b"") == want
    assert keccak256_of() == keccak256(b"")


def test_address_matches_eth_account():
    eth_account = pytest.importorskip("eth_account")
    key = PrivateKey.generate(np.random.default_rng(3))
    assert eth_account.Account.from_key(key.secret).address.lower() == "0x" + key.address.hex()


def test_sign_then_recover_gives_the_signer():
    key = PrivateKey.generate(np.random.default_rng(4))
    digest = keccak256(b"round 7")
    assert recover_address(digest, key.sign(digest)) == key.address


def test_other_digest_recovers_another_address():
    key = PrivateKey.generate(np.random.default_rng(5))
    sig = key.sign(keccak256(b"a"))
    assert recover_address(keccak256(b"b"), sig) != key.address


def test_high_s_signature_is_refused_as_non_canonical():
    key = PrivateKey.generate(np.random.default_rng(6))
    digest = keccak256(b"x")
    sig = key.sign(digest)
    s = int.from_bytes(sig[32:64], "big")
    flipped = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([sig[64] ^ 1])
    with pytest.raises(InvalidMessage, match="high-s"):
        recover_address(digest, flipped)


@pytest.mark.parametrize("sig", [b"", b"\x01" * 64, b"\x01" * 64 + b"\x05"])
def test_malformed_signatures_are_refused_with_a_reason(sig):
    with pytest.raises(InvalidMessage) as info:
        recover_address(keccak256(b"x"), sig)
    assert info.value.reason == "bad-signature"


def test_seeded_keys_are_reproducible_and_repr_hides_the_secret():
    a = PrivateKey.generate(np.random.default_rng(9))
    b = PrivateKey.generate(np.random.default_rng(9))
    assert a.address == b.address
    assert a.secret.hex() not in repr(a)
