"""
The exchange: L{StreamProxyResource}, which forwards one request to its
upstream and streams the answer back, with what it needs to do so (the
body's writer and watch, the stream's log event, the usage reader, the
recorder) and the hooks a site around it may provide. Its public face is
L{twisted_stream.proxy}; it imports nothing of the gateway's edge,
operations or the mock.
"""
