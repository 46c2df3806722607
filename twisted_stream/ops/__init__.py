"""
Operations: what runs a process well, whatever it serves: listening on
endpoint descriptions, the log's formats, metrics, the drain on a signal,
garbage collection, workers sharing a listening socket, the reactor.
"""
