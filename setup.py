"""
Packaging of twisted-stream.

The twistd plugins live in a top-level C{twisted/plugins/} folder with no
C{__init__.py}, and are shipped as modules of the C{twisted.plugins}
package, which Twisted scans on every C{sys.path} entry.
C{package_dir={"": "."}} makes setuptools' editable install (C{pip install
-e .}) a plain C{.pth} entry for the project root, which that scan sees; its
default import-hook finder is invisible to it.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(
    r'^__version__ = "([^"]+)"', (here / "twisted_stream" / "__init__.py").read_text(), re.M
).group(1)

setup(
    name="twisted-stream",
    version=version,
    description="Forward streaming HTTP responses (LLMs, SSE, chunked) in real time, on Twisted.",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    package_dir={"": "."},
    packages=[*find_packages(include=["twisted_stream", "twisted_stream.*"]), "twisted.plugins"],
    package_data={"twisted_stream": ["py.typed", "page.html"]},
    install_requires=[
        # http2: HTTP/2 to browsers over TLS (h2 and priority). 26.4: 25.5
        # fails every TLS connection that offers ALPN with the pyOpenSSL
        # pip installs today (26.x: "Context has already been used to
        # create a Connection"). Below 27: the gateway relies on private
        # names of Twisted's HTTP/1.1, HTTP/2, TCP and epoll internals, all
        # fenced in twisted_stream/_compat.py (checked on 26.4.0 and
        # 26.10.0; CI runs its tests against the newest Twisted too): a new
        # major must be tried there before it is let in.
        "twisted[tls,http2]>=26.4.0,<27",
        "treq>=23.11.0",
        "hyperlink>=21.0.0",
        # The upstream wire parses with llhttp, its C parser.
        "httptools>=0.6.0",
        # /metrics.
        "prometheus-client>=0.17",
        # --config: TOML (tomllib is in the standard library from 3.11).
        'tomli>=1.1.0; python_version < "3.11"',
        # --resume-store redis://: the Twisted-native Redis client (1.6.0:
        # the protocol's whenConnected/whenDisconnected, and ClientService
        # as its own pool; the version this was built and tested with).
        "txredisapi>=1.6.0",
        # The mock's scripts: regular expressions matched with a time limit
        # (the standard re has none: one backtracking pattern would hang
        # the reactor). 2022.1.18: the timeout argument, typed stubs since.
        "regex>=2022.1.18",
    ],
    entry_points={"console_scripts": ["chunkwatch = twisted_stream.chunkwatch:main"]},
    extras_require={
        # bench/run: the plot.
        "bench": ["matplotlib>=3.5"],
        "test": [
            "pytest>=8.0",
            "pytest-twisted>=1.14.1",
            "h11>=0.14",
            "selenium>=4.20",
            "mypy>=1.10",
            "mypy-zope>=1.0.5",
            "types-regex",
            "aiohttp>=3.9",
            "httpx[http2]>=0.27",
            "httpx-sse>=0.4",
            "openai>=1.30",
            "anthropic>=0.30",
            "google-genai>=1.0",
            "ruff>=0.5",
        ],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Internet :: Proxy Servers",
        "Topic :: Internet :: WWW/HTTP :: HTTP Servers",
        "Typing :: Typed",
    ],
)
