"""Fault matrix: whole pytest sessions (pytester) where a workload, the GPU or pytest itself
misbehaves; each case checks the message, the processes, the reports, leases and MIG state."""
