"""
TLS material made for a test: a CA and a certificate it signs.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer


def makeCertificates(directory: str, name: str = "test") -> tuple[str, str, str]:
    """
    Make a CA and a server certificate it signs, for C{localhost} and
    C{127.0.0.1}.

    @param directory: Where to write the PEM files.
    @param name: What to call the CA (two calls make two unrelated CAs).
    @return: The paths of the CA certificate, the server certificate and
        the server's key.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"twisted-stream {name} CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(caName)
        .issuer_name(caName)
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(caKey, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(caName)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    paths = tuple(os.path.join(directory, f"{name}-{what}.pem") for what in ("ca", "cert", "key"))
    contents = (
        ca.public_bytes(serialization.Encoding.PEM),
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    for path, content in zip(paths, contents, strict=True):
        with open(path, "wb") as f:
            f.write(content)
    return paths[0], paths[1], paths[2]


@implementer(IOpenSSLContextFactory)
class FileContext:
    """
    A server's TLS context made from PEM files by pyOpenSSL's file APIs:
    Twisted's C{ssl:} endpoint hands pyOpenSSL certificate and key objects
    to the context, which pyOpenSSL 25 and later warn about on every test
    that listens with it.
    """

    def __init__(self, certificate: str, key: str) -> None:
        """
        @param certificate: The certificate's PEM file.
        @param key: The key's PEM file.
        """
        from OpenSSL import SSL

        self._context = SSL.Context(SSL.TLS_SERVER_METHOD)
        self._context.use_certificate_chain_file(certificate)
        self._context.use_privatekey_file(key)

    def getContext(self) -> Any:
        """
        @return: The context (what an SSL endpoint asks of its factory).
        """
        return self._context
