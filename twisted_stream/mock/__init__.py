"""
The mock LLM and chunk generator behind C{chunkgen}: the generator, its
formats, the LLM APIs (C{apis}), faults, and replay of recordings.
"""
