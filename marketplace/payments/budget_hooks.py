"""Where an agent key's budget meets a paid download (issue 21's agent keys and budgets).

The settlement (payments.settlement) calls these four functions, each once per payment row, at
the points where a key's budget changes; they do nothing until the agent keys are wired in (the
keys and their ledger live in accounts.agent_keys). Each receives the `X402Payment` row (payer,
amount, token, listing, status) inside the database transaction that moves it, so a ledger
written here commits or rolls back with the payment.

- `reserve(payment, agent_key=...)`: after the payment header was read, before it is verified or
  anything is broadcast. `agent_key` is the request's `X-Agent-Key` header ("" when absent).
  Raise `x402.PaymentRefused` to refuse (e.g. 403 for a revoked key, 402 for a cap exceeded, 403
  for a registered agent wallet paying without its key): nothing is sent, and no other hook is
  called for that attempt.
- `release(payment, reason=...)`: the reserved amount goes back: the payment was refused after
  the reservation (`reason` is the refusal's code) or its settlement failed or reverted
  (`settlement_failed`).
- `hold(payment)`: the request's limit passed with the settlement unresolved: the amount stays
  reserved until `spend` or `release` follows.
- `spend(payment)`: settled; the order exists (`payment.order_id`, `payment.tx_hash`).
"""


def reserve(payment, *, agent_key: str) -> None:
    """Check the agent key and reserve `payment.amount` of its budget (no-op until wired)."""


def release(payment, *, reason: str) -> None:
    """Give the reservation back (no-op until wired)."""


def hold(payment) -> None:
    """Keep the reservation while the settlement is unresolved (no-op until wired)."""


def spend(payment) -> None:
    """Turn the reservation into spending (no-op until wired)."""
