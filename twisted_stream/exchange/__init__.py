"""
The exchange: L{StreamProxyResource}, which forwards one request to its
upstream and streams the answer back, with what it needs to do so (the
body's watch, the stream's log event, the usage reader, the recorder) and
the hooks a site around it may provide; a resumable route's streams are
kept by L{twisted_stream.resume}. Its public face is
L{twisted_stream.proxy}; it imports nothing of the gateway's edge,
operations or the mock.
"""
