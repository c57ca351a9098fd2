"""Signals that let apps react to the chain without chain/ importing them."""
import django.dispatch

# Sent inside the transaction that forgets a wiped chain's deployment (kwargs: chain_id).
# Apps delete their chain-derived rows here; nothing a user made is ever deleted.
chain_reset = django.dispatch.Signal()
