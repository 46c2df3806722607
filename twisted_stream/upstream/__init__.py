"""
The upstream side: the HTTP/1.1 client wire (parser and protocol, sans
policy), the agent and its connection pool, the deadline and retry rule,
and the socket helper that sends a write at once.
"""
