"""
Resumable streams: a stream kept, for its window, while its client is away,
and read again from where that client was (C{/_streams/ID?from=N}, or an
C{EventSource}'s C{Last-Event-ID}); in this process's memory
(L{_resumable.ResumeStore}) or, for a fleet, in Redis too
(L{_sharedstreams.SharedStreams}, L{_remoteresume.RemoteResume}, over
L{_redislink.RedisLink}). It imports nothing of the exchange that feeds it
or of the gateway's edge.
"""
