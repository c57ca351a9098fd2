"""Fetch jobs: the node's second duty, built by the jobs part of the rewards issue.

`work(client, state)` is called once per turn of the run loop, after the heartbeat; it must
return quickly (a job that takes long runs in its own thread) and never raise for a job's own
failure. Until the job endpoints exist it does nothing."""


def work(client, state) -> None:
    """Take and do the server's fetch jobs. Does nothing yet: the jobs part fills it in."""
    return None
