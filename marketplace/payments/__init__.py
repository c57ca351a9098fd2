"""Machine payments over HTTP 402 (x402): the paid download URL, its 402 answer and payment
headers, their checks against the chain, and the settlement through the market's escrow
(docs/agent-payments.md)."""
