"""The pipeline's Kafka topics and their partition counts.

``audit.events`` has one partition per log: each partition is sealed into its own Merkle log
(origin ``auditseal.local/audit.events/<partition>``), so six partitions let up to six sealer
instances work in parallel. The other topics carry low-volume, totally ordered streams (sealed
block headers, anchor receipts, monitor alerts), which one partition keeps in a single order.
"""

from __future__ import annotations

from typing import Final

EVENTS: Final = "audit.events"
SEALED: Final = "audit.sealed"
ANCHORS: Final = "audit.anchors"
ALERTS: Final = "audit.alerts"

# Topic name -> number of partitions, in creation order.
PARTITIONS: Final[dict[str, int]] = {
    EVENTS: 6,
    SEALED: 1,
    ANCHORS: 1,
    ALERTS: 1,
}

# A single local broker cannot replicate.
REPLICATION_FACTOR: Final = 1
