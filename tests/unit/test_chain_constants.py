"""Contract constants evaluated from the compiled artifacts (no node): the values the contracts
declare, and a refusal for a getter that reads state."""
import pytest

from marketplace.chain.constants import ConstantUnavailable, contract_constant, max_price, run_view


def test_max_price_is_what_the_contract_declares():
    assert max_price() == 2**88 - 1  # DataMarket: MAX_PRICE = type(uint88).max


def test_other_constants_of_the_market():
    assert contract_constant("DataMarket", "MAX_FEE_BPS") == 1000
    assert contract_constant("DataMarket", "MAX_DISPUTE_PERIOD") == 30 * 24 * 3600


def test_a_getter_that_reads_storage_is_refused():
    with pytest.raises(ConstantUnavailable, match="needs more than a constant"):
        contract_constant("DataMarket", "paused")


def test_a_name_that_is_no_constant_is_refused():
    with pytest.raises(ConstantUnavailable, match="no public constant"):
        contract_constant("DataMarket", "NO_SUCH_CONSTANT")


def test_the_interpreter_stops_on_a_revert_and_on_a_loop():
    with pytest.raises(ConstantUnavailable, match="returned nothing"):
        run_view(bytes([0x5F, 0x5F, 0xFD]), b"")  # PUSH0 PUSH0 REVERT
    with pytest.raises(ConstantUnavailable, match="too long"):
        run_view(bytes([0x5B, 0x5F, 0x56]), b"")  # JUMPDEST PUSH0 JUMP: forever
