"""What nodes sign: heartbeats and requests recover to the device key with coincurve exactly as
eth_account would, any change to a signed field changes the signer, non-canonical and malformed
signatures are refused, and Bind/Unbind typed data is what a wallet's eth_signTypedData_v4 signs."""
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
import pytest

from marketplace.rewards import signing

KEY = Account.from_key("0x" + "42" * 32)
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def beat(**changes):
    fields = dict(chain_id=31337, device=KEY.address, seq=7, nonce="0x" + "ab" * 32, sent_at=1_700_000_000,
                  probe="cd" * 32, bytes_up=1, bytes_down=2, latency_ms=3)
    fields.update(changes)
    return signing.heartbeat_message(**fields)


def test_a_heartbeat_recovers_to_its_device_as_eth_account_does():
    message = beat()
    signature = signing.sign(KEY, message)
    assert signing.recover(message, signature) == KEY.address
    assert Account.recover_message(encode_defunct(text=message), signature=signature) == KEY.address


@pytest.mark.parametrize("change", [{"seq": 8}, {"nonce": "0x" + "ac" * 32}, {"sent_at": 1_700_000_001},
                                    {"probe": ""}, {"bytes_up": 2}, {"chain_id": 1}])
def test_any_changed_field_changes_the_signer(change):
    signature = signing.sign(KEY, beat())
    assert signing.recover(beat(**change), signature) != KEY.address


def test_the_upper_half_s_of_a_signature_is_refused():
    raw = bytearray(bytes.fromhex(signing.sign(KEY, beat())[2:]))
    s = int.from_bytes(raw[32:64], "big")
    raw[32:64] = (N - s).to_bytes(32, "big")
    raw[64] = 27 + (1 - (raw[64] - 27))
    with pytest.raises(signing.BadSignature, match="upper half"):
        signing.recover(beat(), "0x" + raw.hex())


@pytest.mark.parametrize("signature", ["0x", "0x1234", "nothex", "0x" + "00" * 65, "0x" + "11" * 64 + "05"])
def test_malformed_signatures_are_refused(signature):
    with pytest.raises(signing.BadSignature):
        signing.recover(beat(), signature)


def test_a_request_message_names_method_path_time_and_body():
    base = dict(chain_id=31337, device=KEY.address, method="get", path="/api/v1/node/session", timestamp=5,
                body=b"")
    message = signing.request_message(**base)
    assert "GET /api/v1/node/session" in message
    assert message != signing.request_message(**{**base, "body": b"{}"})
    assert message != signing.request_message(**{**base, "path": "/api/v1/node/status"})


@pytest.mark.parametrize("kind", ["Bind", "Unbind"])
def test_binding_signatures_are_eip712_typed_data_signatures(kind):
    wallet = Account.from_key("0x" + "17" * 32)
    fields = dict(chain_id=31337, device=KEY.address.lower(), wallet=wallet.address, nonce="0x" + "01" * 32,
                  issued_at=1_700_000_000)
    data = signing.binding_typed_data(kind, **fields)
    assert data["domain"] == {"name": "DataMarket Node", "version": "1", "chainId": 31337}
    assert data["message"]["device"] == KEY.address  # checksummed
    signature = signing.sign_binding(wallet, kind, **fields)
    assert Account.recover_message(encode_typed_data(full_message=data), signature=signature) == wallet.address
    other = signing.binding_typed_data("Unbind" if kind == "Bind" else "Bind", **fields)
    assert Account.recover_message(encode_typed_data(full_message=other), signature=signature) != wallet.address
    with pytest.raises(ValueError):
        signing.binding_typed_data("Transfer", **fields)
