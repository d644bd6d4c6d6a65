"""The GPU layer: NVML wrapper, profile tables, MIG layouts, placement; simulator in sim/.

Nothing outside this package calls pynvml; nothing in it imports pytest.
"""
