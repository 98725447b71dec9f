"""The encrypted, authenticated link between two nodes.

Every connection runs over TLS 1.3 from the standard library's ``ssl`` module
(no cipher of our own). TLS alone does not say *who* is at the other end: each
node presents a fresh self-signed certificate, made with ``cryptography`` when
the transport starts. The identity is the node's secp256k1 key (its node id is
that key's address, as for holders), and the handshake binds the two:

1. Each side sends HELLO with a fresh 32-byte nonce.
2. Each side sends AUTH: a recoverable signature with its node key over
   ``keccak256("learningchain/auth/v1" || genesis || fingerprint || initiator
   nonce || responder nonce || role)``, where ``fingerprint`` is SHA-256 of the
   listening side's certificate as this TLS session presented it and ``role`` is
   0 for the side that dialed, 1 for the side that accepted.
3. Each side recovers the signer of the other's AUTH and refuses the connection
   unless it is the node id that the other's HELLO claimed.

A man in the middle terminates TLS with its own certificate, so the honest
ends sign different fingerprints and neither signature verifies at the other
honest end; a replayed AUTH names another session's nonces; the role byte stops
a node's own signature being reflected back at it. So after the handshake the
peer's node id is authenticated, and bans, scores and the one-connection-per-node
rule can rest on it (as devp2p's RLPx handshake does for Ethereum).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
import tempfile
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..crypto import PrivateKey, keccak256, recover_address
from ..errors import InvalidMessage

__all__ = ["TLSContexts", "auth_digest", "sign_auth", "verify_auth", "NONCE_SIZE"]

NONCE_SIZE = 32
_DOMAIN = b"learningchain/auth/v1"


class TLSContexts:
    """A server and a client context sharing one fresh self-signed certificate."""

    def __init__(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "learningchain node")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .sign(key, hashes.SHA256()))
        der = cert.public_bytes(serialization.Encoding.DER)
        self.fingerprint = hashlib.sha256(der).digest()
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())

        self.server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server.minimum_version = ssl.TLSVersion.TLSv1_3
        # load_cert_chain takes files only; a memory file keeps the key off the disk where possible
        fd, path = tempfile.mkstemp(prefix="lc-tls-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(key_pem + cert_pem)
            self.server.load_cert_chain(path)
        finally:
            os.unlink(path)

        # The certificate is not checked against a CA: the node key's signature over
        # its fingerprint (the AUTH frame) is what authenticates the peer.
        self.client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.client.minimum_version = ssl.TLSVersion.TLSv1_3
        self.client.check_hostname = False
        self.client.verify_mode = ssl.CERT_NONE


def peer_fingerprint(writer) -> Optional[bytes]:
    """SHA-256 of the certificate the listening side presented on this connection."""
    obj = writer.get_extra_info("ssl_object")
    if obj is None:
        return None
    der = obj.getpeercert(binary_form=True)
    return None if der is None else hashlib.sha256(der).digest()


def auth_digest(genesis: bytes, fingerprint: bytes, initiator_nonce: bytes, responder_nonce: bytes,
                role: int) -> bytes:
    return keccak256(_DOMAIN + genesis + fingerprint + initiator_nonce + responder_nonce + bytes([role]))


def sign_auth(key: PrivateKey, genesis: bytes, fingerprint: bytes, initiator_nonce: bytes,
              responder_nonce: bytes, role: int) -> bytes:
    return key.sign(auth_digest(genesis, fingerprint, initiator_nonce, responder_nonce, role))


def verify_auth(signature: bytes, node_id: bytes, genesis: bytes, fingerprint: bytes, initiator_nonce: bytes,
                responder_nonce: bytes, role: int) -> bool:
    """True when ``signature`` is ``node_id``'s AUTH for this session and role."""
    if len(signature) != 65:
        return False
    try:
        signer = recover_address(auth_digest(genesis, fingerprint, initiator_nonce, responder_nonce, role),
                                 signature)
    except (InvalidMessage, ValueError):
        return False
    return signer == node_id
