"""Decoding: the sampler contract, greedy decoding, and the generate API."""
