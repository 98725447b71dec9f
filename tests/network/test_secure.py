"""The link between nodes is TLS 1.3 and the node id is authenticated: a peer
that claims another node's id cannot complete the handshake, cannot displace
that node's connection or get it banned, and a signature made for one session,
role or certificate does not verify for another."""

import asyncio
import secrets

from learningchain.crypto import PrivateKey
from learningchain.network.secure import TLSContexts, sign_auth, verify_auth
from learningchain.network.wire import PROTOCOL_VERSION, Hello, Kind, encode_hello

from .netkit import RawPeer, errors_in, small_conf, start, wait_until


def test_a_signature_binds_genesis_certificate_nonces_and_role():
    key = PrivateKey.generate()
    g, fp, n1, n2 = b"\x01" * 32, TLSContexts().fingerprint, secrets.token_bytes(32), secrets.token_bytes(32)
    sig = sign_auth(key, g, fp, n1, n2, 0)
    assert verify_auth(sig, key.address, g, fp, n1, n2, 0)
    assert not verify_auth(sig, PrivateKey.generate().address, g, fp, n1, n2, 0)  # another id
    assert not verify_auth(sig, key.address, g, TLSContexts().fingerprint, n1, n2, 0)  # a relay's certificate
    assert not verify_auth(sig, key.address, g, fp, n1, secrets.token_bytes(32), 0)  # another session
    assert not verify_auth(sig, key.address, g, fp, n1, n2, 1)  # reflected back at its signer
    assert not verify_auth(sig, key.address, b"\x02" * 32, fp, n1, n2, 0)  # another chain
    assert not verify_auth(sig[:-1], key.address, g, fp, n1, n2, 0)
    assert not verify_auth(b"\x00" * 65, key.address, g, fp, n1, n2, 0)


def test_a_spoofed_node_id_is_refused_and_does_not_displace_or_ban_the_real_node(tmp_path):
    conf = small_conf(rounds=1, max_misbehaviour=30, stop_height=0)

    async def main():
        a = await start(conf, tmp_path, "a", role="relay")
        b = await start(conf, tmp_path, "b", role="relay", peers=[a.transport.advertise])
        try:
            await wait_until(lambda: len(a.transport.peers) == 1 and len(b.transport.peers) == 1, 10)
            real = a.transport.peers[b.key.address]
            assert real.writer.get_extra_info("ssl_object").version() == "TLSv1.3"

            spoof = await RawPeer.connect(a, node_id=b"\x31" * 20, claim=b.key.address)
            errors = errors_in(await spoof.frames(2.0))
            for _ in range(5):
                spoof.send(99)  # misbehaviour that would ban the id it claims
            await asyncio.sleep(0.3)
            unsigned = await RawPeer.connect(a, node_id=b"\x32" * 20, auth=False)
            timed_out = errors_in(await unsigned.frames(conf.network.handshake_timeout_s + 1.0))
            return (errors, a.transport.refusals.get("bad-auth", 0), a.transport.peers.get(b.key.address) is real,
                    a.transport.banned(b.key.address), len(b.transport.peers), timed_out,
                    a.transport.refusals.get("handshake-timeout", 0))
        finally:
            await a.stop()
            await b.stop()

    errors, bad_auth, kept, banned, b_peers, timed_out, handshake_timeouts = asyncio.run(main())
    assert any("bad-auth" in e for e in errors) and bad_auth == 1
    assert kept and not banned and b_peers == 1
    assert handshake_timeouts >= 1


def test_a_plaintext_client_gets_nothing(tmp_path):
    conf = small_conf(rounds=1)

    async def main():
        a = await start(conf, tmp_path, "a", role="relay")
        try:
            host, port = a.transport.advertise
            reader, writer = await asyncio.open_connection(host, port)
            h = Hello(PROTOCOL_VERSION, a.genesis.hash, b"\x33" * 20, "", 0, 0, a.genesis.hash, 0)
            writer.write(len(encode_hello(h)).to_bytes(4, "little") + bytes([Kind.HELLO]) + encode_hello(h))
            try:
                data = await asyncio.wait_for(reader.read(1 << 16), 5.0)
            except ConnectionError:
                data = b""
            writer.close()
            return data, len(a.transport.peers)
        finally:
            await a.stop()

    data, peers = asyncio.run(main())
    assert data[4:5] != bytes([Kind.HELLO]) and b"learningchain" not in data  # not even a hello in clear
    assert peers == 0
