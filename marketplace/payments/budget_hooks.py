"""Where an agent key's budget meets a paid download (issue 21's agent keys and budgets).

The settlement (payments.settlement) calls these four functions, each once per payment row, at
the points where a key's budget changes; they do nothing until the agent keys are wired in (the
keys and their ledger live in accounts.agent_keys). Each receives the `X402Payment` row (payer,
amount, token, listing, status) inside the database transaction that moves it, so a ledger
written here commits or rolls back with the payment.

- `reserve(payment, agent_key=...)`: after the payment header was read, before it is verified or
  anything is broadcast. `agent_key` is the request's `X-Agent-Key` header ("" when absent).
  Raise any `marketplace.api.Refused` (agent_keys.AgentKeyRefused, x402.PaymentRefused) to refuse
  with its code and status: nothing is sent, and no other hook is called for that attempt.
- `release(payment, reason=...)`: the reserved amount goes back: the payment was refused after
  the reservation (`reason` is the refusal's code) or its settlement failed or reverted
  (`settlement_failed`).
- `hold(payment)`: the request's limit passed with the settlement unresolved: the amount stays
  reserved until `spend` or `release` follows.
- `spend(payment)`: settled; the order exists (`payment.order_id`, `payment.tx_hash`).

Wiring them to accounts.agent_keys, with `payment_ref=f"x402:{payment.pk}"`: reserve calls
`key_for_payment(agent_key, payment.payer)` and, for a key, `agent_keys.reserve(key, payment_ref=,
amount=payment.amount, listing_id=payment.listing_id, publisher=payment.version.dataset.owner's
address, category=its category slug)`; release, hold and spend call theirs with the reference
(`spend(..., chain_id=payment.chain_id, order_id=payment.order_id, tx_hash=payment.tx_hash)`).
"""


def reserve(payment, *, agent_key: str) -> None:
    """Check the agent key and reserve `payment.amount` of its budget (no-op until wired)."""


def release(payment, *, reason: str) -> None:
    """Give the reservation back (no-op until wired)."""


def hold(payment) -> None:
    """Keep the reservation while the settlement is unresolved (no-op until wired)."""


def spend(payment) -> None:
    """Turn the reservation into spending (no-op until wired)."""
