"""Machine payments over HTTP 402 (x402): the 402 answer, the payment headers and their checks
against the chain (docs/agent-payments.md). No models: nothing here writes to the database."""
