"""
HTTP pieces every part shares: the header rules (L{headers}), refusals with
a status and one line of reason, plain-text answers, the writer of a
response body whose head is sent.
"""
