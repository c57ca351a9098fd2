"""Gas of the money path, from anvil receipts (21k base included), against the targets.

    .venv/bin/python bench/gas.py

Conditions as the targets state them: the buyer, the payout addresses, the treasury and the
claimants already hold the token; the market already holds other escrowed orders; the buyer's
allowance is unlimited. Claims run against a tree of 1,000,000 leaves with a proof of depth 20.
Rows without a target are the paths the contracts' second pass added (signed confirmations,
disputes and their expiry, a blocked payout turned into a credit, withdrawals, surplus returns);
"before" is the same row measured on 5983ddb, before that pass.
"""
import os
from pathlib import Path
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("DATABASE_URL", "postgresql://unused/unused")  # this script never touches it

import django  # noqa: E402

django.setup()

from eth_account import Account  # noqa: E402
from web3.logs import DISCARD
from web3 import Web3  # noqa: E402

from marketplace.chain.client import _signing_web3  # noqa: E402
from marketplace.chain.artifacts import load_artifact  # noqa: E402
from marketplace.chain.contracts import DataMarket, RewardDistributor, TestUSDC, surplus_reference  # noqa: E402
from marketplace.chain.services import deploy_all, deploy_contract  # noqa: E402
from marketplace.devstack import ANVIL, wait_for_rpc  # noqa: E402
from marketplace.rewards.merkle import MerkleTree  # noqa: E402

KEYS = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
]
PRICE = 25 * 10**6
WINDOW = 24 * 3600
PERMIT = {"Permit": [{"name": n, "type": t} for n, t in (
    ("owner", "address"), ("spender", "address"), ("value", "uint256"), ("nonce", "uint256"), ("deadline", "uint256"))]}
AUTH = {"TransferWithAuthorization": [{"name": n, "type": t} for n, t in (
    ("from", "address"), ("to", "address"), ("value", "uint256"), ("validAfter", "uint256"),
    ("validBefore", "uint256"), ("nonce", "bytes32"))]}
TARGETS = {
    "createListing": 150_000,
    "purchase": 110_000,
    "purchaseWithPermit": 150_000,
    "purchaseWithAuthorization": 150_000,
    "confirm": 70_000,
    "release (1 order)": 70_000,
    "release (20 orders), per order": 30_000,
    "claim, first (depth 20)": 100_000,
    "claim, repeat (depth 20)": 70_000,
}
BEFORE = {  # measured with this script on 5983ddb
    "createListing": 128_893,
    "purchase": 105_232,
    "purchaseWithPermit": 137_129,
    "purchaseWithAuthorization": 141_270,
    "confirm": 67_258,
    "release (1 order)": 67_853,
    "release (20 orders), per order": 24_046,
    "claim, first (depth 20)": 82_819,
    "claim, repeat (depth 20)": 65_693,
}


def main():
    port = 18645
    anvil = subprocess.Popen([str(ANVIL), "--port", str(port), "--silent", "--chain-id", "31337"])
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_for_rpc(url, anvil), "anvil did not start"
        results = measure(url)
    finally:
        anvil.terminate()
        anvil.wait()
    print(f"\n{'call':<40}{'gasUsed':>10}{'target':>10}{'before':>10}{'change':>9}  ok")
    for name, gas in results.items():
        target, before = TARGETS.get(name), BEFORE.get(name)
        print(
            f"{name:<40}{gas:>10,}{f'{target:,}' if target else '-':>10}{f'{before:,}' if before else '-':>10}"
            f"{f'{(gas - before) / before:+.1%}' if before else '':>9}  {'' if not target else 'yes' if gas <= target else 'NO'}"
        )
    return 0 if all(gas <= TARGETS[name] for name, gas in results.items() if name in TARGETS) else 1


def measure(url):
    operator = Account.from_key(KEYS[0])
    w3 = _signing_web3(url, 30.0, operator.key.hex())
    deployed = deploy_all(w3)
    token = TestUSDC(w3, deployed["TestUSDC"].address)
    market = DataMarket(w3, deployed["DataMarket"].address)
    distributor = RewardDistributor(w3, deployed["RewardDistributor"].address)
    seller, buyer, other, agent = (Account.from_key(k) for k in KEYS[1:5])
    m, t = market.contract.functions, token.contract.functions

    def send(call, sender):
        receipt = w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}))
        assert receipt["status"] == 1, receipt
        return receipt

    def gas(call, sender):
        return send(call, sender)["gasUsed"]

    def new_listing(owner=seller.address):
        receipt = send(m.createListing(token.address, PRICE, owner, Web3.keccak(os.urandom(32)), WINDOW), owner)
        (event,) = market.contract.events.ListingCreated().process_receipt(receipt, errors=DISCARD)
        send(m.setApproval([event["args"]["listingId"]], True), operator.address)
        return event["args"]["listingId"], receipt["gasUsed"]

    # Everyone already holds the token; the market already escrows another order.
    for account in (seller.address, buyer.address, other.address, agent.address, market.treasury()):
        token.mint(account, 10**12)
    for account in (buyer.address, other.address):
        send(t.approve(market.address, 2**256 - 1), account)
    warm, _ = new_listing()
    send(m.purchase(warm, PRICE), other.address)

    results = {}
    listing, results["createListing"] = new_listing()
    results["purchase"] = gas(m.purchase(listing, PRICE), buyer.address)
    order = market.order_of(listing, buyer.address)
    results["confirm"] = gas(m.confirm(order), buyer.address)

    listing, _ = new_listing()
    now = w3.eth.get_block("latest")["timestamp"]
    permit = {"owner": agent.address, "spender": market.address, "value": PRICE,
              "nonce": token.nonces(agent.address), "deadline": now + 3600}
    signed = Account.sign_typed_data(agent.key, token.eip712_domain(), PERMIT, permit)
    results["purchaseWithPermit"] = gas(
        m.purchaseWithPermit(listing, PRICE, now + 3600, signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")),
        agent.address,
    )

    listing, _ = new_listing()
    payer = Account.create()
    token.mint(payer.address, 10**9)
    message = {"from": payer.address, "to": market.address, "value": PRICE, "validAfter": 0,
               "validBefore": now + 3600, "nonce": os.urandom(32)}
    signed = Account.sign_typed_data(payer.key, token.eip712_domain(), AUTH, message)
    authorization = (payer.address, PRICE, 0, now + 3600, message["nonce"], signed.signature)
    results["purchaseWithAuthorization"] = gas(m.purchaseWithAuthorization(listing, authorization), operator.address)

    listing, _ = new_listing()
    send(m.purchase(listing, PRICE), buyer.address)
    single = market.order_of(listing, buyer.address)
    batch = []
    for _ in range(20):
        listing, _ = new_listing()
        send(m.purchase(listing, PRICE), buyer.address)
        batch.append(market.order_of(listing, buyer.address))
    w3.provider.make_request("evm_increaseTime", [WINDOW + 1])
    w3.provider.make_request("evm_mine", [])
    results["release (1 order)"] = gas(m.release([single]), other.address)
    results["release (20 orders), per order"] = gas(m.release(batch), other.address) // 20

    results.update(measure_second_pass(w3, token, market, operator, seller, buyer, other, send, gas, new_listing))

    results.update(measure_claims(w3, token, distributor, operator, send))
    return results


def measure_second_pass(w3, token, market, operator, seller, buyer, other, send, gas, new_listing):
    """The paths added by the contracts' second pass."""
    m = market.contract.functions
    results = {}
    now = lambda: w3.eth.get_block("latest")["timestamp"]  # noqa: E731

    def signed(kind, order_id, account):
        nonce, deadline = os.urandom(32), now() + 3600
        typed = market.order_signature_message(kind, order_id, nonce, deadline)
        return nonce, deadline, Account.sign_typed_data(account.key, typed["domain"], typed["types"],
                                                        typed["message"]).signature

    listing, _ = new_listing()
    send(m.purchase(listing, PRICE), buyer.address)
    order = market.order_of(listing, buyer.address)
    results["confirmBySig (relayed)"] = gas(m.confirmBySig(order, *signed("ConfirmOrder", order, buyer)), other.address)

    listing, _ = new_listing()
    send(m.purchase(listing, PRICE), buyer.address)
    order = market.order_of(listing, buyer.address)
    results["dispute"] = gas(m.dispute(order), buyer.address)
    w3.provider.make_request("evm_increaseTime", [market.dispute_period()])
    w3.provider.make_request("evm_mine", [])
    results["settleExpiredDispute"] = gas(m.settleExpiredDispute(order), other.address)

    # A token that blocks the payout address: the owner's share becomes a credit.
    blocking = deploy_contract(w3, "MarketRevertingToken", [operator.address])
    bad = w3.eth.contract(address=blocking.address, abi=load_artifact("MarketRevertingToken").abi).functions
    send(m.setTokenAllowed(blocking.address, True, True), operator.address)
    for account in (seller.address, buyer.address, market.treasury()):
        send(bad.mint(account, 10**12), operator.address)
    send(bad.approve(market.address, 2**256 - 1), buyer.address)
    receipt = send(m.createListing(blocking.address, PRICE, seller.address, Web3.keccak(os.urandom(32)), WINDOW),
                   seller.address)
    (event,) = market.contract.events.ListingCreated().process_receipt(receipt, errors=DISCARD)
    send(m.setApproval([event["args"]["listingId"]], True), operator.address)
    send(m.purchase(event["args"]["listingId"], PRICE), buyer.address)
    order = market.order_of(event["args"]["listingId"], buyer.address)
    send(bad.setBlocked(seller.address, True), operator.address)
    results["confirm, payout blocked (credited)"] = gas(m.confirm(order), buyer.address)
    results["withdraw"] = gas(m.withdraw(blocking.address, other.address), seller.address)

    stray = send(token.contract.functions.transfer(market.address, PRICE), other.address)
    ref = surplus_reference(stray["transactionHash"], token.address, 0)
    results["returnSurplus"] = gas(m.returnSurplus(token.address, other.address, PRICE, ref), operator.address)
    return results


def depth_20_tree(entries, index, amounts):
    """Rebuild with entries[index]'s amount taken from `amounts` until its proof has depth 20
    (in a 1,000,000-leaf tree, about 95 % of leaves sit at depth 20, the rest at 19)."""
    for amount in amounts:
        entries[index] = (entries[index][0], amount)
        started = time.monotonic()
        tree = MerkleTree.of(entries)
        proof = tree.proof(*entries[index])
        print(f"1,000,000-leaf tree built in {time.monotonic() - started:.1f} s; proof depth {len(proof)}")
        if len(proof) == 20:
            return tree, amount, proof
    raise SystemExit("no depth-20 proof found")


def measure_claims(w3, token, distributor, operator, send):
    claimant = Account.create().address
    token.mint(claimant, 10**6)  # claimants already hold the token
    entries = [(Web3.to_checksum_address(os.urandom(20).hex()), 1_000 + i) for i in range(999_999)]
    entries.append((claimant, 0))
    token.mint(distributor.address, 10**13)
    d = distributor.contract.functions
    delay = distributor.root_delay()

    def claim_in_epoch(epoch, amounts):
        tree, amount, proof = depth_20_tree(entries, len(entries) - 1, amounts)
        total = sum(cumulative for _, cumulative in entries)
        send(d.proposeRoot(epoch, tree.root_hex, total), operator.address)
        w3.provider.make_request("evm_increaseTime", [delay + 1])
        w3.provider.make_request("evm_mine", [])
        return send(d.claim(claimant, amount, proof), operator.address)["gasUsed"]

    first = claim_in_epoch(1, range(5_000_000, 5_000_010))
    repeat = claim_in_epoch(2, range(9_000_000, 9_000_010))
    return {"claim, first (depth 20)": first, "claim, repeat (depth 20)": repeat}


if __name__ == "__main__":
    sys.exit(main())
