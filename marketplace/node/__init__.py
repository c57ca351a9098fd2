"""The contributor's node program (`datamarket-node`, `python -m marketplace.node`): it keeps a
device key, binds it to a wallet, and sends signed heartbeats (and, later, does fetch jobs).
It imports no Django: it talks to the server over HTTP and shares only `rewards.signing`."""
