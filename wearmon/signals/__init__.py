"""The shared signal core: readers, units, fusion, 50 Hz grid, windows, features.

Training and serving call exactly these functions; nothing else resamples or windows.
"""
