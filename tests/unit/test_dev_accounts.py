"""Anvil's public dev keys and addresses are refused on any chain but anvil's own (31337), and the
compose file sets none of them."""
import os
from pathlib import Path
import subprocess
import sys

from django.core.exceptions import ImproperlyConfigured
from eth_account import Account
import pytest

from marketplace.env import ANVIL_DEV_ADDRESSES, ANVIL_DEV_KEYS, is_dev_key, key_address, refuse_dev_accounts

ROOT = Path(__file__).resolve().parents[2]
OWN_KEY = "0x" + "5a" * 32


def test_the_listed_keys_are_anvil_s_mnemonic_accounts():
    Account.enable_unaudited_hdwallet_features()
    mnemonic = "test test test test test test test test test test test junk"
    for i, (key, address) in enumerate(zip(ANVIL_DEV_KEYS, ANVIL_DEV_ADDRESSES, strict=True)):
        derived = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}")
        assert derived.key.hex().removeprefix("0x") == key and derived.address == address


@pytest.mark.parametrize("key", [ANVIL_DEV_KEYS[0], "0x" + ANVIL_DEV_KEYS[3], "0X" + ANVIL_DEV_KEYS[9].upper()])
def test_a_dev_operator_key_is_refused_off_anvil(key):
    with pytest.raises(ImproperlyConfigured, match="CHAIN_OPERATOR_KEY is one of anvil's public dev keys"):
        refuse_dev_accounts(8453, operator_key=key, roles={})


@pytest.mark.parametrize("role", ["CHAIN_ADMIN", "CHAIN_ARBITER", "CHAIN_TREASURY"])
def test_a_dev_address_in_a_role_is_refused_off_anvil(role):
    address = ANVIL_DEV_ADDRESSES[1].lower()
    with pytest.raises(ImproperlyConfigured, match=f"{role} is {address}, one of anvil's public dev accounts"):
        refuse_dev_accounts(1, operator_key=OWN_KEY, roles={role: address})


def test_anvil_s_chain_and_own_keys_pass():
    refuse_dev_accounts(31337, operator_key=ANVIL_DEV_KEYS[0], roles={"CHAIN_ADMIN": ANVIL_DEV_ADDRESSES[0]})
    refuse_dev_accounts(1, operator_key=OWN_KEY, roles={"CHAIN_ADMIN": "0x" + "ab" * 20, "CHAIN_TREASURY": ""})


def load_settings(**env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CHAIN_", "DJANGO_"))}
    clean.update(DJANGO_SECRET_KEY="x" * 50, DATABASE_URL="postgresql://u@127.0.0.1:1/db", **env)
    return subprocess.run([sys.executable, "-c", "import marketplace.settings"], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=60)


def test_settings_refuse_the_embedded_default_key_on_a_real_chain():
    """CHAIN_EMBEDDED=1 defaults the operator to anvil's first key: fine on 31337 only."""
    assert load_settings(CHAIN_EMBEDDED="1").returncode == 0
    refused = load_settings(CHAIN_EMBEDDED="1", CHAIN_ID="10")
    assert refused.returncode != 0 and "CHAIN_OPERATOR_KEY is one of anvil's public dev keys" in refused.stderr
    refused = load_settings(CHAIN_ID="10", CHAIN_OPERATOR_KEY=OWN_KEY, CHAIN_TREASURY=ANVIL_DEV_ADDRESSES[4])
    assert refused.returncode != 0 and "CHAIN_TREASURY is" in refused.stderr


def test_the_compose_file_sets_no_dev_key_or_address():
    text = (ROOT / "docker-compose.yml").read_text().lower()
    for secret in (*ANVIL_DEV_KEYS, *(a.lower() for a in ANVIL_DEV_ADDRESSES)):
        assert secret.removeprefix("0x") not in text


def test_a_treasury_key_that_is_a_dev_key_is_refused_off_anvil():
    with pytest.raises(ImproperlyConfigured, match="REWARD_TREASURY_KEY is one of anvil's public dev keys"):
        refuse_dev_accounts(8453, operator_key="", roles={}, keys={"REWARD_TREASURY_KEY": "0x" + ANVIL_DEV_KEYS[9]})
    refuse_dev_accounts(31337, operator_key="", roles={}, keys={"REWARD_TREASURY_KEY": "0x" + ANVIL_DEV_KEYS[9]})


@pytest.mark.parametrize("spelling", [
    lambda k: k,
    lambda k: "0x" + k,
    lambda k: "0X" + k.upper(),
    lambda k: f"  0x{k}\n",
    lambda k: f"0x{k[:32]} {k[32:]}",  # a line broken in two when pasted
    lambda k: "\t" + k.upper() + "\r\n",
])
def test_a_dev_key_is_known_by_its_address_however_it_is_written(spelling):
    for key, address in zip(ANVIL_DEV_KEYS, ANVIL_DEV_ADDRESSES, strict=True):
        assert key_address(spelling(key)) == address and is_dev_key(spelling(key))
    with pytest.raises(ImproperlyConfigured, match="REWARD_TREASURY_KEY is one of anvil's public dev keys"):
        refuse_dev_accounts(8453, operator_key="", roles={}, keys={"REWARD_TREASURY_KEY": spelling(ANVIL_DEV_KEYS[5])})


@pytest.mark.parametrize("value", [OWN_KEY, "", "not a key", "0x" + "00" * 32, "0x" + ANVIL_DEV_KEYS[0][:-2]])
def test_other_keys_and_what_is_no_key_are_not_dev_keys(value):
    assert not is_dev_key(value)
    assert key_address(value) == (Account.from_key(OWN_KEY).address if value == OWN_KEY else None)


def test_settings_refuse_a_dev_treasury_key_in_any_spelling_and_the_operator_s_key_as_treasury():
    refused = load_settings(CHAIN_ID="10", CHAIN_OPERATOR_KEY=OWN_KEY,
                            REWARD_TREASURY_KEY=f" 0X{ANVIL_DEV_KEYS[2].upper()} ")
    assert refused.returncode != 0 and "REWARD_TREASURY_KEY is one of anvil's public dev keys" in refused.stderr
    same = load_settings(CHAIN_ID="10", CHAIN_OPERATOR_KEY=OWN_KEY, REWARD_TREASURY_KEY=OWN_KEY.upper().replace("X", "x"))
    assert same.returncode != 0 and "REWARD_TREASURY_KEY is the operator's key" in same.stderr
    assert load_settings(CHAIN_ID="10", CHAIN_OPERATOR_KEY=OWN_KEY, REWARD_TREASURY_KEY="0x" + "6b" * 32).returncode == 0
