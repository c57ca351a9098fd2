"""Reading settings from the environment (used by settings.py and the test plugin)."""
import os

from django.core.exceptions import ImproperlyConfigured


def env_bool(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be 1 or 0, not {value!r}")


def env_int(name, default):
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def env_list(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_networks(name, default):
    """A comma-separated list of IP networks (CIDR; a bare address is its own network), each
    checked here so that a typo stops the server rather than trusting nothing or everything."""
    import ipaddress

    networks = env_list(name, default)
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {network!r} is not an IP network (e.g. 10.0.0.0/8)") from None
    return networks


def sqlalchemy_url(db):
    """The SQLAlchemy URL (psycopg 3 driver) for a Django database settings dict."""
    from sqlalchemy.engine import URL

    host = db.get("HOST") or None
    query = {}
    if host and host.startswith("/"):  # a unix socket directory, as the embedded server uses
        query["host"] = host
        host = None
    return URL.create(
        "postgresql+psycopg",
        username=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        host=host,
        port=int(db["PORT"]) if db.get("PORT") else None,
        database=db.get("NAME"),
        query=query,
    ).render_as_string(hide_password=False)


# Anvil's well-known dev accounts (mnemonic "test test ... junk", m/44'/60'/0'/0/0..9): public
# keys that anyone can spend with. Fine on a local chain (id 31337), never on a real one.
ANVIL_CHAIN_ID = 31337
ANVIL_DEV_KEYS = (
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "dbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)
ANVIL_DEV_ADDRESSES = (
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
    "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
    "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
    "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
    "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
    "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
)


def key_address(key: str) -> str | None:
    """The address a private key controls, however the key is written (with or without 0x, in
    either case, with spaces or line breaks anywhere); None when it is no key."""
    text = "".join(str(key).split())
    if text[:2].lower() == "0x":
        text = text[2:]
    if len(text) % 2:
        text = "0" + text  # as eth_account reads an odd number of digits
    try:
        from eth_account import Account

        return Account.from_key(bytes.fromhex(text)).address
    except ValueError:
        return None


def is_dev_key(key: str) -> bool:
    """Whether `key` is one of anvil's public dev keys: compared by the address it controls, so
    no spelling of the key slips past."""
    return key_address(key) in ANVIL_DEV_ADDRESSES


def is_dev_address(address: str) -> bool:
    return str(address).strip().lower() in {a.lower() for a in ANVIL_DEV_ADDRESSES}


def refuse_dev_accounts(chain_id: int, *, operator_key: str, roles: dict, keys: dict | None = None) -> None:
    """On any chain but anvil's, refuse an operator key, another key (`keys`: REWARD_TREASURY_KEY)
    or a role address (CHAIN_ADMIN, ...) that is one of anvil's dev accounts: whoever reads this
    file could take its funds or roles. Keys are compared by the address they control."""
    if chain_id == ANVIL_CHAIN_ID:
        return
    for name, key in {"CHAIN_OPERATOR_KEY": operator_key, **(keys or {})}.items():
        if key and is_dev_key(key):
            raise ImproperlyConfigured(
                f"{name} is one of anvil's public dev keys, which anyone can use; on chain {chain_id} "
                "give the server a key of its own (or set CHAIN_ID=31337 for a local anvil)."
            )
    for name, address in roles.items():
        if address and is_dev_address(address):
            raise ImproperlyConfigured(
                f"{name} is {address}, one of anvil's public dev accounts; on chain {chain_id} give it an "
                "address whose key only you hold (or set CHAIN_ID=31337 for a local anvil)."
            )
