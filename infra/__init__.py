"""The local stack for development and tests: a Kafka-protocol broker and an Anvil chain.

``auditseal dev up|status|down`` (``infra.cli``) starts them on loopback, records what it
started in a state file (``infra.state``), and ``infra.state.endpoints()`` tells the other
commands where the broker and the chain are. See docs/DEV.md.
"""
