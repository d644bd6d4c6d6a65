"""The GPU layer: NVML wrapper and simulator, profile tables, MIG layouts and placement.

Nothing outside this package calls pynvml; nothing in it imports pytest.
"""
