"""RQ jobs: they take ids or plain values, load rows, call a service and commit."""

QUEUES = ("billing", "lifecycle", "default")
