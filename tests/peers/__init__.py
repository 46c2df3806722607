"""
Peers on other stacks, each run as its own process by the tests: upstreams
and clients that nobody here wrote the HTTP of.
"""
