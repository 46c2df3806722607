import os

from twisted.internet import endpoints, reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

from twisted_stream import StreamProxyResource

root = Resource()
root.putChild(b"llm", StreamProxyResource(
    os.environ.get("UPSTREAM", "https://api.openai.com/v1/"),
    injectHeaders=[(b"Authorization", b"Bearer " + os.environ["OPENAI_API_KEY"].encode())],
))
# parsePOSTFormSubmission=False: form bodies are the upstream's to read.
site = Site(root, parsePOSTFormSubmission=False)
listening = endpoints.serverFromString(reactor, os.environ.get("LISTEN", "tcp:8000")).listen(site)
listening.addCallback(lambda port: print(f"listening on http://127.0.0.1:{port.getHost().port}/", flush=True))
reactor.run()
