"""Which transfers into the market no order explains (`indexer.unexplained_transfers`): one
`OrderCreated` of the market explains one transfer of the same buyer, token and amount in the same
transaction; mints, the market's own transfers and transfers out are never money sent to it.
Which of them are pushed authorizations (`pushed_authorization`), and the position that a stray's
reference names (`transfer_positions`)."""
from marketplace.chain.indexer import ZERO_ADDRESS, pushed_authorization, transfer_positions, unexplained_transfers

MARKET = "0x" + "11" * 20
PAYER = "0x" + "22" * 20
OTHER = "0x" + "33" * 20
TOKEN = "0x" + "44" * 20
SECOND_TOKEN = "0x" + "55" * 20


def log(tx, index, name, address=TOKEN, block=1, **args):
    return {"tx_hash": tx, "log_index": index, "block_number": block, "name": name, "address": address, "args": args}


def transfer(tx, index, sender, value, to=MARKET, block=1, token=TOKEN):
    return log(tx, index, "Transfer", address=token, block=block, **{"from": sender, "to": to, "value": str(value)})


def order(tx, index, buyer, amount, market=MARKET, token=TOKEN):
    return log(tx, index, "OrderCreated", address=market, buyer=buyer, token=token, amount=str(amount))


def authorization_used(tx, index, authorizer, token=TOKEN):
    return log(tx, index, "AuthorizationUsed", address=token, authorizer=authorizer, nonce="0x" + "00" * 32)


def keys(rows):
    return [(r["tx_hash"], r["log_index"]) for r in rows]


def test_a_purchase_s_transfer_is_explained_by_its_order():
    assert unexplained_transfers(MARKET, [transfer("0xa", 0, PAYER, 5), order("0xa", 1, PAYER, 5)]) == []


def test_one_order_explains_one_transfer_of_its_transaction():
    rows = [transfer("0xa", 0, PAYER, 5), transfer("0xa", 2, PAYER, 5), order("0xa", 3, PAYER, 5)]
    assert keys(unexplained_transfers(MARKET, rows)) == [("0xa", 2)]


def test_an_order_explains_nothing_of_another_buyer_amount_transaction_or_market():
    rows = [transfer("0xa", 0, PAYER, 5), order("0xa", 1, OTHER, 5),
            transfer("0xb", 0, PAYER, 5), order("0xb", 1, PAYER, 6),
            transfer("0xc", 0, PAYER, 5), order("0xd", 0, PAYER, 5),
            transfer("0xe", 0, PAYER, 5), order("0xe", 1, PAYER, 5, market=OTHER)]
    assert keys(unexplained_transfers(MARKET, rows)) == [("0xa", 0), ("0xb", 0), ("0xc", 0), ("0xe", 0)]


def test_mints_transfers_out_and_the_market_s_own_transfers_are_not_strays():
    rows = [transfer("0xa", 0, ZERO_ADDRESS, 5), transfer("0xb", 0, MARKET, 5, to=PAYER),
            transfer("0xc", 0, MARKET, 5)]
    assert unexplained_transfers(MARKET, rows) == []


def test_strays_come_in_chain_order():
    rows = [transfer("0xb", 0, PAYER, 5, block=2), transfer("0xa", 3, PAYER, 5, block=1),
            transfer("0xa", 1, OTHER, 5, block=1)]
    assert keys(unexplained_transfers(MARKET, rows)) == [("0xa", 1), ("0xa", 3), ("0xb", 0)]


def test_an_order_explains_only_a_transfer_of_its_own_token():
    """A transfer of another token of the same base-unit value, first in the transaction, must not
    take the order's place: the purchase's own transfer would then look unexplained (S-1)."""
    rows = [transfer("0xa", 0, PAYER, 5, token=SECOND_TOKEN), transfer("0xa", 1, PAYER, 5),
            order("0xa", 2, PAYER, 5)]
    assert keys(unexplained_transfers(MARKET, rows)) == [("0xa", 0)]


def test_a_transfer_is_pushed_only_after_its_own_token_s_authorization_of_its_sender():
    pushed = transfer("0xa", 1, PAYER, 5)
    assert pushed_authorization(pushed, [authorization_used("0xa", 0, PAYER), pushed])
    assert not pushed_authorization(pushed, [authorization_used("0xa", 0, PAYER, token=SECOND_TOKEN), pushed])
    assert not pushed_authorization(pushed, [authorization_used("0xa", 0, OTHER), pushed])
    assert not pushed_authorization(pushed, [authorization_used("0xb", 0, PAYER), pushed])
    # The sender's authorization used elsewhere in the transaction (after the transfer, or not just before it).
    later = transfer("0xa", 3, PAYER, 5)
    assert not pushed_authorization(later, [authorization_used("0xa", 0, PAYER), later])
    assert not pushed_authorization(pushed, [pushed, authorization_used("0xa", 2, PAYER)])


def test_a_transfer_s_position_counts_its_token_s_transfers_into_the_market_in_its_transaction():
    rows = [transfer("0xa", 4, PAYER, 5), transfer("0xa", 2, ZERO_ADDRESS, 5), transfer("0xa", 3, PAYER, 5, to=OTHER),
            transfer("0xa", 5, PAYER, 5, token=SECOND_TOKEN), transfer("0xa", 9, OTHER, 5),
            transfer("0xb", 7, PAYER, 5), order("0xa", 6, PAYER, 5)]
    assert transfer_positions(MARKET, rows) == {("0xa", 2): 0, ("0xa", 4): 1, ("0xa", 9): 2, ("0xa", 5): 0,
                                                ("0xb", 7): 0}
